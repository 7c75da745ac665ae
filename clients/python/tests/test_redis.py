"""The Redis transport against a node started with --redis on a redis-server
of its own: what the node delivers of what the library PUBLISHed and XADDed."""

from __future__ import annotations

import asyncio

import pytest
import redis
from conftest import Node, RedisServer, Session, free_port, unique, until

from herald_client import AsyncRedisClient, InvalidMessage, Message, RedisClient, Unavailable


@pytest.fixture
def publisher(redis_server: RedisServer):
    with RedisClient.from_url(redis_server.url) as client:
        yield client


def expect_control(publisher: RedisClient, session: Session, user: str) -> None:
    """The positive control after a "nothing arrives": the next frame is a
    message published now, so nothing came before it."""
    sent = publisher.publish(Message.toast("Control").to_users(user))
    frame = session.recv_msg()
    assert (frame["id"], frame["title"]) == (sent.id, "Control"), frame


def ingress_drained(server: RedisServer) -> bool:
    """The node consumed, acknowledged and deleted every ingress entry."""
    with redis.Redis(port=server.port) as r:
        return r.xlen("herald:ingress") == 0


def test_publish_to_users_goes_to_their_channels_and_tells_who_is_online(
    redis_node: Node, publisher: RedisClient
) -> None:
    alice, bob = unique("alice"), unique("bob")
    session = redis_node.connect(alice)
    sent = publisher.publish(Message.card("Transfer sent").to_users(alice, bob))
    frame = session.recv_msg()
    assert (frame["id"], frame["title"], frame["reason"]) == (sent.id, "Transfer sent", "push")
    assert "pos" not in frame, "a plain PUBLISH is not recoverable"
    assert (sent.online, sent.offline) == ([alice], [bob])
    assert len(sent.id) == 26, "the library gives it a ULID"


def test_publish_broadcast_reaches_everyone(redis_node: Node, publisher: RedisClient) -> None:
    session = redis_node.connect(unique())
    sent = publisher.publish(Message.banner("Payments degraded").to_all().theme(severity="critical"))
    frame = session.recv_msg()
    assert (frame["id"], frame["title"], frame["theme"]) == (sent.id, "Payments degraded", {"severity": "critical"})
    assert sent.nodes == 1 and sent.online is None


def test_enqueue_is_published_by_the_node_and_recoverable(redis_node: Node, publisher: RedisClient) -> None:
    user = unique()
    session = redis_node.connect(user)
    queued = publisher.enqueue(Message.toast("Export ready").to_users(user).id(unique("export")))
    assert queued.entry and queued.id.startswith("export-")
    frame = session.recv_msg()
    assert (frame["id"], frame["title"]) == (queued.id, "Export ready")
    assert frame["pos"], "messages from the ingress stream carry a resume position"


def test_resume_recovers_what_was_enqueued_not_what_was_published(
    redis_server: RedisServer, redis_node: Node, publisher: RedisClient
) -> None:
    user = unique()
    first = redis_node.connect(user)
    since = first.hello["pos"]
    first.close()
    until("the node to see the user leave", lambda: not redis_node_presence(redis_server, user))

    lost = publisher.publish(Message.toast("Published while away").to_users(user))
    assert lost.offline == [user]
    kept = publisher.enqueue(Message.toast("Enqueued while away").to_users(user))
    until("the node to consume the ingress entry", lambda: ingress_drained(redis_server))

    back = redis_node.connect(user, since=since)
    assert back.hello["recovered"] is True, back.hello
    frame = back.recv_msg()
    assert (frame["id"], frame["reason"]) == (kept.id, "replay"), frame
    expect_control(publisher, back, user)  # and the published one never comes


def redis_node_presence(server: RedisServer, user: str) -> bool:
    with redis.Redis(port=server.port) as r:
        return bool(r.hgetall(f"herald:presence:{user}"))


def test_retract_goes_through_ingress(redis_node: Node, publisher: RedisClient) -> None:
    user = unique()
    session = redis_node.connect(user)
    queued = publisher.enqueue(Message.banner("Terms updated").to_users(user).sticky().ttl(300))
    assert session.recv_msg()["id"] == queued.id
    publisher.retract(queued.id)
    assert session.recv() == {"t": "retract", "id": queued.id}
    # Retracted through the node: gone from the sticky set, so a new session gets nothing.
    expect_control(publisher, redis_node.connect(user), user)


def test_builder_refuses_before_anything_reaches_redis(
    redis_server: RedisServer, redis_node: Node, publisher: RedisClient
) -> None:
    user = unique()
    session = redis_node.connect(user)
    with redis.Redis(port=redis_server.port) as r:
        dead_before = r.xlen("herald:dead")
        with pytest.raises(InvalidMessage) as refused:
            publisher.publish(Message.toast("No audience"))
        assert refused.value.field == "to"
        with pytest.raises(InvalidMessage) as refused:
            publisher.enqueue({"to": {"users": [user]}, "kind": "toast", "title": "x", "ttl_s": 0})
        assert refused.value.field == "ttl_s"
        expect_control(publisher, session, user)
        assert r.xlen("herald:dead") == dead_before and r.xlen("herald:ingress") == 0


def test_unchecked_refusal_lands_in_the_dead_stream(redis_server: RedisServer, redis_node: Node) -> None:
    """With validate=False a bad envelope is published; the node, which cannot
    answer on Redis, records it in the dead stream with the reason."""
    session = redis_node.connect(unique())
    with RedisClient.from_url(redis_server.url, validate=False) as unchecked:
        bad = unchecked.publish({"to": "all", "kind": "toast", "title": "x", "titel": "typo"})
        with redis.Redis(port=redis_server.port, decode_responses=True) as r:
            record = until(
                "the refusal in the dead stream",
                lambda: next(
                    (f for _, f in r.xrevrange("herald:dead", count=50) if bad.id in f.get("envelope", "")), None
                ),
            )
        assert record["reason"].startswith("titel: unknown field"), record
        control = unchecked.publish(Message.toast("Control").to_all())
        assert session.recv_msg()["id"] == control.id  # the refused one never came


def test_prefix_names_the_deployment(redis_server: RedisServer, publisher: RedisClient) -> None:
    other = Node(redis_server.url, env={"HERALD_REDIS__PREFIX": "acme"})
    try:
        user = unique()
        session = other.connect(user)
        assert publisher.publish(Message.toast("Wrong prefix").to_users(user)).offline == [user]
        with RedisClient.from_url(redis_server.url, prefix="acme") as acme:
            sent = acme.publish(Message.toast("Right prefix").to_users(user))
            assert sent.online == [user]
            assert session.recv_msg()["id"] == sent.id  # the next frame: the other never came
            queued = acme.enqueue(Message.toast("Durable").to_users(user))
            assert session.recv_msg()["id"] == queued.id
    finally:
        other.stop()


def test_borrowed_client_stays_open(redis_server: RedisServer, redis_node: Node) -> None:
    user = unique()
    session = redis_node.connect(user)
    mine = redis.Redis(port=redis_server.port)
    with RedisClient(mine) as herald:
        herald.publish(Message.toast("Borrowed").to_users(user))
    assert mine.ping() and session.recv_msg()["title"] == "Borrowed"
    mine.close()


def test_unreachable_redis_is_unavailable() -> None:
    with RedisClient.from_url(f"redis://127.0.0.1:{free_port()}", socket_connect_timeout=2) as nowhere:
        with pytest.raises(Unavailable, match="Redis"):
            nowhere.publish(Message.toast("x").to_all())
        with pytest.raises(Unavailable):
            nowhere.enqueue(Message.toast("x").to_all())

    doomed = RedisServer()
    with RedisClient.from_url(doomed.url, socket_connect_timeout=2) as herald:
        assert herald.publish(Message.toast("Before").to_all()).nodes == 0
        doomed.stop()
        with pytest.raises(Unavailable):
            herald.publish(Message.toast("After").to_all())
        with pytest.raises(Unavailable):
            herald.enqueue(Message.toast("After").to_all())


def test_async_client_publishes_and_enqueues(redis_server: RedisServer, redis_node: Node) -> None:
    user = unique()
    session = redis_node.connect(user)

    async def main() -> tuple:
        async with AsyncRedisClient.from_url(redis_server.url) as herald:
            sent = await herald.publish(Message.toast("Async publish").to_users(user))
            queued = await herald.enqueue(Message.toast("Async enqueue").to_users(user))
            with pytest.raises(InvalidMessage):
                await herald.publish(Message.toast().to_users(user))
            return sent, queued

    sent, queued = asyncio.run(main())
    assert sent.online == [user]
    assert session.recv_msg()["id"] == sent.id
    frame = session.recv_msg()
    assert (frame["id"], frame["title"]) == (queued.id, "Async enqueue") and frame["pos"]

    async def retract() -> None:
        async with AsyncRedisClient.from_url(redis_server.url) as herald:
            await herald.retract(queued.id)

    asyncio.run(retract())
    assert session.recv() == {"t": "retract", "id": queued.id}
