"""The sender lock: one worker per database posts, by a MySQL ``GET_LOCK`` on its own connection.

A named lock belongs to the session that took it, so it is held on a dedicated connection (not
the pool's, whose connections come and go). A killed worker's lock is freed by the server as soon
as its connection drops, and another worker takes over at its next try.
"""

from __future__ import annotations

import hashlib
import logging

import aiomysql

from steamprice.database import TRANSIENT_ERRORS, connect_kwargs, describe_error
from steamprice.settings import Settings

logger = logging.getLogger(__name__)


def lock_name(database: str) -> str:
    """The cluster-wide sender lock of one database (GET_LOCK names are at most 64 chars)."""
    return "steamprice.discord." + hashlib.sha1(database.encode()).hexdigest()[:24]


class SenderLock:
    """Take, check and give back the sender lock of ``settings.mysql_db``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = lock_name(settings.mysql_db)
        self._conn: aiomysql.Connection | None = None

    @property
    def taken(self) -> bool:
        """Whether this process took the lock (and has not given it back since)."""
        return self._conn is not None

    async def still_held(self) -> bool:
        """Whether the lock this process took is still its own (False after a lost session)."""
        if self._conn is None:
            return False
        try:
            async with self._conn.cursor() as cur:
                await cur.execute("SELECT IS_USED_LOCK(%s) = CONNECTION_ID()", (self.name,))
                (mine,) = await cur.fetchone()
        except TRANSIENT_ERRORS as exc:
            logger.warning("Discord sender lock lost (%s)", describe_error(exc))
            return False
        return bool(mine)

    async def acquire(self) -> bool:
        """Try once, without waiting: True when this process holds the lock now."""
        conn: aiomysql.Connection | None = None
        try:
            conn = await aiomysql.connect(**connect_kwargs(self.settings), autocommit=True)
            async with conn.cursor() as cur:
                await cur.execute("SELECT GET_LOCK(%s, 0)", (self.name,))
                (got,) = await cur.fetchone()
        except TRANSIENT_ERRORS as exc:
            logger.warning("Discord sender lock unavailable (%s)", describe_error(exc))
            if conn is not None:
                conn.close()
            return False
        if got != 1:
            conn.close()
            return False
        self._conn = conn
        return True

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            # Closing the session frees the lock even if RELEASE_LOCK cannot be sent.
            conn.close()
