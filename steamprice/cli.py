"""Operator commands (``steamprice seed|migrate|retry-failed|reset-local-state``) beside Faust's
own ``worker``.

``steamprice`` is Faust's command line for this app, so ``steamprice worker`` and
``faust -A steamprice worker`` are the same thing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import click
from faust.cli import AppCommand, argument, option
from faust.cli.base import _Group, find_app
from faust.cli.base import cli as faust_cli

from steamprice.app import app, settings
from steamprice.database import describe_error
from steamprice.database import migrate as apply_migrations
from steamprice.discovery import iter_app_list
from steamprice.local_state import DataDirInUse, reset_local_tables
from steamprice.models import ScheduleCommand
from steamprice.notify import commands as _discord_commands  # noqa: F401 (registers them)
from steamprice.schedule import RETRY
from steamprice.seeding import BadSeed, Progress, ids_from_file, ids_from_lines, sent_line
from steamprice.services import store
from steamprice.status import read_app_states
from steamprice.steam import StoreError
from steamprice.topics import ALL_TOPICS, app_ids_topic, send_schedule, send_seeds


async def _ensure_topics() -> None:
    for topic in ALL_TOPICS:
        await topic.maybe_declare()


async def _discover(progress: Progress) -> list[int]:
    """Every app id of the catalog, paged through ``IStoreService/GetAppList/v1``.

    Uses the worker's own Steam client (same User-Agent, retries of 5xx and bad bodies).
    """
    key = settings.steam_api_key.get()
    if not key:
        raise SystemExit("steamprice seed --all needs STEAM_API_KEY (a Steam Web API key)")
    found: list[int] = []
    await store.maybe_start()
    try:
        async for page in iter_app_list(store, key, types=settings.steam_app_types):
            found.extend(a.app_id for a in page.apps)
            progress.tick(len(page.apps))
    finally:
        await store.stop()
    return found


@app.command(
    argument("app_ids", nargs=-1),
    option("--file", "file_", type=str, default=None, help="One app id per line ('-' = stdin)."),
    option("--all", "all_", is_flag=True, default=False, help="Every app of the Steam catalog."),
)
async def seed(self: AppCommand, app_ids: tuple[str, ...], file_: str | None, all_: bool) -> None:
    """Put app ids on the seed topic (a tracked app is re-checked now)."""
    try:
        ids = list(ids_from_lines(app_ids, "argument"))
        if file_:
            ids.extend(ids_from_file(file_))
        if all_:
            discovering = Progress("Discovered apps")
            ids.extend(await _discover(discovering))
            discovering.done()
    except (BadSeed, StoreError, OSError, aiohttp.ClientError) as exc:
        raise SystemExit(f"steamprice seed: {exc}") from None
    if not ids:
        raise SystemExit("steamprice seed: no app ids given (APP_ID ..., --file PATH or --all)")
    unique = list(dict.fromkeys(ids))
    await _ensure_topics()
    progress = Progress("Sent")
    await send_seeds(unique, progress.tick)
    progress.done()
    self.say(sent_line(app_ids_topic.get_topic_name(), ids, unique))


@app.command()
async def migrate(self: AppCommand) -> None:
    """Create the database and apply the schema migrations (idempotent)."""
    try:
        applied = await apply_migrations(settings)
    except Exception as exc:
        raise SystemExit(f"steamprice migrate: {describe_error(exc)}") from None
    self.say(
        f"Database {settings.mysql_db}: "
        + (f"applied {', '.join(applied)}" if applied else "schema up to date")
    )


async def _failed_apps() -> list[int]:
    """Apps whose latest state in the app-state changelog is ``failed``."""
    return sorted(a.app_id for a in await read_app_states() if a.failed)


@app.command()
async def retry_failed(self: AppCommand) -> None:
    """Re-enqueue every app whose last check failed."""
    failed = await _failed_apps()
    await _ensure_topics()
    now = datetime.now(UTC)
    # One schedule record per partition: the schedule agent writes each app in its own.
    await send_schedule(ScheduleCommand(a, RETRY, now) for a in failed)
    await app.producer.flush()
    self.say(f"Re-enqueued {len(failed)} failed apps")


@app.command()
async def reset_local_state(self: AppCommand) -> None:
    """Delete this worker's local table state; its next start rebuilds it from the changelogs."""
    data_dir = Path(app.conf.datadir)
    try:
        removed = reset_local_tables(data_dir)
    except DataDirInUse as exc:
        raise SystemExit(f"steamprice reset-local-state: {exc}") from None
    if not removed:
        self.say(f"No local table state in {data_dir}: nothing to reset")
        return
    self.say(
        f"Deleted the local table state of {settings.app_id} in {data_dir}"
        f" ({', '.join(str(p.relative_to(data_dir)) for p in removed)}); the next worker start"
        " rebuilds it from the changelog topics (the group identity is kept)"
    )


def _root_option(argv: Sequence[str], shortopt: str, longopt: str) -> str | None:
    """The value of a root option (``-A``/``--app``, ``-W``/``--workdir``) given before the command.

    Replaces Faust's own scan, which matched any word *starting with* ``--app`` anywhere on the
    line: ``steamprice alerts add x --apps 1,2`` made it import a module named ``1,2`` and die
    with a traceback. Here only the options before the command count, matched exactly, and the
    values of the other root options are stepped over.
    """
    takes_value = {
        name
        for param in faust_cli.params
        if isinstance(param, click.Option) and not param.is_flag
        for name in param.opts
    }
    words = iter(argv[1:])
    for word in words:
        if word == "--" or not word.startswith("-"):
            return None  # the command: what follows is its own
        name, eq, value = word.partition("=")
        if name in (shortopt, longopt):
            if eq:
                return value
            found = next(words, None)
            if found is None:
                raise click.UsageError(f"{name} needs a value")
            return found
        if not eq and name in takes_value:
            next(words, None)
    return None


def _maybe_import_app(self: _Group, argv: Sequence[str] = sys.argv) -> None:
    """Faust's ``-A``/``-W`` handling with :func:`_root_option`; a bad ``-A`` is a usage error."""
    workdir = _root_option(argv, "-W", "--workdir")
    if workdir:
        os.chdir(Path(workdir).absolute())
    appstr = _root_option(argv, "-A", "--app")
    if appstr is not None:
        try:
            find_app(appstr)
        except (ImportError, AttributeError, ValueError) as exc:
            raise click.UsageError(f"-A {appstr}: not a Faust app ({exc})") from None


_Group._maybe_import_app = _maybe_import_app  # type: ignore[method-assign]


def main() -> Any:
    return app.main()
