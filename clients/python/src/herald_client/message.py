"""The envelope builder: ``Message.banner(title=...).to_users("u_123").ttl(60)``.

A ``Message`` is immutable: every method returns a new one, so a partly
built message can serve as a template. Nothing is checked until it is
validated (``validate()``, ``to_json()``, or a client's ``publish``): then the
whole envelope is checked against the bundled schema, and what the node
would refuse raises ``InvalidMessage`` naming the field.
"""

from __future__ import annotations

import copy
import os
import time
from datetime import datetime, timedelta
from typing import Any, Dict, Iterable, List, Literal, Mapping, Optional, Union

from .validation import MAX_ENVELOPE_BYTES, check_envelope

__all__ = ["Message", "Kind", "Priority", "Position", "new_id"]

Kind = Literal["banner", "modal", "card", "toast", "tooltip", "fullscreen", "custom"]
Priority = Literal["low", "normal", "high", "urgent"]
Position = Literal["top", "bottom", "center"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id() -> str:
    """A fresh time-ordered id (a ULID, like the ids the node assigns)."""
    n = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(n >> (5 * i)) & 31] for i in reversed(range(26)))


def _names(first: Union[str, Iterable[str]], more: "tuple[str, ...]") -> List[str]:
    return ([first] if isinstance(first, str) else list(first)) + list(more)


class Message:
    """An envelope (SPEC section 4) being built."""

    __slots__ = ("_fields",)

    def __init__(self, fields: Optional[Mapping[str, Any]] = None) -> None:
        self._fields: Dict[str, Any] = copy.deepcopy(dict(fields or {}))

    # -- kinds ------------------------------------------------------------

    @classmethod
    def of(cls, kind: Kind, title: Optional[str] = None, body: Optional[str] = None, **fields: Any) -> "Message":
        """A message of ``kind``; ``fields`` are any other envelope fields."""
        texts = {k: v for k, v in (("title", title), ("body", body)) if v is not None}
        return cls({"kind": kind, **texts, **fields})

    @classmethod
    def banner(cls, title: Optional[str] = None, body: Optional[str] = None, **fields: Any) -> "Message":
        return cls.of("banner", title, body, **fields)

    @classmethod
    def modal(cls, title: Optional[str] = None, body: Optional[str] = None, **fields: Any) -> "Message":
        return cls.of("modal", title, body, **fields)

    @classmethod
    def card(cls, title: Optional[str] = None, body: Optional[str] = None, **fields: Any) -> "Message":
        return cls.of("card", title, body, **fields)

    @classmethod
    def toast(cls, title: Optional[str] = None, body: Optional[str] = None, **fields: Any) -> "Message":
        return cls.of("toast", title, body, **fields)

    @classmethod
    def fullscreen(cls, title: Optional[str] = None, body: Optional[str] = None, **fields: Any) -> "Message":
        return cls.of("fullscreen", title, body, **fields)

    @classmethod
    def tooltip(cls, anchor: str, title: Optional[str] = None, body: Optional[str] = None, **fields: Any) -> "Message":
        """A tooltip pointing at ``anchor`` (a CSS selector or view id)."""
        return cls.of("tooltip", title, body, anchor=anchor, **fields)

    @classmethod
    def custom(cls, data: Optional[Mapping[str, Any]] = None, **fields: Any) -> "Message":
        """Drawn by the app, not the SDK: ``data`` is handed over untouched."""
        return cls.of("custom", data=dict(data or {}), **fields)

    @classmethod
    def from_dict(cls, envelope: Mapping[str, Any]) -> "Message":
        """An envelope written by hand (or read from a file), to check or extend."""
        return cls(envelope)

    def _with(self, **changes: Any) -> "Message":
        out = Message(self._fields)
        out._fields.update(changes)
        return out

    def _audience(self, **part: Any) -> "Message":
        to = self._fields.get("to")
        to = dict(to) if isinstance(to, Mapping) else {}
        return self._with(to={**to, **part})

    # -- audience ---------------------------------------------------------

    def to_all(self) -> "Message":
        """Every session."""
        return self._with(to="all")

    def to_users(self, users: Union[str, Iterable[str]], *more: str) -> "Message":
        """These users (the token's ``sub``): ``to_users("a", "b")`` or ``to_users(ids)``."""
        return self._audience(users=_names(users, more))

    def to_segments(self, segments: Union[str, Iterable[str]], *more: str) -> "Message":
        """Sessions in any of these segments."""
        return self._audience(segments=_names(segments, more))

    def where(self, expression: str) -> "Message":
        """Sessions for which this CEL expression over ``user``, ``segments``
        and ``attrs`` holds. Combined with users or segments, all must hold."""
        return self._audience(where=expression)

    # -- content ----------------------------------------------------------

    def id(self, id: str) -> "Message":
        """A fixed id: to retract it by name, and so a repeat within the
        dedupe window is delivered once."""
        return self._with(id=id)

    def title(self, title: str) -> "Message":
        return self._with(title=title)

    def body(self, body: str) -> "Message":
        return self._with(body=body)

    def image(self, url: str) -> "Message":
        return self._with(image_url=url)

    def action(self, id: str, label: str, url: Optional[str] = None) -> "Message":
        """Adds a button (at most 3); ``clicked`` acks carry its ``id``."""
        button = {"id": id, "label": label, **({"url": url} if url is not None else {})}
        return self._with(actions=[*self._fields.get("actions", []), button])

    def position(self, position: Position) -> "Message":
        return self._with(position=position)

    def anchor(self, anchor: str) -> "Message":
        return self._with(anchor=anchor)

    def theme(self, theme: Optional[Mapping[str, Any]] = None, **hints: Any) -> "Message":
        """Styling hints, e.g. ``theme(severity="critical", accent="#d33")``."""
        return self._with(theme={**self._fields.get("theme", {}), **(theme or {}), **hints})

    def data(self, data: Optional[Mapping[str, Any]] = None, **values: Any) -> "Message":
        """Free-form payload for the app."""
        return self._with(data={**self._fields.get("data", {}), **(data or {}), **values})

    def locale(
        self,
        tag: str,
        title: Optional[str] = None,
        body: Optional[str] = None,
        actions: Optional[Iterable[Mapping[str, str]]] = None,
    ) -> "Message":
        """A variant for recipients whose locale is ``tag`` (``fr``, ``pt-BR``)."""
        variant: Dict[str, Any] = {k: v for k, v in (("title", title), ("body", body)) if v is not None}
        if actions is not None:
            variant["actions"] = [dict(a) for a in actions]
        return self._with(locales={**self._fields.get("locales", {}), tag: variant})

    # -- delivery ---------------------------------------------------------

    def priority(self, priority: Priority) -> "Message":
        return self._with(priority=priority)

    def ttl(self, ttl: Union[int, timedelta]) -> "Message":
        """Lifetime from publishing, in seconds or as a ``timedelta``."""
        seconds = int(ttl.total_seconds()) if isinstance(ttl, timedelta) else ttl
        return self._with(ttl_s=seconds)

    def expires_at(self, at: Union[int, datetime]) -> "Message":
        """An absolute expiry: a ``datetime``, or unix milliseconds."""
        return self._with(expires_at=int(at.timestamp() * 1000) if isinstance(at, datetime) else at)

    def send_at(self, at: Union[int, datetime]) -> "Message":
        """Publish at this time instead of now (a ``datetime``, or unix
        milliseconds; at most 30 days ahead): Herald holds it and publishes it
        once for the cluster. Through the HTTP API or ``enqueue``; a plain
        Redis ``publish`` is delivered at once."""
        return self._with(send_at=int(at.timestamp() * 1000) if isinstance(at, datetime) else at)

    def sticky(self, on: bool = True) -> "Message":
        """Stays active until it expires or is retracted: sessions that
        connect meanwhile receive it too."""
        return self._with(sticky=on)

    def collapse_key(self, key: str) -> "Message":
        """Replaces the active message with the same key."""
        return self._with(collapse_key=key)

    def require_ack(self, on: bool = True) -> "Message":
        """Sent again on each connect until the user clicks or dismisses it."""
        return self._with(require_ack=on)

    def fallback(self, on: bool = True) -> "Message":
        """Users audiences: offline recipients go to the ``undelivered`` stream."""
        return self._with(fallback=on)

    def campaign(self, name: str) -> "Message":
        """Groups its events for analytics."""
        return self._with(campaign=name)

    # -- output -----------------------------------------------------------

    def to_dict(self) -> Dict[str, Any]:
        """The envelope as built, unchecked (a copy)."""
        return copy.deepcopy(self._fields)

    def validate(self, *, max_bytes: int = MAX_ENVELOPE_BYTES) -> "Message":
        """Raises ``InvalidMessage`` if the node would refuse it; returns self."""
        check_envelope(self._fields, max_bytes=max_bytes)
        return self

    def to_json(self, *, max_bytes: int = MAX_ENVELOPE_BYTES) -> str:
        """The checked envelope as compact JSON."""
        return check_envelope(self._fields, max_bytes=max_bytes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and other._fields == self._fields

    def __repr__(self) -> str:
        return f"Message({self._fields!r})"


Envelope = Union[Message, Mapping[str, Any]]
