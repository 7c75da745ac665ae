#!/usr/bin/env python3
"""Publish an in-app message straight into Redis with redis-py (`pip install redis`).

For services that already hold a Redis connection and no route to Herald's
admin API: a plain PUBLISH on Herald's channels, as `redis-cli` would do it.

    python3 examples/publish/publish_redis.py examples/envelopes/outage-banner.json

    HERALD_REDIS__URL     the Redis Herald runs on (default redis://127.0.0.1:6379)
    HERALD_REDIS__PREFIX  Herald's key prefix (default herald)

Envelopes for `users` audiences go to each user's channel, `herald:user:{id}`:
the reply of PUBLISH counts the nodes where that user is online, so this
prints who was online. Everything else goes to `herald:broadcast`, which every
node reads. (A users envelope on `herald:broadcast` works too; the per-user
channels only reach the nodes that hold those users.)

What a plain PUBLISH does not do, compared with the HTTP API or `herald publish`:
- delivery is at most once: nodes that are down or reconnecting miss it, and
  clients cannot recover it when they resume;
- a `fallback` message is not written to the `undelivered` stream: read the
  online/offline lines printed here instead;
- a refused envelope is not answered: it lands in the `herald:dead` stream with
  the reason (check files first with `herald validate FILE`).

Give every envelope an `id` (this script adds one when the file has none) so
that all nodes agree on it and it can be retracted.
Campaigns are not published: store them with publish.py or publish.mjs.
"""

import json
import os
import sys
import uuid

import redis  # pip install redis

REDIS_URL = os.environ.get("HERALD_REDIS__URL", "redis://127.0.0.1:6379")
PREFIX = os.environ.get("HERALD_REDIS__PREFIX", "herald")


def main(argv):
    if len(argv) != 2:
        print("usage: publish_redis.py FILE.json", file=sys.stderr)
        return 64
    try:
        with open(argv[1], "rb") as f:
            envelope = json.load(f)
    except (OSError, ValueError) as e:
        print(f"{argv[1]}: {e}", file=sys.stderr)
        return 1
    if not isinstance(envelope, dict):
        print(f"{argv[1]}: an envelope is a JSON object", file=sys.stderr)
        return 1
    if "trigger" in envelope:
        print(f"{argv[1]} is a campaign: store it with publish.py (PUT /v1/campaigns/ID)", file=sys.stderr)
        return 1
    envelope.setdefault("id", str(uuid.uuid4()))
    payload = json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))

    r = redis.Redis.from_url(REDIS_URL)
    to = envelope.get("to")
    try:
        if isinstance(to, dict) and isinstance(to.get("users"), list):
            pipe = r.pipeline(transaction=False)
            for user in to["users"]:
                pipe.publish(f"{PREFIX}:user:{user}", payload)
            nodes = pipe.execute()
            print(envelope["id"])
            print("online: " + ",".join(u for u, n in zip(to["users"], nodes) if n > 0), file=sys.stderr)
            print("offline: " + ",".join(u for u, n in zip(to["users"], nodes) if n == 0), file=sys.stderr)
        else:
            nodes = r.publish(f"{PREFIX}:broadcast", payload)
            print(envelope["id"])
            print(f"nodes: {nodes}", file=sys.stderr)
    except redis.RedisError as e:
        print(f"cannot publish through {REDIS_URL.split('@')[-1]}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
