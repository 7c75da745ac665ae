"""The Redis transport on a Redis Cluster (three masters): user channels are
sharded there, so the library must SPUBLISH them; a node started with
``HERALD_REDIS__CLUSTER=true`` listens to them with SSUBSCRIBE."""

from __future__ import annotations

import asyncio
from typing import Iterator

import pytest
from conftest import Node, RedisCluster, unique

from herald_client import AsyncRedisClient, Message, RedisClient


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    c = RedisCluster()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def cluster_node(cluster: RedisCluster) -> Iterator[Node]:
    n = Node(cluster.url, env={"HERALD_REDIS__CLUSTER": "true"})
    yield n
    n.stop()


def test_user_channels_are_spublished_broadcasts_published_ingress_added(
    cluster: RedisCluster, cluster_node: Node
) -> None:
    # Users whose channels hash to different masters.
    users = [unique("c") for _ in range(6)]
    sessions = {u: cluster_node.connect(u) for u in users}
    with RedisClient.from_url(cluster.url, cluster=True) as herald:
        sent = herald.publish(Message.toast("Sharded").to_users(users + ["nobody-" + unique()]))
        assert sent.online == users and len(sent.offline or []) == 1
        for s in sessions.values():
            assert s.recv_msg()["id"] == sent.id
        everyone = herald.publish(Message.banner("Cluster-wide").to_all())
        assert everyone.nodes is None, "a cluster's PUBLISH reply counts one Redis node's subscribers"
        queued = herald.enqueue(Message.toast("Durable").to_users(users[0]))
    for s in sessions.values():
        assert s.recv_msg()["id"] == everyone.id
    frame = sessions[users[0]].recv_msg()
    assert (frame["id"], frame["title"]) == (queued.id, "Durable") and frame["pos"]


def test_async_cluster_client(cluster: RedisCluster, cluster_node: Node) -> None:
    user = unique()
    session = cluster_node.connect(user)

    async def main():
        async with AsyncRedisClient.from_url(cluster.url, cluster=True) as herald:
            return await herald.publish(Message.toast("Async sharded").to_users(user))

    sent = asyncio.run(main())
    assert sent.online == [user]
    assert session.recv_msg()["id"] == sent.id
