"""Fixtures: real ``herald serve`` processes on free ports (embedded, on a
Redis, on a Redis Cluster), real redis-server processes, and WebSocket
sessions that see what a user's app would see.

The herald binary is ``<repo>/target/debug/herald`` (``cargo build --bin
herald``) unless ``HERALD_BIN`` names another. Missing tools fail the tests
with the command that installs them; nothing is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, TypeVar

import httpx
import pytest

INSTALL = "pip install -e 'clients/python[redis,test]'"
try:
    import redis
    from websockets.sync.client import ClientConnection, connect
except ImportError as e:  # pragma: no cover - the message is the point
    raise ImportError(f"the tests need their dependencies ({e}); install them with: {INSTALL}") from e

REPO = Path(__file__).resolve().parents[3]
TESTDATA = REPO / "clients" / "testdata"
API_KEY = "client-tests-key-0123456789"
PATIENCE = 15.0

T = TypeVar("T")


def need(tool: str, install: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} not found; install it with: {install}", pytrace=False)
    return path


def herald_bin() -> str:
    path = Path(os.environ.get("HERALD_BIN") or REPO / "target" / "debug" / "herald")
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"no herald binary at {path}: build it with `cargo build --bin herald` (or point HERALD_BIN at one)",
            pytrace=False,
        )
    return str(path)


def free_port(below: int = 65536) -> int:
    """A TCP port that was free a moment ago (a cluster's bus port is 10000 above)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < below:
            return port


class Exited(Exception):
    """A process the test needs ended."""


def until(what: str, check: Callable[[], Optional[T]], timeout: float = PATIENCE, every: float = 0.05) -> T:
    """Polls ``check`` until it returns something truthy; fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Optional[BaseException] = None
    while True:
        try:
            value = check()
            if value:
                return value
        except Exited as e:
            pytest.fail(f"waiting for {what}: {e}", pytrace=False)
        except Exception as e:  # noqa: BLE001 - remembered for the failure message
            last = e
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}" + (f": {last!r}" if last else ""))
        time.sleep(every)


def unique(prefix: str = "u") -> str:
    """A user (or id) no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Process:
    """A child process whose output goes to a file (a full pipe never blocks it)."""

    def __init__(self, args: List[str], env: Optional[Dict[str, str]] = None) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix="herald-client-test-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            args,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={"PATH": os.environ.get("PATH", ""), **(env or {})},
        )

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            raise Exited(f"{self.proc.args[0]} exited {self.proc.returncode}:\n{self.output()}")
        return True

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        os.unlink(self.log.name)


class RedisServer:
    """One redis-server on a free port, keeping nothing on disk."""

    def __init__(self, *extra: str, port: Optional[int] = None) -> None:
        need("redis-server", "apt-get install -y redis-server")
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="herald-client-redis-")
        self.process = Process(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                *extra,
            ]
        )
        self.url = f"redis://127.0.0.1:{self.port}"
        client = redis.Redis(port=self.port)
        until(f"redis-server on {self.port}", lambda: self.process.alive() and client.ping())
        client.close()

    def stop(self) -> None:
        self.process.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisCluster:
    """Three masters, created with redis-cli --cluster create."""

    def __init__(self) -> None:
        need("redis-cli", "apt-get install -y redis-tools")
        self.servers = [
            RedisServer("--cluster-enabled", "yes", "--cluster-node-timeout", "5000", port=free_port(below=55536))
            for _ in range(3)
        ]
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{s.port}" for s in self.servers),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        for s in self.servers:
            c = redis.Redis(port=s.port)
            until(f"cluster state ok on {s.port}", lambda c=c: c.cluster("info")["cluster_state"] == "ok")
            c.close()
        self.url = self.servers[0].url

    def stop(self) -> None:
        for s in self.servers:
            s.stop()


class Session:
    """A WebSocket session as an app holds it: the frames it receives."""

    def __init__(self, url: str) -> None:
        self._connection = connect(url, open_timeout=PATIENCE)
        self.ws: ClientConnection = self._connection.__enter__()
        self.hello = self.recv()
        assert self.hello["t"] == "hello", self.hello

    def recv(self, timeout: float = PATIENCE) -> Dict[str, Any]:
        try:
            return json.loads(self.ws.recv(timeout=timeout))
        except TimeoutError:
            pytest.fail(f"no frame within {timeout}s")

    def recv_msg(self) -> Dict[str, Any]:
        frame = self.recv()
        assert frame["t"] == "msg", frame
        return frame

    def close(self) -> None:
        self._connection.__exit__(None, None, None)


class Node:
    """``herald serve`` in dev mode on free ports, with the test API key."""

    def __init__(self, redis_url: Optional[str] = None, env: Optional[Dict[str, str]] = None) -> None:
        self.port, self.admin_port = free_port(), free_port()
        args = [
            herald_bin(),
            "serve",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--admin-listen",
            f"127.0.0.1:{self.admin_port}",
        ]
        if redis_url:
            args += ["--redis", redis_url]
        self.process = Process(args, {"HERALD_AUTH__API_KEYS": API_KEY, "HERALD_LOG__LEVEL": "info", **(env or {})})
        self.base = f"http://127.0.0.1:{self.port}"
        self.api = f"http://127.0.0.1:{self.admin_port}"
        self.sessions: List[Session] = []

        def ready() -> bool:
            self.process.alive()
            return (
                httpx.get(f"{self.base}/healthz").status_code == 200
                and httpx.get(f"{self.api}/readyz").status_code == 200
            )

        until(f"herald on {self.base} and {self.api}", ready)

    def token(self, user: str, **query: str) -> str:
        r = httpx.get(f"{self.base}/dev/token", params={"sub": user, **query})
        r.raise_for_status()
        return r.json()["token"]

    def connect(self, user: str, since: Optional[str] = None, **claims: str) -> Session:
        params = {"token": self.token(user, **claims), **({"since": since} if since else {})}
        url = f"ws://127.0.0.1:{self.port}/v1/ws?" + str(httpx.QueryParams(params))
        session = Session(url)
        self.sessions.append(session)
        return session

    def close_sessions(self) -> None:
        for s in self.sessions:
            s.close()
        self.sessions.clear()

    def stop(self) -> None:
        self.close_sessions()
        self.process.stop()


@pytest.fixture(scope="session")
def node() -> Iterator[Node]:
    """One embedded node (no Redis), shared by the HTTP tests."""
    n = Node()
    yield n
    n.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    s = RedisServer()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def redis_node(redis_server: RedisServer) -> Iterator[Node]:
    """One node on ``redis_server``."""
    n = Node(redis_server.url)
    yield n
    n.stop()


@pytest.fixture(autouse=True)
def _close_sessions(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test's sessions end with it."""
    yield
    for name in ("node", "redis_node", "cluster_node", "examples_node"):
        if name in request.fixturenames:
            request.getfixturevalue(name).close_sessions()


def load(name: str) -> Any:
    return json.loads((TESTDATA / name).read_text())
