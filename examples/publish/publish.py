#!/usr/bin/env python3
"""Publish an in-app message, or store a campaign, through Herald's admin HTTP API.

Standard library only (urllib), Python 3.8 or later.

    python3 examples/publish/publish.py examples/envelopes/outage-banner.json
    python3 examples/publish/publish.py examples/campaigns/upsell-export.json

    HERALD_API_URL   the node's admin listener (default http://127.0.0.1:9090)
    HERALD_API_KEY   sent as "Authorization: Bearer <key>" when set

A file with a "trigger" is a campaign: it is stored with PUT /v1/campaigns/{id}.
Anything else is an envelope, published with POST /v1/messages (a retraction,
{"op": "retract", "id": "..."}, goes the same way). The file is sent as it is;
Herald checks it and answers 400 with the reason if it is wrong.

Prints Herald's answer, e.g. {"id": "01J...", "online": ["u_123"], "offline": []};
exits 1 with the reason on a refusal, 2 when the node cannot be reached.
"""

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

API_URL = os.environ.get("HERALD_API_URL", "http://127.0.0.1:9090").rstrip("/")
API_KEY = os.environ.get("HERALD_API_KEY")


def send(method, path, body):
    """Sends JSON bytes; returns (status, parsed answer)."""
    request = urllib.request.Request(
        API_URL + path,
        data=body,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    if API_KEY:
        request.add_header("Authorization", "Bearer " + API_KEY)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as refused:
        text = refused.read().decode("utf-8", "replace")
        try:
            reason = json.loads(text).get("error", text)
        except ValueError:
            reason = text
        return refused.code, {"error": reason}


def main(argv):
    if len(argv) != 2:
        print("usage: publish.py FILE.json", file=sys.stderr)
        return 64
    try:
        with open(argv[1], "rb") as f:
            body = f.read()
    except OSError as e:
        print(f"{argv[1]}: {e.strerror}", file=sys.stderr)
        return 1
    try:
        document = json.loads(body)
    except ValueError as e:
        print(f"{argv[1]}: not JSON: {e}", file=sys.stderr)
        return 1

    if isinstance(document, dict) and "trigger" in document:
        campaign_id = document.get("id")
        if not campaign_id:
            print(f"{argv[1]}: a campaign file needs an \"id\"", file=sys.stderr)
            return 1
        method, path = "PUT", "/v1/campaigns/" + urllib.parse.quote(campaign_id, safe="")
    else:
        method, path = "POST", "/v1/messages"

    try:
        status, answer = send(method, path, body)
    except (urllib.error.URLError, OSError) as e:
        print(f"cannot reach Herald at {API_URL}: {e}", file=sys.stderr)
        return 2
    if status >= 400:
        print(f"{method} {path} answered {status}: {answer['error']}", file=sys.stderr)
        return 1
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
