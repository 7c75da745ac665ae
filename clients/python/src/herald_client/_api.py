"""The admin HTTP API (SPEC section 6) without I/O: each endpoint is a
``Call`` saying what to send and how to read the answer, shared by the sync
and the asyncio client, which only move the bytes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Dict, Generic, List, Mapping, Optional, TypeVar, Union
from urllib.parse import quote

from .errors import AuthError, InvalidMessage, NotFound, Refused, Unavailable
from .message import Envelope, Message
from .results import Presence, Published
from .validation import check_campaign, check_envelope

T = TypeVar("T")
JSON = Any

DEFAULT_URL = "http://127.0.0.1:9090"
STREAMS = ("events", "undelivered", "dead")


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    read: Callable[[JSON], T]
    body: Optional[str] = None
    params: Optional[Dict[str, Union[str, int]]] = None

    def answer(self, status: int, text: str) -> T:
        """The result of a 2xx, or the typed error for anything else."""
        try:
            data = json.loads(text) if text else None
        except ValueError:
            data = None
        if 200 <= status < 300:
            return self.read(data)
        error = data.get("error") if isinstance(data, dict) else None
        reason = error if isinstance(error, str) else (text.strip() or f"HTTP {status}")
        if status in (401, 403):
            raise AuthError(reason, status)
        if status == 404:
            raise NotFound(status, reason)
        if status >= 500:
            raise Unavailable(reason, status)
        raise Refused(status, reason)


def options(url: str, api_key: Optional[str], timeout: float) -> Dict[str, Any]:
    """What an httpx client (sync or async) is built with."""
    headers = {"Accept": "application/json", "User-Agent": "herald-client-python/0.1.0"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return {"base_url": url.rstrip("/"), "headers": headers, "timeout": timeout}


def _segment(value: str) -> str:
    return quote(value, safe="")


def envelope_json(message: Envelope, validate: bool, max_bytes: int) -> str:
    fields = message.to_dict() if isinstance(message, Message) else dict(message)
    if validate:
        return check_envelope(fields, max_bytes=max_bytes)
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


def _published(data: JSON) -> Published:
    return Published(id=data["id"], online=data.get("online"), offline=data.get("offline"))


def publish(body: str) -> "Call[Published]":
    return Call("POST", "/v1/messages", _published, body=body)


def retract(id: str) -> "Call[str]":
    return Call("DELETE", f"/v1/messages/{_segment(id)}", lambda d: d["id"])


def active() -> "Call[List[Dict[str, JSON]]]":
    return Call("GET", "/v1/messages/active", lambda d: d["messages"])


def presence(user: str) -> "Call[Presence]":
    return Call(
        "GET",
        f"/v1/presence/{_segment(user)}",
        lambda d: Presence(user=d["user"], online=d["online"], sessions=d["sessions"]),
    )


def stats() -> "Call[Dict[str, JSON]]":
    return Call("GET", "/v1/stats", lambda d: d)


def put_campaign(campaign: Mapping[str, JSON], id: Optional[str], validate: bool) -> "Call[Dict[str, JSON]]":
    id = id or campaign.get("id")
    if not isinstance(id, str) or not id:
        raise InvalidMessage("id", "required: give the campaign an id")
    if validate:
        check_campaign(campaign)
    body = json.dumps(dict(campaign), ensure_ascii=False, separators=(",", ":"))
    return Call("PUT", f"/v1/campaigns/{_segment(id)}", lambda d: d, body=body)


def campaigns() -> "Call[List[Dict[str, JSON]]]":
    return Call("GET", "/v1/campaigns", lambda d: d["campaigns"])


def get_campaign(id: str) -> "Call[Dict[str, JSON]]":
    return Call("GET", f"/v1/campaigns/{_segment(id)}", lambda d: d)


def delete_campaign(id: str) -> "Call[None]":
    return Call("DELETE", f"/v1/campaigns/{_segment(id)}", lambda d: None)


def disconnect(user: str) -> "Call[None]":
    return Call("POST", f"/v1/users/{_segment(user)}/disconnect", lambda d: None)


def stream(name: str, count: int) -> "Call[List[Dict[str, JSON]]]":
    if name not in STREAMS:
        raise ValueError(f"stream: one of {', '.join(STREAMS)}, not {name!r}")
    return Call("GET", f"/v1/streams/{name}", lambda d: d["records"], params={"count": count})
