"""Publishing and administration through a node's admin HTTP API.

Messages published this way carry a resume position: a client that
reconnects within the resume window recovers them, on any node. The answer
comes after the node has published (or refused) the message, with who was
online for audiences naming users.
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any, Dict, List, Literal, Mapping, Optional, Type, TypeVar

import httpx

from . import _api
from .errors import Unavailable
from .message import Envelope
from .results import Presence, Published
from .validation import MAX_ENVELOPE_BYTES

__all__ = ["HttpClient", "AsyncHttpClient"]

T = TypeVar("T")
_C = TypeVar("_C", bound="_Base")
StreamName = Literal["events", "undelivered", "dead"]


class _Base:
    def __init__(
        self, url: str, api_key: Optional[str], timeout: float, validate: bool, max_envelope_bytes: int
    ) -> None:
        self.url = url.rstrip("/")
        self._options = _api.options(url, api_key, timeout)
        self._validate = validate
        self._max_bytes = max_envelope_bytes

    @classmethod
    def from_env(cls: Type[_C], **kwargs: Any) -> _C:
        """``HERALD_API_URL`` (default http://127.0.0.1:9090) and ``HERALD_API_KEY``, as the CLI reads them."""
        url = os.environ.get("HERALD_API_URL", _api.DEFAULT_URL)
        return cls(url, api_key=os.environ.get("HERALD_API_KEY"), **kwargs)

    @staticmethod
    def _request(call: "_api.Call[Any]") -> Dict[str, Any]:
        headers = {"Content-Type": "application/json"} if call.body is not None else None
        return {
            "method": call.method,
            "url": call.path,
            "content": call.body,
            "params": call.params,
            "headers": headers,
        }

    def _publish(self, message: Envelope) -> "_api.Call[Published]":
        return _api.publish(_api.envelope_json(message, self._validate, self._max_bytes))

    def _unreachable(self, e: httpx.TransportError) -> Unavailable:
        return Unavailable(f"cannot reach Herald at {self.url}: {e or type(e).__name__}")


class HttpClient(_Base):
    """A node's admin API, e.g. ``HttpClient("http://127.0.0.1:9090", api_key=...)``.

    ``validate=False`` skips the local schema check (the node still checks);
    use it when the node is newer than this package. Use it as a context
    manager, or call ``close()``.
    """

    def __init__(
        self,
        url: str = _api.DEFAULT_URL,
        *,
        api_key: Optional[str] = None,
        timeout: float = 10.0,
        validate: bool = True,
        max_envelope_bytes: int = MAX_ENVELOPE_BYTES,
    ) -> None:
        super().__init__(url, api_key, timeout, validate, max_envelope_bytes)
        self._http = httpx.Client(**self._options)

    def _send(self, call: "_api.Call[T]") -> T:
        try:
            r = self._http.request(**self._request(call))
        except httpx.TransportError as e:
            raise self._unreachable(e) from e
        return call.answer(r.status_code, r.text)

    def publish(self, message: Envelope) -> Published:
        """``POST /v1/messages``: a ``Message`` or an envelope dict."""
        return self._send(self._publish(message))

    def retract(self, id: str) -> str:
        """``DELETE /v1/messages/{id}``: takes the message off every screen."""
        return self._send(_api.retract(id))

    def active(self) -> List[Dict[str, Any]]:
        """The sticky set: active sticky and ``require_ack`` envelopes."""
        return self._send(_api.active())

    def presence(self, user: str) -> Presence:
        return self._send(_api.presence(user))

    def stats(self) -> Dict[str, Any]:
        """This node's sessions, users and delivery counters (and the cluster's)."""
        return self._send(_api.stats())

    def put_campaign(self, campaign: Mapping[str, Any], id: Optional[str] = None) -> Dict[str, Any]:
        """Creates or replaces a campaign (its ``id``, or ``id`` here); returns it as stored."""
        return self._send(_api.put_campaign(campaign, id, self._validate))

    def campaigns(self) -> List[Dict[str, Any]]:
        return self._send(_api.campaigns())

    def get_campaign(self, id: str) -> Dict[str, Any]:
        """Raises ``NotFound`` for an unknown id."""
        return self._send(_api.get_campaign(id))

    def delete_campaign(self, id: str) -> None:
        """Raises ``NotFound`` for an unknown id."""
        self._send(_api.delete_campaign(id))

    def disconnect(self, user: str) -> None:
        """Closes every session of ``user``, on every node (close code 1008)."""
        self._send(_api.disconnect(user))

    def stream(self, name: StreamName, count: int = 100) -> List[Dict[str, Any]]:
        """The newest records of ``events``, ``undelivered`` or ``dead``, newest first."""
        return self._send(_api.stream(name, count))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "HttpClient":
        return self

    def __exit__(
        self, t: Optional[Type[BaseException]], e: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        self.close()


class AsyncHttpClient(_Base):
    """The asyncio twin of ``HttpClient``: the same methods, awaited.
    Use ``async with``, or call ``aclose()``."""

    def __init__(
        self,
        url: str = _api.DEFAULT_URL,
        *,
        api_key: Optional[str] = None,
        timeout: float = 10.0,
        validate: bool = True,
        max_envelope_bytes: int = MAX_ENVELOPE_BYTES,
    ) -> None:
        super().__init__(url, api_key, timeout, validate, max_envelope_bytes)
        self._http = httpx.AsyncClient(**self._options)

    async def _send(self, call: "_api.Call[T]") -> T:
        try:
            r = await self._http.request(**self._request(call))
        except httpx.TransportError as e:
            raise self._unreachable(e) from e
        return call.answer(r.status_code, r.text)

    async def publish(self, message: Envelope) -> Published:
        return await self._send(self._publish(message))

    async def retract(self, id: str) -> str:
        return await self._send(_api.retract(id))

    async def active(self) -> List[Dict[str, Any]]:
        return await self._send(_api.active())

    async def presence(self, user: str) -> Presence:
        return await self._send(_api.presence(user))

    async def stats(self) -> Dict[str, Any]:
        return await self._send(_api.stats())

    async def put_campaign(self, campaign: Mapping[str, Any], id: Optional[str] = None) -> Dict[str, Any]:
        return await self._send(_api.put_campaign(campaign, id, self._validate))

    async def campaigns(self) -> List[Dict[str, Any]]:
        return await self._send(_api.campaigns())

    async def get_campaign(self, id: str) -> Dict[str, Any]:
        return await self._send(_api.get_campaign(id))

    async def delete_campaign(self, id: str) -> None:
        await self._send(_api.delete_campaign(id))

    async def disconnect(self, user: str) -> None:
        await self._send(_api.disconnect(user))

    async def stream(self, name: StreamName, count: int = 100) -> List[Dict[str, Any]]:
        return await self._send(_api.stream(name, count))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncHttpClient":
        return self

    async def __aexit__(
        self, t: Optional[Type[BaseException]], e: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        await self.aclose()
