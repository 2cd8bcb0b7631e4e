"""A minimal Faust app for the rebalance test: it records every (partition, offset) it handles.

Run as ``faust -A tests.support.offsets_app worker`` with ``OFFSETS_APP`` (app id and topic
prefix), ``OFFSETS_OUT`` (the file to append to), ``WEB_PORT`` and ``DATA_DIR``. It has a table
with a standby replica, like the pipeline, so that rebalances go through Faust's recovery.
``OFFSETS_PLAIN_FAUST=1`` builds it on ``faust.App`` instead of ``steamprice.kafka.App`` (to
measure what the fix changes; the test never sets it).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import faust

from steamprice.kafka import App

NAME = os.environ["OFFSETS_APP"]
AppClass = faust.App if os.environ.get("OFFSETS_PLAIN_FAUST") == "1" else App

app = AppClass(
    NAME,
    broker=os.environ.get("KAFKA_BROKER", "kafka://127.0.0.1:9092"),
    store="rocksdb://",
    datadir=os.environ["DATA_DIR"],
    web_port=int(os.environ["WEB_PORT"]),
    web_bind="127.0.0.1",
    topic_partitions=8,
    table_standby_replicas=1,
    broker_commit_every=100,
    broker_session_timeout=8,
    broker_heartbeat_interval=1,
    consumer_auto_offset_reset="earliest",
)
source = app.topic(f"{NAME}-in", partitions=8, key_type=str, value_type=str)
counts = app.Table("counts", default=int, partitions=8)
out = open(os.environ["OFFSETS_OUT"], "a", buffering=1)  # open while the worker lives


@app.agent(source)
async def record(stream: Any) -> None:
    async for event in stream.events():
        counts[event.key] += 1
        out.write(f"{event.message.partition} {event.message.offset}\n")
        await asyncio.sleep(0.002)  # a little work per message, so that rebalances hit mid-batch
