"""Publish in-app messages to Herald, through its admin HTTP API or Redis.

    from herald_client import HttpClient, Message

    with HttpClient("http://127.0.0.1:9090", api_key="...") as herald:
        sent = herald.publish(Message.toast("Payment received").to_users("u_123"))
        print(sent.id, sent.online)

``RedisClient`` and ``AsyncRedisClient`` need the ``redis`` extra
(``pip install 'herald-client[redis]'``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import AuthError, HeraldError, InvalidMessage, NotFound, Refused, Unavailable
from .http_client import AsyncHttpClient, HttpClient
from .message import Kind, Message, Position, Priority, new_id
from .results import Enqueued, Presence, Published
from .validation import check_campaign, check_envelope

if TYPE_CHECKING:
    from .redis_client import AsyncRedisClient, RedisClient

__version__ = "0.1.0"

__all__ = [
    "HttpClient",
    "AsyncHttpClient",
    "RedisClient",
    "AsyncRedisClient",
    "Message",
    "Kind",
    "Priority",
    "Position",
    "new_id",
    "Published",
    "Enqueued",
    "Presence",
    "HeraldError",
    "InvalidMessage",
    "Refused",
    "NotFound",
    "AuthError",
    "Unavailable",
    "check_envelope",
    "check_campaign",
]


def __getattr__(name: str) -> Any:
    # The Redis clients import redis-py, an optional dependency.
    if name in ("RedisClient", "AsyncRedisClient"):
        try:
            from . import redis_client
        except ImportError as e:
            raise ImportError(f"{name} needs redis-py: pip install 'herald-client[redis]' ({e})") from e
        return getattr(redis_client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
