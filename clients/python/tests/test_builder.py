"""The builder and the bundled schemas, without a node. (That the node refuses
the same envelopes, naming the same fields, is checked in test_http.py.)"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import REPO, load

from herald_client import InvalidMessage, Message, check_campaign, check_envelope

BUNDLED = Path(__file__).resolve().parents[1] / "src" / "herald_client" / "schemas"


@pytest.mark.parametrize("name", ["envelope.schema.json", "campaign.schema.json"])
def test_bundled_schema_is_the_repositorys(name: str) -> None:
    bundled = json.loads((BUNDLED / name).read_text())
    assert bundled == json.loads((REPO / "schemas" / name).read_text()), (
        f"clients/python/src/herald_client/schemas/{name} differs from schemas/{name}; refresh it with: "
        f"cp schemas/{name} clients/python/src/herald_client/schemas/"
    )


def test_every_example_passes() -> None:
    envelopes = sorted((REPO / "examples" / "envelopes").glob("*.json"))
    campaigns = sorted((REPO / "examples" / "campaigns").glob("*.json"))
    assert len(envelopes) >= 10 and len(campaigns) >= 5
    for f in envelopes:
        check_envelope(json.loads(f.read_text()))
    for f in campaigns:
        check_campaign(json.loads(f.read_text()))


def test_builder_writes_the_envelope() -> None:
    msg = (
        Message.banner("Payments degraded", "Card payments may fail")
        .to_all()
        .priority("urgent")
        .sticky()
        .collapse_key("incident")
        .theme(severity="critical")
        .ttl(timedelta(minutes=30))
        .id("incident-42")
    )
    assert json.loads(msg.to_json()) == {
        "kind": "banner",
        "title": "Payments degraded",
        "body": "Card payments may fail",
        "to": "all",
        "priority": "urgent",
        "sticky": True,
        "collapse_key": "incident",
        "theme": {"severity": "critical"},
        "ttl_s": 1800,
        "id": "incident-42",
    }
    tip = (
        Message.tooltip("#export", "Export here")
        .to_users("u1", "u2")
        .where('attrs.plan == "free"')
        .action("ok", "Got it")
        .action("more", "Learn more", "/docs/export")
        .locale("fr", title="Exportez ici", actions=[{"id": "ok", "label": "Compris"}])
        .data(step=1)
        .require_ack()
        .fallback()
        .campaign("tour")
    )
    assert tip.validate().to_dict() == {
        "kind": "tooltip",
        "title": "Export here",
        "anchor": "#export",
        "to": {"users": ["u1", "u2"], "where": 'attrs.plan == "free"'},
        "actions": [{"id": "ok", "label": "Got it"}, {"id": "more", "label": "Learn more", "url": "/docs/export"}],
        "locales": {"fr": {"title": "Exportez ici", "actions": [{"id": "ok", "label": "Compris"}]}},
        "data": {"step": 1},
        "require_ack": True,
        "fallback": True,
        "campaign": "tour",
    }
    assert Message.custom({"confetti": True}).to_segments(["beta"]).to_dict() == {
        "kind": "custom",
        "data": {"confetti": True},
        "to": {"segments": ["beta"]},
    }


def test_send_at_is_unix_milliseconds() -> None:
    at = datetime(2026, 12, 24, 9, 0, tzinfo=timezone.utc)
    assert Message.banner("Maintenance").to_all().send_at(at).to_dict()["send_at"] == 1798102800000
    assert Message.toast("x").send_at(1798102800000).to_dict()["send_at"] == 1798102800000


def test_a_message_is_a_template() -> None:
    base = Message.toast("Export ready").action("open", "Open")
    a, b = base.to_users("a"), base.to_users("b").action("share", "Share")
    assert "to" not in base.to_dict() and len(base.to_dict()["actions"]) == 1
    assert a.to_dict()["to"] == {"users": ["a"]} and len(a.to_dict()["actions"]) == 1
    assert b.to_dict()["to"] == {"users": ["b"]} and len(b.to_dict()["actions"]) == 2


@pytest.mark.parametrize("case", load("refusals.json"), ids=lambda c: c["field"])
def test_refuses_what_the_node_refuses_naming_the_field(case: dict) -> None:
    with pytest.raises(InvalidMessage) as refused:
        check_envelope(case["envelope"])
    assert refused.value.field == case["field"], refused.value
    assert str(refused.value).startswith(f"{case['field']}: ")


def test_builder_refusals_name_the_field() -> None:
    with pytest.raises(InvalidMessage, match=r"^title: a title or a body is required$"):
        Message.banner().to_all().validate()
    with pytest.raises(InvalidMessage, match=r"^to: required$"):
        Message.banner("No audience").to_json()
    with pytest.raises(InvalidMessage, match=r"^ttl_s: must be at least 1$"):
        Message.toast("x").to_all().ttl(timedelta(milliseconds=10)).validate()
    with pytest.raises(InvalidMessage, match=r"^actions: at most 3 entries$"):
        m = Message.modal("x").to_all()
        for i in range(4):
            m = m.action(f"a{i}", "A")
        m.validate()
    big = Message.custom({"blob": "x" * 70_000}).to_all()
    with pytest.raises(InvalidMessage, match=r"^envelope: \d+ bytes is over the 65536-byte limit$"):
        big.validate()
    big.validate(max_bytes=128 * 1024)


def test_campaign_refusals_name_the_field() -> None:
    good = load_example_campaign()
    check_campaign(good)
    with pytest.raises(InvalidMessage) as refused:
        check_campaign({**good, "message": {**good["message"], "to": "all"}})
    assert refused.value.field == "message"
    with pytest.raises(InvalidMessage) as refused:
        check_campaign({**good, "frequency": {"max": 2, "until": "forever"}})
    assert refused.value.field == "frequency.until"


def load_example_campaign() -> dict:
    return json.loads((REPO / "examples" / "campaigns" / "upsell-export.json").read_text())
