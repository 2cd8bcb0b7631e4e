"""steamprice: a Faust stream-processing Steam price monitor.

``faust -A steamprice worker`` finds the Faust app through the ``app`` attribute of this package;
it is built lazily so that importing the pure modules never touches the environment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["app", "main"]

if TYPE_CHECKING:
    import faust

    app: faust.App


def __getattr__(name: str) -> Any:
    if name == "app":
        from steamprice.app import app

        return app
    raise AttributeError(name)


def main() -> None:
    """The ``steamprice`` command: settings errors are reported plainly, not as tracebacks."""
    import sys

    from steamprice.settings import SettingsError

    try:
        # ``seed`` with ids or --file, once the topics exist, needs no Faust (steamprice.seeding).
        if sys.argv[1:2] == ["seed"]:
            from steamprice.seeding import quick_seed

            if quick_seed(sys.argv[2:]):
                return
        from steamprice.cli import main as cli_main
    except SettingsError as exc:
        sys.exit(f"steamprice: invalid setting: {exc}")
    cli_main()
