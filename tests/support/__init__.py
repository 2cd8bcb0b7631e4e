"""Test support shared by the tests and the benchmarks (never a test module itself).

* ``infra``: the real local stack (Kafka, MariaDB of ``make up``), private brokers and databases
  to break, polling with deadlines.
* ``processes``: an isolated :class:`~tests.support.processes.Pipeline` and its real workers.
* ``catalog``: generated catalogs in the fake store with their independent ground truth.
* ``checks``: assertions on a pipeline's output (rows, notifications, metrics, secrets, commits).
* ``faults``: the fault suite's runs (secrets set and grepped for, sweeps to interrupt).
* ``replay``: the real price snapshots and their expected changes, full and sampled replays.
* ``shared``: the shared real data, found through ``STEAMPRICE_SHARED_DATA`` only (skip or fail).
* ``agents``: the agent tier's in-process app (memory tables), captured sends, fake writers.
* ``records``: a price change and an observation with defaults, for any tier.
* ``database``: a throwaway database with a started ``Database`` service.
* ``monitoring``: dashboards and alert rules as the tests read them.
* ``fakes``: fake Steam and Discord HTTP servers that follow ``steam-api.md`` to the byte.
* ``steam_doc``: examples of ``steam-api.md`` as expectations, written from the doc, not a fake.
* ``store``: the store client against the fake Steam, its limits scaled down.
* ``fixtures``: the pytest fixtures, loaded for every test through ``pytest_plugins``.
"""
