"""What the clients return."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

__all__ = ["Published", "Enqueued", "Presence"]


@dataclass(frozen=True)
class Published:
    """A message handed to Herald.

    ``online``/``offline``: for audiences naming users, who had a live
    session at publish time (None otherwise). ``nodes``: for a broadcast by
    Redis ``PUBLISH``, how many Herald nodes Redis counted as subscribers
    (None otherwise; on a Redis Cluster only those of the Redis node that
    took it).
    """

    id: str
    online: Optional[List[str]] = None
    offline: Optional[List[str]] = None
    nodes: Optional[int] = None


@dataclass(frozen=True)
class Enqueued:
    """An envelope added to the durable ingress stream: ``id`` is the
    message's, ``entry`` the stream entry's. A node publishes it once it
    reads it (when one is up), so it is not known here who was online."""

    id: str
    entry: str


@dataclass(frozen=True)
class Presence:
    """A user's live sessions across the cluster."""

    user: str
    online: bool
    sessions: int
