"""The exceptions every client raises.

``HeraldError`` is the root. What to do about each:

- ``InvalidMessage``: the library refused the envelope (or campaign) before
  sending anything; fix the field it names.
- ``Refused``: the node answered 4xx with a reason (a 400 names the field,
  like ``"to.where: ..."``); ``NotFound`` is its 404.
- ``AuthError``: the API key (or the Redis credentials) were missing or wrong.
- ``Unavailable``: Herald or Redis could not be reached, timed out, or
  answered 5xx (503 while its bus is down or it drains); retrying later may
  work.
"""

from __future__ import annotations

import re
from typing import Optional

__all__ = [
    "HeraldError",
    "InvalidMessage",
    "Refused",
    "NotFound",
    "AuthError",
    "Unavailable",
]

# "to.where: unexpected end" -> ("to.where", "unexpected end"), as the node writes them.
_FIELD_REASON = re.compile(r"^([A-Za-z_][\w.\[\]-]*): (.+)$", re.S)


def split_reason(text: str) -> "tuple[Optional[str], str]":
    """The field a node's (or the library's) reason names, and the rest."""
    m = _FIELD_REASON.match(text)
    return (m.group(1), m.group(2)) if m else (None, text)


class HeraldError(Exception):
    """Anything a Herald client raises."""


class InvalidMessage(HeraldError, ValueError):
    """Refused by the library before sending: ``field`` says which, ``reason`` why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class Refused(HeraldError):
    """The node refused the request (4xx): ``status``, its ``reason``, and the
    ``field`` that reason names, if any."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"Herald answered {status}: {reason}")
        self.status = status
        self.reason = reason
        self.field, _ = split_reason(reason)


class NotFound(Refused):
    """404: no such campaign, stream or route."""


class AuthError(HeraldError):
    """401/403 from the node (missing or wrong API key), or Redis refusing the
    connection's credentials. ``status`` is None for Redis."""

    def __init__(self, reason: str, status: Optional[int] = None) -> None:
        super().__init__(f"Herald answered {status}: {reason}" if status else reason)
        self.status = status
        self.reason = reason


class Unavailable(HeraldError):
    """Herald or Redis could not be reached or answered 5xx; ``status`` is the
    HTTP status when there was one."""

    def __init__(self, reason: str, status: Optional[int] = None) -> None:
        super().__init__(f"Herald answered {status}: {reason}" if status else reason)
        self.status = status
        self.reason = reason
