"""Publishing straight into the Redis that Herald nodes share (SPEC section 7).

Two ways, with different guarantees:

- ``publish``: ``PUBLISH`` on the user channels ``{prefix}:user:{id}`` for
  audiences naming users (``SPUBLISH`` on a Redis Cluster, where those
  channels are sharded), else on ``{prefix}:broadcast``. Delivered at most
  once to the sessions online right now; not recoverable (no resume
  position), ``fallback`` is not recorded, and a node that refuses the
  envelope writes it to the ``dead`` stream instead of answering. The reply
  tells who was online.
- ``enqueue``: ``XADD {prefix}:ingress * e <envelope>``, the durable path.
  A node consumes it, publishes it as the HTTP API would (recoverable,
  sticky set, ``fallback``), then acknowledges it; an entry added while
  every node is down is published when one comes back.

Every envelope gets an ``id`` here when it has none, so that every node,
and a redelivered ingress entry, agree on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Type, Union

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.exceptions import AuthenticationError, NoPermissionError, RedisError

from . import _api
from .errors import AuthError, HeraldError, Unavailable
from .message import Envelope, Message, new_id
from .results import Enqueued, Published
from .validation import MAX_ENVELOPE_BYTES

__all__ = ["RedisClient", "AsyncRedisClient"]

DEFAULT_URL = "redis://127.0.0.1:6379"
_CLUSTERS = (redis.cluster.RedisCluster, redis.asyncio.cluster.RedisCluster)


@dataclass(frozen=True)
class _Publish:
    """One envelope's PUBLISH (or SPUBLISH) commands, and how to read the replies."""

    id: str
    payload: str
    commands: List[Tuple[str, str]]  # (command, channel)
    users: Optional[List[str]]  # whose channels, in order; None: the broadcast channel
    sharded: bool

    def result(self, replies: Sequence[int]) -> Published:
        if self.users is None:
            # On a cluster, PUBLISH counts only the subscribers of the Redis node that took it.
            return Published(id=self.id, nodes=None if self.sharded else int(replies[0]))
        online = [u for u, n in zip(self.users, replies) if int(n) > 0]
        return Published(id=self.id, online=online, offline=[u for u in self.users if u not in online])


class _Base:
    def __init__(self, client: Any, prefix: str, validate: bool, max_envelope_bytes: int, owned: bool) -> None:
        self.redis = client
        self.prefix = prefix
        self._sharded = isinstance(client, _CLUSTERS)
        self._validate = validate
        self._max_bytes = max_envelope_bytes
        self._owned = owned

    def _envelope(self, message: Envelope) -> Tuple[str, str, Mapping[str, Any]]:
        """The envelope's id (a new one if it had none), its checked JSON, its fields."""
        fields = message.to_dict() if isinstance(message, Message) else dict(message)
        fields.setdefault("id", new_id())
        return fields["id"], _api.envelope_json(fields, self._validate, self._max_bytes), fields

    def _publish(self, message: Envelope) -> _Publish:
        id, payload, fields = self._envelope(message)
        to = fields.get("to")
        users = to.get("users") if isinstance(to, Mapping) else None
        if isinstance(users, list):
            users = list(dict.fromkeys(users))
            command = "SPUBLISH" if self._sharded else "PUBLISH"
            return _Publish(id, payload, [(command, f"{self.prefix}:user:{u}") for u in users], users, self._sharded)
        return _Publish(id, payload, [("PUBLISH", f"{self.prefix}:broadcast")], None, self._sharded)

    def _ingress(self, message: Envelope) -> Tuple[str, str, Dict[str, str]]:
        """The id, the stream and the fields of the ingress entry."""
        id, payload, _ = self._envelope(message)
        return id, f"{self.prefix}:ingress", {"e": payload}

    @staticmethod
    def _enqueued(id: str, entry: Union[bytes, str]) -> Enqueued:
        return Enqueued(id=id, entry=entry.decode() if isinstance(entry, bytes) else entry)

    @staticmethod
    def _error(e: RedisError) -> HeraldError:
        if isinstance(e, (AuthenticationError, NoPermissionError)):
            return AuthError(f"Redis refused the credentials: {e}")
        return Unavailable(f"Redis: {e}")


class RedisClient(_Base):
    """Publishes through a ``redis.Redis`` or ``redis.cluster.RedisCluster``
    (a cluster client uses ``SPUBLISH`` for user channels).

    ``RedisClient.from_url("redis://127.0.0.1:6379")`` makes and owns its own
    connection; ``RedisClient(existing)`` borrows yours and leaves it open on
    ``close()``. ``prefix`` is the nodes' ``redis.prefix``.
    """

    def __init__(
        self,
        client: "Union[redis.Redis, redis.cluster.RedisCluster]",
        *,
        prefix: str = "herald",
        validate: bool = True,
        max_envelope_bytes: int = MAX_ENVELOPE_BYTES,
        _owned: bool = False,
    ) -> None:
        super().__init__(client, prefix, validate, max_envelope_bytes, _owned)

    @classmethod
    def from_url(
        cls,
        url: str = DEFAULT_URL,
        *,
        cluster: bool = False,
        prefix: str = "herald",
        validate: bool = True,
        max_envelope_bytes: int = MAX_ENVELOPE_BYTES,
        **redis_options: Any,
    ) -> "RedisClient":
        """``cluster=True``: ``url`` is one seed node of a Redis Cluster."""
        make = redis.cluster.RedisCluster.from_url if cluster else redis.Redis.from_url
        return cls(
            make(url, **redis_options),
            prefix=prefix,
            validate=validate,
            max_envelope_bytes=max_envelope_bytes,
            _owned=True,
        )

    def publish(self, message: Envelope) -> Published:
        """Plain ``PUBLISH``/``SPUBLISH``: at most once, not recoverable."""
        plan = self._publish(message)
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                for command, channel in plan.commands:
                    pipe.execute_command(command, channel, plan.payload)
                replies = pipe.execute()
        except RedisError as e:
            raise self._error(e) from e
        return plan.result(replies)

    def enqueue(self, message: Envelope) -> Enqueued:
        """``XADD`` to the ingress stream: durable and recoverable."""
        id, stream, fields = self._ingress(message)
        try:
            entry = self.redis.xadd(stream, fields)
        except RedisError as e:
            raise self._error(e) from e
        return self._enqueued(id, entry)

    def retract(self, id: str) -> Enqueued:
        """Retracts through the ingress stream, so the node also takes it out
        of the sticky set and the resume history."""
        return self.enqueue({"op": "retract", "id": id})

    def close(self) -> None:
        if self._owned:
            self.redis.close()

    def __enter__(self) -> "RedisClient":
        return self

    def __exit__(
        self, t: Optional[Type[BaseException]], e: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        self.close()


class AsyncRedisClient(_Base):
    """The asyncio twin of ``RedisClient``, over ``redis.asyncio.Redis`` or
    ``redis.asyncio.cluster.RedisCluster``."""

    def __init__(
        self,
        client: "Union[redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster]",
        *,
        prefix: str = "herald",
        validate: bool = True,
        max_envelope_bytes: int = MAX_ENVELOPE_BYTES,
        _owned: bool = False,
    ) -> None:
        super().__init__(client, prefix, validate, max_envelope_bytes, _owned)

    @classmethod
    def from_url(
        cls,
        url: str = DEFAULT_URL,
        *,
        cluster: bool = False,
        prefix: str = "herald",
        validate: bool = True,
        max_envelope_bytes: int = MAX_ENVELOPE_BYTES,
        **redis_options: Any,
    ) -> "AsyncRedisClient":
        make = redis.asyncio.cluster.RedisCluster.from_url if cluster else redis.asyncio.Redis.from_url
        return cls(
            make(url, **redis_options),
            prefix=prefix,
            validate=validate,
            max_envelope_bytes=max_envelope_bytes,
            _owned=True,
        )

    async def publish(self, message: Envelope) -> Published:
        plan = self._publish(message)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for command, channel in plan.commands:
                    pipe.execute_command(command, channel, plan.payload)
                replies = await pipe.execute()
        except RedisError as e:
            raise self._error(e) from e
        return plan.result(replies)

    async def enqueue(self, message: Envelope) -> Enqueued:
        id, stream, fields = self._ingress(message)
        try:
            entry = await self.redis.xadd(stream, fields)
        except RedisError as e:
            raise self._error(e) from e
        return self._enqueued(id, entry)

    async def retract(self, id: str) -> Enqueued:
        return await self.enqueue({"op": "retract", "id": id})

    async def aclose(self) -> None:
        if self._owned:
            await self.redis.aclose()

    async def __aenter__(self) -> "AsyncRedisClient":
        return self

    async def __aexit__(
        self, t: Optional[Type[BaseException]], e: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        await self.aclose()
