"""BatchPublisher against a real nats-server: every message stored once, in order, or an error."""

from __future__ import annotations

import pytest

from shared.events.bus import Bus, provision, stream_config
from shared.events.publisher import FAST_MIN, BatchPublisher, PublishError


@pytest.fixture
async def bus(nats_server):
    connected = Bus(nats_server.url, name="publisher-test")  # as the admin, who may provision
    await connected.connect()
    await provision(connected.js, connected.stream, [])
    yield connected
    await connected.close()


async def _stored(bus: Bus) -> list[tuple[str, bytes, str]]:
    info = await bus.js.stream_info(bus.stream)
    stored = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        message = await bus.js.get_msg(bus.stream, seq)
        stored.append((message.subject, message.data, message.headers["Nats-Msg-Id"]))
    return stored


async def test_a_batch_is_stored_in_order_and_a_repeat_stores_nothing(bus):
    publisher = BatchPublisher(bus)
    batch = [(f"crm.test.item.{n % 3}", f'{{"n": {n}}}'.encode(), f"id-{n}") for n in range(2500)]
    await publisher.publish(batch, timeout_s=10)
    await publisher.publish(batch[:1000], timeout_s=10)  # a retried batch: JetStream drops the duplicates
    await publisher.publish(batch[2400:] + [("crm.test.item.9", b"{}", "id-new")], timeout_s=10)
    assert await _stored(bus) == batch + [("crm.test.item.9", b"{}", "id-new")]
    # All three went as fast-ingest batches, whose Nats-Msg-Ids the server deduplicates
    # too (nats-server 2.15; ADR-50 leaves it unsaid, and the relay's retries rely on it).
    assert publisher.fast_batches == 3 and publisher.fast_ingest


async def test_a_small_batch_has_an_ack_per_message_and_a_large_one_is_one_fast_batch(bus):
    publisher = BatchPublisher(bus)
    small = [("crm.test.a", b"{}", f"a-{n}") for n in range(FAST_MIN - 1)]
    await publisher.publish(small, timeout_s=10)
    assert publisher.fast_batches == 0
    large = [("crm.test.b", b"{}", f"b-{n}") for n in range(FAST_MIN)]
    await publisher.publish(large, timeout_s=10)
    assert publisher.fast_batches == 1
    assert await _stored(bus) == small + large


async def test_a_stream_without_fast_ingest_gets_an_ack_per_message(bus):
    config = stream_config(bus.stream)
    config.allow_batched = False
    await bus.js.update_stream(config)
    publisher = BatchPublisher(bus)
    batch = [("crm.test.c", b"{}", f"c-{n}") for n in range(FAST_MIN * 2)]
    await publisher.publish(batch, timeout_s=10)
    await publisher.publish(batch[:FAST_MIN], timeout_s=10)  # from now on without trying
    assert not publisher.fast_ingest and publisher.fast_batches == 0
    assert await _stored(bus) == batch


async def test_a_fast_batch_that_fails_is_published_again_with_an_ack_per_message(bus):
    # The message no stream takes breaks the fast batch; published again one ack per
    # message, the others are stored (once) and the error names the one left.
    publisher = BatchPublisher(bus)
    batch = [("crm.test.d", b"{}", f"d-{n}") for n in range(FAST_MIN * 2)]
    batch[FAST_MIN] = ("elsewhere.x", b"{}", "d-lost")
    with pytest.raises(PublishError, match=f"1 of {FAST_MIN * 2} not stored"):
        await publisher.publish(batch, timeout_s=10)
    assert publisher.fast_ingest  # the stream takes fast batches: the next one is tried so again
    assert await _stored(bus) == [message for message in batch if message[2] != "d-lost"]


async def test_a_message_no_stream_takes_fails_the_batch(bus):
    publisher = BatchPublisher(bus)
    with pytest.raises(PublishError, match="1 of 2 not stored"):
        await publisher.publish([("crm.test.ok", b"{}", "id-1"), ("elsewhere.x", b"{}", "id-2")], timeout_s=5)
    await publisher.publish([("crm.test.ok", b"{}", "id-3")], timeout_s=5)  # the next batch is unaffected
    assert [message_id for _, _, message_id in await _stored(bus)] == ["id-1", "id-3"]


async def test_nothing_that_could_split_a_protocol_line_is_sent(bus):
    # The publisher writes the HPUB frames itself: a subject or an id that could end the line,
    # or a body over the server's limit, fails the batch before anything of it is sent.
    publisher = BatchPublisher(bus)
    for bad in (
        [("crm.test.ok x", b"{}", "id-1")],
        [("crm.test.ok\r\nPUB crm.test.evil 0", b"{}", "id-1")],
        [("crm.test.ok", b"{}", "id-1\r\nX-Evil: 1")],
        [("crm.test.ok", b"x" * (bus.nc.max_payload + 1), "id-1")],
    ):
        with pytest.raises(PublishError):
            await publisher.publish(bad, timeout_s=5)
    await publisher.publish([("crm.test.ok", b"{}", "id-2")], timeout_s=5)
    assert await _stored(bus) == [("crm.test.ok", b"{}", "id-2")]


async def test_a_lost_connection_fails_the_batch_instead_of_waiting_out_the_timeout(bus, nats_server):
    publisher = BatchPublisher(bus)
    await publisher.publish([("crm.test.ok", b"{}", "id-1")], timeout_s=5)
    nats_server.stop()
    with pytest.raises(ConnectionError):
        await publisher.publish([("crm.test.ok", b"{}", f"id-{n}") for n in range(2, 50)], timeout_s=30)
