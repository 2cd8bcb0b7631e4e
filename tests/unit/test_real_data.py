"""Real data through the pure path: two real days of the whole catalog, in seconds.

Both shared snapshots (~261k apps each) are served by the fake store's own serialisation (Steam's
answer to the byte), split by the crawler's parser, normalised and run through change detection,
exactly the functions the agents call; the changes found must be exactly those the CSV files
imply, computed independently of the project's code (``tests/support/replay.py``). The same two
days through the real stack are the slow tier's full replay and the everyday sampled one.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from functools import partial

from steamprice.models import PriceChange, PriceHistory, PriceState
from steamprice.pricing import apply_observation, normalize
from steamprice.steam import split_appdetails
from tests.support.fakes import FakeSteam
from tests.support.replay import SNAPSHOTS, expected_changes, read_snapshot
from tests.support.shared import require_shared_data

BATCH = 100  # apps per appdetails request, as the crawler asks
DAY1 = datetime(2025, 8, 17, 6, 0, tzinfo=UTC)


def test_two_real_days_through_the_pure_path_give_exactly_their_changes() -> None:
    data = require_shared_data(*SNAPSHOTS)
    days = [read_snapshot(data / name) for name in SNAPSHOTS]
    expected = expected_changes(*days)
    assert 500 < len(expected) < 1000  # the files hold about 700 changes

    steam = FakeSteam(rate_limit=None)
    states: dict[int, PriceState] = {}
    histories: dict[int, PriceHistory] = {}
    changes: list[PriceChange] = []
    for n, (name, snapshot) in enumerate(zip(SNAPSHOTS, days, strict=True)):
        steam.load_snapshot(data / name, cc="us")
        fetched_at = DAY1 + timedelta(days=n)
        ids = sorted(snapshot)
        for i in range(0, len(ids), BATCH):
            batch = ids[i : i + BATCH]
            entries = split_appdetails(200, steam.price_overview_answer(batch, "us"), batch)
            assert sorted(entries) == batch
            for app_id, entry in entries.items():
                obs, _ = normalize(app_id, "us", fetched_at, entry)
                applied = apply_observation(states.get(app_id), obs, partial(histories.get, app_id))
                if applied.state is not None:
                    states[app_id] = applied.state
                if applied.history is not None:
                    histories[app_id] = applied.history
                changes.extend(applied.events)

    got = {c.app_id: c for c in changes}
    assert len(got) == len(changes)  # one change per app
    assert set(got) == set(expected), (
        f"missing {sorted(set(expected) - set(got))[:20]}, "
        f"unexpected {sorted(set(got) - set(expected))[:20]}"
    )
    for app_id, (old, new) in expected.items():
        c = got[app_id]
        assert (c.old_initial, c.old_final, c.old_discount) == old[1:], app_id
        assert (c.new_initial, c.new_final, c.new_discount) == new[1:], app_id
        assert c.observed_at == DAY1 + timedelta(days=1) and c.previous_observed_at == DAY1
    assert len(states) == len(set(days[0]) | set(days[1]))
    print("kinds:", Counter(c.kind for c in changes))
