"""Optional py-spy profile of a worker during a timed pass (``BENCH_PROFILE=DIR``).

py-spy samples the worker from outside (``--nonblocking``: the worker is never paused), so the
worker's own CPU figures barely move; py-spy's CPU is its own process's. Each pass leaves the raw
collapsed stacks in DIR (``flamegraph.pl`` or speedscope read them) and prints the functions
that hold the most samples, by self time and by inclusive time. Not installed with the project:
``pip install py-spy`` into the venv (or put it on PATH) to use it.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sys
from collections import Counter
from pathlib import Path

# "function (path/to/file.py:123)" -> "function (file.py)": lines of one function add up.
_FRAME = re.compile(r"^(?P<name>.*) \((?P<path>[^()]*?)(?::\d+)?\)$")


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def _short(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["path"]
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    elif "/steamprice/" in path:
        path = "steamprice/" + path.rsplit("/steamprice/", 1)[1]
    else:
        path = path.rsplit("/", 1)[-1]
    return f"{match['name']} ({path})"


def summarize(raw: Path, top: int = 25) -> str:
    """The functions with most samples in a py-spy raw file: self and inclusive, in percent."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text("utf-8", "replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_short(f) for f in stack.split(";")]
        # The first frame is py-spy's "thread" or "process" label when present; harmless.
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    if not total:
        return f"  {raw.name}: no samples"
    lines = [f"  {raw.name}: {total:,} samples"]
    for title, counter in (("self", own), ("inclusive", inclusive)):
        lines.append(f"   top {top} by {title} time:")
        for frame, n in counter.most_common(top):
            lines.append(f"    {100 * n / total:5.1f}%  {frame}")
    return "\n".join(lines)


class Profile:
    """``async with Profile(pid, "batches-first"):`` profiles the block when BENCH_PROFILE is set."""

    def __init__(self, pid: int, name: str, rate: int = 100) -> None:
        self.pid = pid
        self.name = name
        self.rate = rate
        folder = os.environ.get("BENCH_PROFILE", "")
        self.out = Path(folder) / f"{name}.txt" if folder else None
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Profile:
        if self.out is None:
            return self
        exe = py_spy()
        if exe is None:
            print("  BENCH_PROFILE is set but py-spy is not installed: no profile")
            self.out = None
            return self
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.proc = await asyncio.create_subprocess_exec(
            exe,
            "record",
            "--pid",
            str(self.pid),
            "--rate",
            str(self.rate),
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(self.out),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is None or self.out is None:
            return
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
        try:
            await asyncio.wait_for(self.proc.wait(), 60)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        if self.out.exists():
            print(summarize(self.out), flush=True)
