"""The HTTP transport against a live embedded node started with an API key:
what the node does with what the client sends, seen by real WebSocket
sessions and through the node's own API."""

from __future__ import annotations

import asyncio

import pytest
from conftest import API_KEY, Node, Session, free_port, load, unique, until
from websockets.exceptions import ConnectionClosed

from herald_client import (
    AsyncHttpClient,
    AuthError,
    HttpClient,
    InvalidMessage,
    Message,
    NotFound,
    Refused,
    Unavailable,
)


@pytest.fixture
def herald(node: Node):
    with HttpClient(node.api, api_key=API_KEY) as client:
        yield client


def expect_control(herald: HttpClient, session: Session, user: str) -> None:
    """The positive control after a "nothing arrives": a message published
    now is the next frame, so nothing came before it."""
    sent = herald.publish(Message.toast("Control").to_users(user))
    frame = session.recv_msg()
    assert (frame["id"], frame["title"]) == (sent.id, "Control"), frame


def test_publish_to_users_reaches_their_sessions_and_reports_who_was_online(node: Node, herald: HttpClient) -> None:
    alice, bob = unique("alice"), unique("bob")
    session = node.connect(alice)
    sent = herald.publish(Message.card("Your card was declined").to_users(alice, bob).data(invoice="inv_1"))
    frame = session.recv_msg()
    assert (frame["id"], frame["title"], frame["kind"], frame["reason"]) == (
        sent.id,
        "Your card was declined",
        "card",
        "push",
    )
    assert frame["data"] == {"invoice": "inv_1"} and frame["pos"], frame
    assert (sent.online, sent.offline) == ([alice], [bob])


def test_a_dict_envelope_and_a_broadcast(node: Node, herald: HttpClient) -> None:
    user = unique()
    session = node.connect(user)
    sent = herald.publish({"to": "all", "kind": "banner", "title": "Maintenance at noon"})
    assert (sent.online, sent.offline) == (None, None)
    assert session.recv_msg()["title"] == "Maintenance at noon"


def test_sticky_is_active_until_retracted(node: Node, herald: HttpClient) -> None:
    user = unique()
    msg = Message.banner("Payments degraded").where(f'user == "{user}"').sticky().ttl(300).id(unique("incident"))
    sent = herald.publish(msg)
    assert sent.id == msg.to_dict()["id"]
    assert sent.id in [m["id"] for m in herald.active()]
    late = node.connect(user)  # connects after the publish: gets it as sticky
    frame = late.recv_msg()
    assert (frame["id"], frame["reason"]) == (sent.id, "sticky")

    assert herald.retract(sent.id) == sent.id
    assert late.recv() == {"t": "retract", "id": sent.id}
    assert sent.id not in [m["id"] for m in herald.active()]


def test_node_refusal_raises_refused_with_the_reason(node: Node, herald: HttpClient) -> None:
    user = unique()
    session = node.connect(user)
    with pytest.raises(Refused) as refused:
        herald.publish(Message.toast("Bad CEL").to_users(user).where("attrs.plan =="))
    assert (refused.value.status, refused.value.field) == (400, "to.where")
    assert refused.value.reason.startswith("to.where: "), refused.value.reason
    expect_control(herald, session, user)


@pytest.mark.parametrize("case", load("refusals.json"), ids=lambda c: c["field"])
def test_the_node_refuses_what_the_builder_refuses(node: Node, case: dict) -> None:
    """Each envelope the library refuses, sent unchecked: the node refuses
    it too (400), naming the same field (or, where the node's parser says
    only "envelope" or the bare key, that one)."""
    with HttpClient(node.api, api_key=API_KEY, validate=False) as unchecked:
        with pytest.raises(Refused) as refused:
            unchecked.publish(case["envelope"])
    assert refused.value.status == 400
    assert refused.value.field == case.get("node", case["field"]), refused.value.reason


def test_builder_refuses_before_sending(node: Node, herald: HttpClient) -> None:
    user = unique()
    session = node.connect(user)
    with pytest.raises(InvalidMessage) as refused:
        herald.publish(Message.modal("Upgrade").to_users(user).action("go", "Go", "javascript:alert(1)"))
    assert refused.value.field == "actions[0].url"
    with pytest.raises(InvalidMessage) as refused:
        herald.publish({"to": {"users": [user]}, "kind": "toast", "titel": "typo"})
    assert refused.value.field == "titel"
    expect_control(herald, session, user)


def test_api_key_is_required_and_a_wrong_one_is_an_auth_error(node: Node, herald: HttpClient) -> None:
    user = unique()
    session = node.connect(user)
    for key in ("not-the-key", None):
        with HttpClient(node.api, api_key=key) as wrong:
            with pytest.raises(AuthError) as refused:
                wrong.publish(Message.toast("Sneaky").to_users(user))
            assert refused.value.status == 401 and "API key" in refused.value.reason
    expect_control(herald, session, user)


def test_unreachable_node_is_unavailable() -> None:
    with HttpClient(f"http://127.0.0.1:{free_port()}", timeout=2) as nowhere:
        with pytest.raises(Unavailable, match="cannot reach Herald"):
            nowhere.stats()


def test_presence_stats_and_disconnect(node: Node, herald: HttpClient) -> None:
    user = unique()
    assert herald.presence(user).online is False
    session = node.connect(user)
    node.connect(user)
    presence = until("two sessions in presence", lambda: (p := herald.presence(user)).sessions == 2 and p)
    assert (presence.user, presence.online) == (user, True)
    stats = herald.stats()
    assert stats["mode"] == "embedded" and stats["sessions"] >= 2

    herald.disconnect(user)
    with pytest.raises(ConnectionClosed) as closed:
        session.ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008, closed.value
    until("no sessions left", lambda: not herald.presence(user).online)


def test_campaigns_crud_and_a_stored_campaign_fires(node: Node, herald: HttpClient) -> None:
    user, cid = unique(), unique("welcome")
    campaign = {
        "id": cid,
        "trigger": {"connect": True},
        "audience": {"where": f'user == "{user}"'},
        "message": {"kind": "toast", "title": "Welcome back"},
    }
    stored = herald.put_campaign(campaign)
    assert stored["id"] == cid and stored["active"] is True
    assert herald.get_campaign(cid)["message"]["title"] == "Welcome back"
    assert cid in [c["id"] for c in herald.campaigns()]
    frame = node.connect(user).recv_msg()
    assert (frame["title"], frame["reason"], frame["campaign"]) == ("Welcome back", "trigger", cid)

    with pytest.raises(Refused) as refused:
        herald.put_campaign({**campaign, "trigger": {"event": "x", "where": "props.n >"}})
    assert (refused.value.status, refused.value.field) == (400, "trigger.where")
    with pytest.raises(InvalidMessage) as invalid:
        herald.put_campaign({**campaign, "frequency": {"max": 1, "until": "forever"}})
    assert invalid.value.field == "frequency.until"

    herald.delete_campaign(cid)
    with pytest.raises(NotFound):
        herald.get_campaign(cid)
    with pytest.raises(NotFound):
        herald.delete_campaign(cid)
    # Deleted: a new session of the same user gets nothing on connect.
    expect_control(herald, node.connect(user), user)


def test_events_stream_records_the_delivery(node: Node, herald: HttpClient) -> None:
    user = unique()
    session = node.connect(user)
    sent = herald.publish(Message.toast("Tracked").to_users(user))
    session.recv_msg()
    record = until(
        "the delivery in the events stream",
        lambda: next(
            (r for r in herald.stream("events", 500) if r.get("msg") == sent.id and r.get("user") == user), None
        ),
    )
    assert record["type"] == "delivered", record
    with pytest.raises(ValueError):
        herald.stream("nope")  # type: ignore[arg-type]


def test_async_client_publishes_retracts_and_raises_the_same_errors(node: Node) -> None:
    user = unique()
    session = node.connect(user)

    async def main() -> tuple:
        async with AsyncHttpClient(node.api, api_key=API_KEY) as herald:
            sent = await herald.publish(Message.toast("From asyncio").to_users(user))
            presence = await herald.presence(user)
            with pytest.raises(Refused):
                await herald.publish(Message.toast("x").where("attrs.plan =="))
            with pytest.raises(InvalidMessage):
                await herald.publish(Message.toast().to_users(user))
            async with AsyncHttpClient(node.api, api_key="wrong") as wrong:
                with pytest.raises(AuthError):
                    await wrong.stats()
            return sent, presence

    sent, presence = asyncio.run(main())
    assert (sent.online, presence.online) == ([user], True)
    frame = session.recv_msg()
    assert (frame["id"], frame["title"]) == (sent.id, "From asyncio")

    async def retract() -> str:
        async with AsyncHttpClient(node.api, api_key=API_KEY) as herald:
            return await herald.retract(sent.id)

    assert asyncio.run(retract()) == sent.id
    assert session.recv() == {"t": "retract", "id": sent.id}


def test_from_env_reads_url_and_key(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_API_URL", node.api)
    monkeypatch.setenv("HERALD_API_KEY", API_KEY)
    with HttpClient.from_env() as herald:
        assert herald.stats()["mode"] == "embedded"
