#!/usr/bin/env bash
# Publish an in-app message, or store a campaign, from a shell. Three ways:
#
#   publish.sh FILE.json [api]   curl to the admin HTTP API (the default)
#   publish.sh FILE.json cli     herald publish --json FILE
#   publish.sh FILE.json redis   redis-cli PUBLISH herald:broadcast (needs Herald on Redis)
#
#   HERALD_API_URL        the node's admin listener (default http://127.0.0.1:9090)
#   HERALD_API_KEY        API key, when the node has auth.api_keys
#   HERALD_BIN            the herald binary (default: herald on the PATH)
#   HERALD_REDIS__URL     for redis: the Redis Herald runs on (default redis://127.0.0.1:6379)
#   HERALD_REDIS__PREFIX  for redis: Herald's key prefix (default herald)
#
# A file with a "trigger" is a campaign; campaigns are stored through the API
# only (PUT /v1/campaigns/ID: ID is the file's "id" when jq is installed, else
# the file name, as the examples are named after their campaign id).
# Check any file first with `herald validate FILE`.
set -euo pipefail

usage() {
  echo "usage: publish.sh FILE.json [api|cli|redis]" >&2
  exit 64
}
[ $# -ge 1 ] && [ $# -le 2 ] || usage
file=$1
via=${2:-api}
[ -r "$file" ] || { echo "publish.sh: cannot read $file" >&2; exit 1; }

api=${HERALD_API_URL:-http://127.0.0.1:9090}
api=${api%/}
auth=()
if [ -n "${HERALD_API_KEY:-}" ]; then
  auth=(-H "Authorization: Bearer $HERALD_API_KEY")
fi

is_campaign=false
if grep -q '"trigger"[[:space:]]*:' "$file"; then
  is_campaign=true
fi

case $via in
  api)
    if $is_campaign; then
      # PUT creates or replaces; Herald refuses an "id" in the file that differs from the path.
      id=
      if command -v jq >/dev/null 2>&1; then
        id=$(jq -r '.id // empty' "$file")
      fi
      method=PUT path=/v1/campaigns/${id:-$(basename "$file" .json)}
    else
      # 202 {"id": "...", "online": [...], "offline": [...]} (online/offline for users audiences)
      method=POST path=/v1/messages
    fi
    status=0
    curl -sS --fail-with-body -X "$method" "$api$path" \
      -H 'Content-Type: application/json' ${auth[@]+"${auth[@]}"} \
      --data-binary @"$file" || status=$?
    echo
    exit "$status"
    ;;
  cli)
    if $is_campaign; then
      echo "publish.sh: the CLI does not store campaigns; use: publish.sh $file api" >&2
      exit 1
    fi
    # Prints the message id; for users audiences, online/offline on stderr.
    # HERALD_API_KEY is read from the environment by herald itself.
    # (`herald retract ID` is the CLI's way to retract.)
    "${HERALD_BIN:-herald}" publish --json "$file" --api "$api"
    ;;
  redis)
    if $is_campaign; then
      echo "publish.sh: campaigns are stored through the API; use: publish.sh $file api" >&2
      exit 1
    fi
    # What an SRE with nothing but Redis access can do. Delivery is at most once
    # (no resume, no undelivered stream for fallback); the reply is the number of
    # nodes that received it. A refused envelope goes to the herald:dead stream.
    redis-cli -u "${HERALD_REDIS__URL:-redis://127.0.0.1:6379}" \
      PUBLISH "${HERALD_REDIS__PREFIX:-herald}:broadcast" "$(cat "$file")"
    ;;
  *)
    usage
    ;;
esac
