#!/usr/bin/env python3
"""Publish an in-app message, or store a campaign, through Herald's admin HTTP
API with the Python client library (clients/python, `herald_client`).

    pip install ./clients/python        # in your project: pip install herald-client
    python3 examples/publish/publish.py examples/envelopes/outage-banner.json
    python3 examples/publish/publish.py examples/campaigns/upsell-export.json

    HERALD_API_URL   the node's admin listener (default http://127.0.0.1:9090)
    HERALD_API_KEY   sent as "Authorization: Bearer <key>" when set

A file with a "trigger" is a campaign: it is stored with PUT /v1/campaigns/{id}.
Anything else is an envelope, published with POST /v1/messages (a retraction,
{"op": "retract", "id": "..."}, goes the same way). The library checks it
against the envelope schema first, and Herald checks it again.

Prints Herald's answer, e.g. {"id": "01J...", "online": ["u_123"], "offline": []};
exits 1 with the reason on a refusal, 2 when the node cannot be reached.
"""

import json
import sys
from dataclasses import asdict

from herald_client import HeraldError, HttpClient, Unavailable


def main(argv):
    if len(argv) != 2:
        print("usage: publish.py FILE.json", file=sys.stderr)
        return 64
    path = argv[1]
    try:
        with open(path, "rb") as f:
            document = json.load(f)
    except OSError as e:
        print(f"{path}: {e.strerror}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"{path}: not JSON: {e}", file=sys.stderr)
        return 1

    try:
        with HttpClient.from_env() as herald:
            if isinstance(document, dict) and "trigger" in document:
                answer = herald.put_campaign(document)
            else:
                sent = herald.publish(document)
                answer = {k: v for k, v in asdict(sent).items() if v is not None}
    except Unavailable as e:
        print(e, file=sys.stderr)
        return 2
    except HeraldError as e:  # InvalidMessage, Refused, AuthError
        print(f"{path}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
