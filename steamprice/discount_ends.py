"""The ``discount_ends`` table (sql/060): the queue of end-date questions and their answers.

Three writers, each idempotent and order-independent:

* the end-date agent records asks (:func:`record_asks`): a new discount replaces the row (its
  old answer goes), the same discount is marked pending again (its known end stays shown until
  the new answer);
* the end-date service answers them (:func:`record_answers`): only the discount asked about
  (prices and ``since`` unchanged) takes the answer, so a late answer about a discount that
  has since moved on is dropped; an unknown answer keeps a known end of the same discount. A
  known end goes straight into the price rows of that discount, if they are written already;
* the price sinks copy ``ends_at`` into ``price_current`` and ``price_changes`` for the rows
  they write (:func:`sync_current`, :func:`sync_changes`): whichever comes last finds the
  other, so neither order loses a date.

Every statement is portable between MySQL 8 and MariaDB (``VALUES()``, multi-table ``UPDATE``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from steamprice.batches import chunks
from steamprice.database import IN_LIST_MAX
from steamprice.enddates import KNOWN, REQUEST_FAILED, Ask, Asked, EndDate, Offer, needs_end_date


def utc_naive(moment: datetime) -> datetime:
    """DATETIME columns hold UTC without a zone (as ``storage.utc_naive``, which imports us)."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def _marks(n: int) -> str:
    return ", ".join(["%s"] * n)


def select_asked(n: int) -> str:
    """The rows of ``n`` apps of one region, locked until the asks are recorded."""
    return (
        "SELECT app_id, initial_price, final_price, since, asked_for, obs_id FROM discount_ends"
        f" WHERE cc = %s AND app_id IN ({_marks(n)}) FOR UPDATE"
    )


# A new discount (another since) drops the previous answer; the same one keeps it until the
# new answer comes. Columns are assigned left to right: since is compared before it moves.
UPSERT_ASK = (
    "INSERT INTO discount_ends (app_id, cc, initial_price, final_price, since, asked_for,"
    " obs_id, pending, attempts, retry_at, outcome, ends_at, checked_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON DUPLICATE KEY UPDATE"
    " ends_at = IF(VALUES(since) = since, ends_at, NULL),"
    " outcome = IF(VALUES(since) = since, outcome, NULL),"
    " checked_at = IF(VALUES(since) = since, checked_at, NULL),"
    " initial_price = VALUES(initial_price), final_price = VALUES(final_price),"
    " asked_for = VALUES(asked_for), obs_id = VALUES(obs_id),"
    " pending = 1, attempts = 0, retry_at = NULL, since = VALUES(since)"
)

# pending, attempts, retry_at, outcome, ends_at, checked_at of a new row (all placeholders, so
# that executemany sends one multi-row INSERT).
_FRESH = (1, 0, None, None, None, None)

SELECT_PENDING = (
    "SELECT app_id, initial_price, final_price, since FROM discount_ends"
    " WHERE pending = 1 AND cc = %s AND (retry_at IS NULL OR retry_at <= %s)"
    " ORDER BY asked_for LIMIT %s"
)

# Only the discount asked about takes the answer; an unknown end keeps a known one.
ANSWER = (
    "UPDATE discount_ends SET pending = 0, attempts = 0, retry_at = NULL, outcome = %s,"
    " ends_at = COALESCE(%s, ends_at), checked_at = %s"
    " WHERE app_id = %s AND cc = %s AND since = %s AND initial_price = %s AND final_price = %s"
)

FAILED = (
    "UPDATE discount_ends SET attempts = LEAST(attempts + 1, 65535), retry_at = %s"
    " WHERE app_id = %s AND cc = %s AND since = %s AND pending = 1"
)

# An answer's known end, straight into the price rows of the discount it is about.
SET_CURRENT_END = (
    "UPDATE price_current SET discount_ends_at = %s WHERE app_id = %s AND cc = %s"
    " AND observed_at = %s AND initial_price = %s AND final_price = %s AND status = 'priced'"
)
SET_CHANGE_END = (
    "UPDATE price_changes SET discount_ends_at = %s WHERE app_id = %s AND cc = %s"
    " AND observed_at = %s AND new_initial = %s AND new_final = %s AND new_status = 'priced'"
)

QUEUE_COUNTS = (
    "SELECT COUNT(*), COALESCE(SUM(attempts > 0), 0) FROM discount_ends WHERE pending = 1"
)


def sync_current_sql(n: int) -> str:
    """Copy the known end of ``n`` apps of one region into their ``price_current`` rows."""
    return (
        "UPDATE price_current p JOIN discount_ends d ON d.app_id = p.app_id AND d.cc = p.cc"
        " SET p.discount_ends_at = d.ends_at"
        f" WHERE p.cc = %s AND p.app_id IN ({_marks(n)}) AND p.status = 'priced'"
        " AND p.initial_price = d.initial_price AND p.final_price = d.final_price"
        " AND p.observed_at = d.since AND NOT (p.discount_ends_at <=> d.ends_at)"
    )


def sync_changes_sql(n: int) -> str:
    """Copy the known end into the change rows that started the discount, for ``n`` apps."""
    return (
        "UPDATE price_changes c JOIN discount_ends d ON d.app_id = c.app_id AND d.cc = c.cc"
        " SET c.discount_ends_at = d.ends_at"
        f" WHERE c.cc = %s AND c.app_id IN ({_marks(n)}) AND c.new_status = 'priced'"
        " AND c.new_initial = d.initial_price AND c.new_final = d.final_price"
        " AND c.observed_at = d.since AND NOT (c.discount_ends_at <=> d.ends_at)"
    )


ANY_FAILING = "SELECT 1 FROM discount_ends WHERE pending = 1 AND attempts > 0 LIMIT 1"


def select_ends(n: int) -> str:
    """What is known about the ends of ``n`` apps' discounts (for the Discord embeds)."""
    return (
        "SELECT app_id, cc, initial_price, final_price, since, pending, attempts, ends_at"
        f" FROM discount_ends WHERE app_id IN ({_marks(n)})"
    )


@dataclass(frozen=True, slots=True)
class Pending:
    """A queued question: the discount of one app in one region."""

    app_id: int
    initial: int
    final: int
    since: datetime  # naive UTC, as stored

    @property
    def offer(self) -> Offer:
        return Offer(self.app_id, self.initial, self.final)


@dataclass(frozen=True, slots=True)
class EndRow:
    """What ``discount_ends`` holds about one (app, region); times are naive UTC."""

    initial: int
    final: int
    since: datetime
    pending: bool
    attempts: int
    ends_at: datetime | None


def by_region(items: Iterable[Any]) -> dict[str, list[Any]]:
    groups: dict[str, list[Any]] = {}
    for item in items:
        groups.setdefault(item.cc, []).append(item)
    return groups


async def record_asks(cur: Any, asks: Sequence[Ask], resweep: timedelta) -> tuple[int, int]:
    """Queue the asks that need asking (:func:`needs_end_date`); (queued, skipped)."""
    newest: dict[tuple[int, str], Ask] = {}
    for a in asks:
        key = (a.app_id, a.cc)
        if key not in newest or (a.since, a.fetched_at) > (
            newest[key].since,
            newest[key].fetched_at,
        ):
            newest[key] = a
    queued: list[tuple[Any, ...]] = []
    for cc, group in sorted(by_region(newest.values()).items()):
        last: dict[int, Asked] = {}
        for ids in chunks(sorted(a.app_id for a in group), IN_LIST_MAX):
            await cur.execute(select_asked(len(ids)), [cc, *ids])
            for app_id, initial, final, since, asked_for, obs_id in await cur.fetchall():
                last[int(app_id)] = Asked(int(initial), int(final), since, asked_for, str(obs_id))
        for a in sorted(group, key=lambda a: a.app_id):
            naive = Ask(
                a.app_id,
                cc,
                a.initial,
                a.final,
                utc_naive(a.since),
                utc_naive(a.fetched_at),
                a.obs_id,
                a.reseeded,
            )
            if needs_end_date(last.get(a.app_id), naive, resweep=resweep):
                queued.append(
                    (
                        a.app_id,
                        cc,
                        a.initial,
                        a.final,
                        naive.since,
                        naive.fetched_at,
                        a.obs_id,
                        *_FRESH,
                    )
                )
    if queued:
        await cur.executemany(UPSERT_ASK, queued)
    return len(queued), len(asks) - len(queued)


async def pending_asks(cur: Any, cc: str, now: datetime, limit: int) -> list[Pending]:
    """The oldest questions of a region that are due (not waiting out a failed try)."""
    await cur.execute(SELECT_PENDING, (cc, utc_naive(now), limit))
    return [Pending(int(a), int(i), int(f), since) for a, i, f, since in await cur.fetchall()]


async def record_answers(
    cur: Any,
    cc: str,
    asked: Sequence[Pending],
    results: Sequence[EndDate],
    now: datetime,
    retry_at: datetime,
) -> tuple[int, int]:
    """Store GetItems' answers (or the failed tries) and copy the ends into the price rows.

    Returns (answered, failed).
    """
    by_app = {p.app_id: p for p in asked}
    answers, failures = [], []
    for r in results:
        p = by_app.get(r.app_id)
        if p is None:
            continue
        if r.outcome == REQUEST_FAILED:
            failures.append((utc_naive(retry_at), p.app_id, cc, p.since))
            continue
        ends = utc_naive(r.ends_at).replace(microsecond=0) if r.ends_at is not None else None
        answers.append(
            (
                r.outcome,
                ends if r.outcome == KNOWN else None,
                utc_naive(now),
                p.app_id,
                cc,
                p.since,
                p.initial,
                p.final,
            )
        )
    # The price rows first, then discount_ends: the order the sinks lock them in (a price row,
    # then the join's read of discount_ends), so the two cannot deadlock each other.
    known = [
        (ends, app_id, cc, since, initial, final)
        for _, ends, _, app_id, cc, since, initial, final in answers
        if ends is not None
    ]
    if known:
        await cur.executemany(SET_CURRENT_END, known)
        await cur.executemany(SET_CHANGE_END, known)
    if answers:
        await cur.executemany(ANSWER, answers)
    if failures:
        await cur.executemany(FAILED, failures)
    return len(answers), len(failures)


async def sync_current(cur: Any, cc: str, app_ids: Sequence[int]) -> int:
    updated = 0
    for ids in chunks(app_ids, IN_LIST_MAX):
        await cur.execute(sync_current_sql(len(ids)), [cc, *ids])
        updated += max(int(cur.rowcount), 0)
    return updated


async def sync_changes(cur: Any, cc: str, app_ids: Sequence[int]) -> int:
    updated = 0
    for ids in chunks(app_ids, IN_LIST_MAX):
        await cur.execute(sync_changes_sql(len(ids)), [cc, *ids])
        updated += max(int(cur.rowcount), 0)
    return updated


async def queue_counts(cur: Any) -> tuple[int, int]:
    """(questions waiting, of which some try failed)."""
    await cur.execute(QUEUE_COUNTS)
    row = await cur.fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


async def end_rows(cur: Any, app_ids: Sequence[int]) -> dict[tuple[int, str], EndRow]:
    """Every region's row of these apps."""
    rows: dict[tuple[int, str], EndRow] = {}
    for ids in chunks(list(app_ids), IN_LIST_MAX):
        await cur.execute(select_ends(len(ids)), list(ids))
        for a, cc, i, f, since, pending, attempts, ends in await cur.fetchall():
            rows[(int(a), str(cc))] = EndRow(
                int(i), int(f), since, bool(pending), int(attempts), ends
            )
    return rows


async def any_failing(cur: Any) -> bool:
    """Whether some question waits after a failed try: GetItems is in trouble."""
    await cur.execute(ANY_FAILING)
    return await cur.fetchone() is not None


def discount_of(
    status: str, initial: int | None, final: int | None, discount: int | None
) -> tuple[int, int] | None:
    """(initial, final) of a price with a real cut, else None."""
    if status != "priced" or initial is None or final is None or not discount or final >= initial:
        return None
    return initial, final


def known_end(
    prices: tuple[int, int] | None, observed_at: datetime, row: EndRow | None
) -> datetime | None:
    """The announced end of the discount ``prices`` first observed at ``observed_at`` (UTC)."""
    if prices is None or row is None or row.ends_at is None:
        return None
    if (row.initial, row.final, row.since) != (*prices, utc_naive(observed_at)):
        return None
    return row.ends_at.replace(tzinfo=UTC)


def may_learn_end(
    prices: tuple[int, int] | None,
    observed_at: datetime,
    row: EndRow | None,
    *,
    now: datetime,
    wait: timedelta,
    failing: bool,
) -> bool:
    """Whether a change's end date is still to come soon enough to hold its alert for it.

    Only for a discount without a known end, observed less than ``wait`` ago, whose question is
    not yet recorded or queued and not yet tried; never while GetItems is failing (an outage or
    a 429 storm delays end dates, never alerts).
    """
    if prices is None or failing or now - observed_at >= wait:
        return False
    if row is None or (row.initial, row.final, row.since) != (*prices, utc_naive(observed_at)):
        return True  # the ask is on its way to the queue
    return row.ends_at is None and row.pending and row.attempts == 0
