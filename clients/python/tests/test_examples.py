"""The Python snippets in examples/publish, run as a user runs them (this
interpreter, where herald-client is installed) against live nodes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Optional, Tuple

import pytest
from conftest import API_KEY, PATIENCE, REPO, Node, RedisServer, free_port

USER = "u_123"  # the user the example envelopes are addressed to


@pytest.fixture(scope="module")
def examples_node() -> Iterator[Node]:
    """A node of its own: the examples' fixed ids and user must not meet other tests."""
    n = Node()
    yield n
    n.stop()


def run(script: str, *args: str, env: Optional[dict] = None) -> Tuple[int, str, str]:
    out = subprocess.run(
        [sys.executable, str(REPO / "examples" / "publish" / script), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        env={"PATH": os.environ.get("PATH", ""), **(env or {})},
    )
    return out.returncode, out.stdout, out.stderr


def test_publish_py_publishes_and_stores_campaigns_with_the_key(examples_node: Node) -> None:
    env = {"HERALD_API_URL": examples_node.api, "HERALD_API_KEY": API_KEY}
    session = examples_node.connect(USER)
    code, out, err = run("publish.py", "examples/envelopes/transaction-confirmation.json", env=env)
    assert code == 0, err
    answer = json.loads(out)
    assert answer["online"] == [USER] and answer["offline"] == []
    frame = session.recv_msg()
    assert (frame["id"], frame["title"]) == (answer["id"], "Transfer sent")

    code, out, err = run("publish.py", "examples/campaigns/plan-limit-upgrade.json", env=env)
    assert code == 0 and json.loads(out)["id"] == "plan-limit-upgrade", err


def test_publish_py_exit_codes(examples_node: Node, tmp_path: Path) -> None:
    session = examples_node.connect(USER)
    env = {"HERALD_API_URL": examples_node.api}
    code, _, err = run("publish.py", "examples/envelopes/error-toast.json", env=env)
    assert code == 1 and "401" in err, err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"to": {"users": [USER]}, "kind": "toast", "title": "x", "ttl": 60}))
    code, _, err = run("publish.py", str(bad), env={**env, "HERALD_API_KEY": API_KEY})
    assert code == 1 and "ttl: unknown field" in err, err
    code, _, err = run(
        "publish.py", "examples/envelopes/error-toast.json", env={"HERALD_API_URL": f"http://127.0.0.1:{free_port()}"}
    )
    assert code == 2 and "cannot reach Herald" in err, err
    # Nothing of the refused ones arrived: the next frame is this one.
    code, out, err = run("publish.py", "examples/envelopes/success-toast.json", env={**env, "HERALD_API_KEY": API_KEY})
    assert code == 0, err
    assert session.recv_msg()["id"] == json.loads(out)["id"]


def test_publish_redis_py_publishes_and_enqueues(redis_server: RedisServer, redis_node: Node) -> None:
    env = {"HERALD_REDIS__URL": redis_server.url}
    session = redis_node.connect(USER)
    code, out, err = run("publish_redis.py", "examples/envelopes/transaction-confirmation.json", env=env)
    assert code == 0, err
    assert f"online: {USER}" in err
    frame = session.recv_msg()
    assert (frame["id"], frame["title"]) == (out.strip(), "Transfer sent") and "pos" not in frame

    code, out, err = run("publish_redis.py", "--durable", "examples/envelopes/success-toast.json", env=env)
    assert code == 0, err
    frame = session.recv_msg()
    assert (frame["id"], frame["title"]) == (out.strip(), "Export ready") and frame["pos"]

    code, _, err = run(
        "publish_redis.py",
        "examples/envelopes/error-toast.json",
        env={"HERALD_REDIS__URL": f"redis://127.0.0.1:{free_port()}"},
    )
    assert code == 2 and "cannot publish" in err, err
