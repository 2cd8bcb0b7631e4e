"""Run every benchmark (or those named: ``python -m bench crawl mysql``) and print the figures."""

from __future__ import annotations

import asyncio
import importlib
import json
import pkgutil
import sys
import time
from pathlib import Path


def _names() -> list[str]:
    here = Path(__file__).parent
    return sorted(
        m.name[6:] for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_")
    )


def main() -> int:
    wanted = sys.argv[1:] or _names()
    unknown = set(wanted) - set(_names())
    if unknown:
        print(f"unknown benchmarks: {', '.join(sorted(unknown))}; known: {', '.join(_names())}")
        return 2
    results = {}
    for name in wanted:
        module = importlib.import_module(f"bench.bench_{name}")
        print(f"\n=== {name}: {(module.__doc__ or '').strip().splitlines()[0]}", flush=True)
        started = time.monotonic()
        results[name] = asyncio.run(module.main())
        print(f"=== {name} done in {time.monotonic() - started:.1f} s", flush=True)
    print("\nSUMMARY " + json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
