"""Log hygiene: a library repeating one error thousands of times a second is summarised.

While the Kafka broker is down, aiokafka's producer retries its metadata request in a loop
without any pause and logs two errors per attempt: a 17-second broker restart wrote about 69,000
lines (measured by tests/integration/test_faults_broker.py). :class:`RepeatFilter` lets a few
records of each message through per window and says how many it held back.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from typing import NoReturn

# Exit status of a worker that cannot run as configured (sysexits' EX_CONFIG): a supervisor's
# restart will not help until an operator acts on the one line it logged.
EXIT_CONFIG = 78

# The aiokafka loggers that repeat themselves while a broker is unreachable ("aiokafka" is
# aiokafka/client.py's; a filter on it does not reach the others, hence the list).
NOISY_LOGGERS = (
    "aiokafka",
    "aiokafka.conn",
    "aiokafka.consumer.fetcher",
    "aiokafka.consumer.group_coordinator",
    "aiokafka.producer.sender",
)


class RepeatFilter(logging.Filter):
    """At most ``burst`` records per message template per ``window`` seconds.

    The first record let through after some were held back carries their count, so an outage
    still shows in the log from start to end, at a bounded rate.
    """

    def __init__(
        self, burst: int = 5, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.burst = burst
        self.window = window
        self.clock = clock
        # message template -> (window start, records let through, records held back)
        self._seen: dict[str, tuple[float, int, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = str(record.msg)
        now = self.clock()
        start, passed, held = self._seen.get(key, (now, 0, 0))
        if now - start >= self.window:
            start, passed = now, 0
        if passed >= self.burst:
            self._seen[key] = (start, passed, held + 1)
            return False
        if held:
            # Appended to the template: no '%' in it, so formatting the arguments still works.
            record.msg = f"{key} [{held} more like this held back]"
        self._seen[key] = (start, passed + 1, 0)
        return True


def quiet_repeated_library_errors() -> None:
    """Install a :class:`RepeatFilter` on each noisy library logger (once per logger)."""
    for name in NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatFilter) for f in logger.filters):
            logger.addFilter(RepeatFilter())


def fatal(message: str, code: int = EXIT_CONFIG) -> NoReturn:
    """Log ``message`` as one CRITICAL line and end the process at once with ``code``.

    For a worker that must not go on (its local state or its group identity is wrong): no
    traceback, no shutdown that would commit offsets or rejoin the group on its way out. The
    pipeline is built to survive a kill at any point, which this is.
    """
    logging.getLogger("steamprice").critical(message)
    for handler in logging.getLogger().handlers + logging.getLogger("steamprice").handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
