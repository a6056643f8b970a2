"""BatchPublisher against a real nats-server: every message stored once, in order, or an error."""

from __future__ import annotations

import pytest

from shared.events.bus import Bus, provision
from shared.events.publisher import BatchPublisher, PublishError


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
