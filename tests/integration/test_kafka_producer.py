"""The worker's Kafka producer on the real broker: every topic it sends to keeps its metadata."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaProducer

from steamprice import kafka
from tests.support.infra import KAFKA, create_topic, delete_topic, wait_for


async def test_a_batch_queued_before_another_topic_s_first_send_is_still_delivered() -> None:
    """What stopped a worker's commits: a table write queued for its changelog (a topic known
    from the metadata of every topic, never tracked), then a first message to a topic created
    after the producer started. The refresh that brought the new topic in dropped the
    changelog's, and the queued write waited for a leader until it expired."""
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, linger_ms=200)
    kafka.track_sent_topics(producer.client)
    await queued_write_survives_a_first_send(producer)


async def test_the_worker_s_kafka_producer_tracks_every_topic_it_sends_to() -> None:
    worker_app = kafka.App("producer-test", broker=f"kafka://{KAFKA}")
    assert isinstance(worker_app.producer, kafka.Producer)
    await queued_write_survives_a_first_send(worker_app.producer._new_producer())


async def queued_write_survives_a_first_send(producer: AIOKafkaProducer) -> None:
    tag = uuid.uuid4().hex[:10]
    known, new = f"producer-known-{tag}", f"producer-new-{tag}"
    await create_topic(known, 1)
    await producer.start()
    try:
        # As Faust does once it created a topic: a refresh while no topic is tracked, so of
        # every topic (again until the broker lists the topic just created).
        async def known_listed() -> bool:
            await producer.client.force_metadata_update()
            return producer.client.cluster.partitions_for_topic(known) == {0}

        await wait_for(f"{known} in the producer's metadata", known_listed, timeout=30)
        assert producer.client._topics == set()  # nothing tracked: known only from that refresh
        await create_topic(new, 1)
        queued = await producer.send(known, b"a table write")  # lingers in its batch
        await producer.send_and_wait(new, b"a first message")  # the refresh that takes `new`
        delivered = await asyncio.wait_for(queued, timeout=10)
        assert delivered.topic == known and delivered.offset == 0
        # The refreshes keep both topics from now on.
        await producer.client.force_metadata_update()
        assert producer.client.cluster.partitions_for_topic(known) == {0}
        assert producer.client.cluster.partitions_for_topic(new) == {0}
    finally:
        await producer.stop()
        for name in (known, new):
            await delete_topic(name)
