#!/usr/bin/env python3
"""Publish an in-app message straight into Redis with the Python client library
(clients/python, `herald_client`, with its redis extra).

For services that already hold a Redis connection and no route to Herald's
admin API.

    pip install './clients/python[redis]'   # in your project: pip install 'herald-client[redis]'
    python3 examples/publish/publish_redis.py examples/envelopes/transaction-confirmation.json
    python3 examples/publish/publish_redis.py --durable examples/envelopes/outage-banner.json

    HERALD_REDIS__URL      the Redis Herald runs on (default redis://127.0.0.1:6379)
    HERALD_REDIS__PREFIX   Herald's key prefix (default herald)
    HERALD_REDIS__CLUSTER  true on a Redis Cluster (user channels are then SPUBLISHed)

Without --durable: a plain PUBLISH, on each user's channel `herald:user:{id}` for
`users` audiences (the replies count the nodes where the user is online, so
this prints who was online), else on `herald:broadcast`. Delivery is at most
once: sessions that are offline or reconnecting miss it and cannot recover
it on resume; `fallback` is not recorded; a refused envelope gets no answer
but lands in the `herald:dead` stream (the library checks it first).

With --durable: XADD to the `herald:ingress` stream. A node publishes it as
the HTTP API would (recoverable on resume, `fallback` recorded), even if
every node was down when it was added. Who was online is not known here.

Prints the message id (the library gives one to an envelope without);
exits 1 when the envelope is refused, 2 when Redis cannot be reached.
Campaigns are not published: store them with publish.py or publish.mjs.
"""

import json
import os
import sys

from herald_client import HeraldError, RedisClient, Unavailable

REDIS_URL = os.environ.get("HERALD_REDIS__URL", "redis://127.0.0.1:6379")
PREFIX = os.environ.get("HERALD_REDIS__PREFIX", "herald")
CLUSTER = os.environ.get("HERALD_REDIS__CLUSTER", "").lower() in ("1", "true", "yes")


def main(argv):
    durable = "--durable" in argv[1:]
    files = [a for a in argv[1:] if a != "--durable"]
    if len(files) != 1:
        print("usage: publish_redis.py [--durable] FILE.json", file=sys.stderr)
        return 64
    path = files[0]
    try:
        with open(path, "rb") as f:
            envelope = json.load(f)
    except (OSError, ValueError) as e:
        print(f"{path}: {e}", file=sys.stderr)
        return 1
    if isinstance(envelope, dict) and "trigger" in envelope:
        print(f"{path} is a campaign: store it with publish.py (PUT /v1/campaigns/ID)", file=sys.stderr)
        return 1

    try:
        with RedisClient.from_url(REDIS_URL, cluster=CLUSTER, prefix=PREFIX) as herald:
            if durable:
                print(herald.enqueue(envelope).id)
                return 0
            sent = herald.publish(envelope)
    except Unavailable as e:
        print(f"cannot publish through {REDIS_URL.split('@')[-1]}: {e}", file=sys.stderr)
        return 2
    except HeraldError as e:  # InvalidMessage, AuthError
        print(f"{path}: {e}", file=sys.stderr)
        return 1
    print(sent.id)
    if sent.online is not None:
        print("online: " + ",".join(sent.online), file=sys.stderr)
        print("offline: " + ",".join(sent.offline or []), file=sys.stderr)
    elif sent.nodes is not None:
        print(f"nodes: {sent.nodes}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
