"""SteamSpy ``appdetails`` answers turned into ``apps`` rows (pure; enrichment, never prices).

SteamSpy's numbers are daily, US-only estimates: they describe an app (name, developer,
publisher, owners, concurrent users, tags) and are never used as a price source -- its
``price``/``initialprice``/``discount`` fields are deliberately ignored here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# Widths of the ``apps`` columns (sql/001_initial.sql); longer text is cut, not refused.
_TEXT_WIDTH = 512
_OWNERS_WIDTH = 64
_MAX_CCU = 2**32 - 1
# A tags object bigger than this is kept to its most-voted entries.
MAX_TAGS = 40


class SpyError(ValueError):
    """A SteamSpy answer that cannot be used at all (not JSON, not an object)."""


@dataclass(frozen=True, slots=True)
class SpyDetails:
    """What SteamSpy says about one app; ``known`` is False when it has nothing on it."""

    app_id: int
    known: bool
    name: str | None = None
    developer: str | None = None
    publisher: str | None = None
    owners: str | None = None
    ccu: int | None = None
    tags: dict[str, int] | None = None


def _text(value: Any, width: int = _TEXT_WIDTH) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    return text[:width] if text else None


def _count(value: Any) -> int | None:
    # SteamSpy mixes numbers and numeric strings across fields and years.
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and 0 <= value <= _MAX_CCU:
        return value
    return None


def _tags(value: Any) -> dict[str, int]:
    # No tags is PHP's empty array ``[]``; otherwise an object {tag: votes}.
    if not isinstance(value, dict):
        return {}
    votes: dict[str, int] = {}
    for tag, raw in value.items():
        count = _count(raw)
        if isinstance(tag, str) and tag.strip() and count is not None:
            votes[tag.strip()] = count
    ranked = sorted(votes.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_TAGS]
    return dict(ranked)


def parse_details(app_id: int, body: bytes) -> SpyDetails:
    """Parse ``request=appdetails&appid=N``; an app SteamSpy does not know has a null name."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SpyError(f"SteamSpy answer is not JSON ({exc.__class__.__name__})") from None
    if not isinstance(doc, dict):
        raise SpyError(f"SteamSpy answer is a {type(doc).__name__}, not an object")
    name = _text(doc.get("name"))
    if name is None:
        return SpyDetails(app_id, known=False)
    return SpyDetails(
        app_id,
        known=True,
        name=name,
        developer=_text(doc.get("developer")),
        publisher=_text(doc.get("publisher")),
        owners=_text(doc.get("owners"), _OWNERS_WIDTH),
        ccu=_count(doc.get("ccu")),
        tags=_tags(doc.get("tags")),
    )


# Idempotent: a replay writes the same values. Known values are never erased by NULLs
# (COALESCE), and ``tags`` is always set -- ``{}`` marks an app SteamSpy knows nothing about,
# so the enrichment loop (which looks for ``tags IS NULL``) does not ask again. ``VALUES(col)``
# works on MySQL 8 and MariaDB alike (MariaDB lacks the ``AS new`` row alias).
UPSERT_APP_DETAILS = (
    "INSERT INTO apps (app_id, name, developer, publisher, owners, ccu, tags)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE"
    " name = COALESCE(VALUES(name), name),"
    " developer = COALESCE(VALUES(developer), developer),"
    " publisher = COALESCE(VALUES(publisher), publisher),"
    " owners = COALESCE(VALUES(owners), owners),"
    " ccu = COALESCE(VALUES(ccu), ccu),"
    " tags = VALUES(tags)"
)

# Apps the pipeline tracks but SteamSpy has not described yet, oldest first.
SELECT_UNENRICHED = (
    "SELECT app_id FROM apps WHERE tags IS NULL ORDER BY first_seen_at, app_id LIMIT %s"
)


def details_row(details: SpyDetails) -> tuple[Any, ...]:
    """The ``UPSERT_APP_DETAILS`` row of one answer."""
    tags = json.dumps(details.tags or {}, ensure_ascii=False, separators=(",", ":"))
    return (
        details.app_id,
        details.name,
        details.developer,
        details.publisher,
        details.owners,
        details.ccu,
        tags,
    )
