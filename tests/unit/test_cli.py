"""The ``steamprice`` entry point itself (a subprocess): misuse is a usage error, not a traceback.

None of these commands gets as far as Kafka or MySQL: the broker named here does not exist.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from steamprice.cli import _root_option

HOOK = "https://discord.com/api/webhooks/123/secret-token-abcd"


def steamprice(*args: str, tmp: Path) -> tuple[int, str]:
    env = {
        **os.environ,
        "KAFKA_BROKER": "kafka://127.0.0.1:1",
        "APP_ID": "unit-cli",
        "DATA_DIR": str(tmp / "data"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "steamprice", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # Faust's -A/--app scan used to take --apps for --app and import a module named "1,2".
        (("anything", "--apps", "1,2"), "No such command 'anything'"),
        (("seed", "--apps", "1,2"), "No such option: --apps"),
        (("alerts", "list", "--apps", "1,2"), "only apply to 'add'"),
        (("alerts", "add", "x", "--apps", "1,2"), "needs --webhook URL"),
        (("alerts", "show"), "needs the rule's NAME"),
        (("alerts", "frobnicate"), "'frobnicate' is not one of"),
        (("-A", "no.such.module", "alerts", "list"), "-A no.such.module: not a Faust app"),
    ],
)
def test_misuse_is_a_usage_error(args: tuple[str, ...], message: str, tmp_path: Path) -> None:
    status, out = steamprice(*args, tmp=tmp_path)
    assert status == 2, out
    assert message in out and "Traceback" not in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--webhook", "https://discord.com/api/channels/1/messages"), "/api/webhooks/ID/TOKEN"),
        (("--webhook", HOOK, "--apps", "730,abc"), "app id 'abc'"),
        (("--webhook", HOOK, "--regions", "us,xx"), "unknown region 'xx'"),
        (("--webhook", HOOK, "--max-price", "us=-5"), "negative"),
        (("--webhook", HOOK, "--max-price", "jp=99.5"), "whole numbers"),
    ],
)
def test_bad_rules_are_refused_before_anything_is_written(
    args: tuple[str, ...], message: str, tmp_path: Path
) -> None:
    status, out = steamprice("alerts", "add", "deals", *args, tmp=tmp_path)
    assert status == 1, out
    assert message in out and "Traceback" not in out
    assert "secret-token" not in out


def test_root_options_are_matched_exactly_and_only_before_the_command() -> None:
    argv = ["steamprice", "alerts", "add", "x", "--apps", "1,2", "--app", "y"]
    assert _root_option(argv, "-A", "--app") is None
    assert _root_option(["steamprice", "--apps", "1"], "-A", "--app") is None
    assert _root_option(["steamprice", "-l", "info", "-A", "pkg", "worker"], "-A", "--app") == "pkg"
    assert _root_option(["steamprice", "--app=pkg", "worker"], "-A", "--app") == "pkg"
    # A root option's value is not mistaken for the command.
    assert _root_option(["steamprice", "-W", "/tmp", "--app", "pkg", "x"], "-A", "--app") == "pkg"
