"""Brokers of a test's own: RabbitMQ, NATS JetStream and Redis, each a separate process on free
loopback ports with its data in a directory of the test, never the machine's shared services.

Each context manager yields a node that can be ``kill()``-ed (SIGKILL to its whole process group,
as a crash or an OOM kill would), ``restart()``-ed on the same data and ports, and is stopped at
the end::

    with rabbitmq(tmp_path) as node:
        topic = open_topic(node.url("jobs"), default_name="jobs")
        node.kill()
        node.restart()

Starting takes about 5 s for RabbitMQ (an Erlang node with its own epmd), well under 1 s for
NATS and Redis. A broker whose program is not installed skips the test (fails under CI=true).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

LOOPBACK = "127.0.0.1"
_RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"  # the script itself, not the su wrapper


def free_port() -> int:
    """A loopback port free right now (the kernel's choice)."""
    with socket.create_server((LOOPBACK, 0)) as probe:
        return int(probe.getsockname()[1])


def _require(program: str) -> str:
    path = program if os.path.isabs(program) and os.access(program, os.X_OK) else shutil.which(program)
    if path is None:
        message = f"needs {program}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}, and CI=true: the CI image should have it")
        pytest.skip(message)
    return path


class BrokerNode:
    """One broker process (group) on ``port`` with its data in ``data``."""

    name = "broker"
    start_timeout = 10.0

    def __init__(self, data: Path) -> None:
        self.data = data
        self.data.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self.kills = 0

    # what a broker defines ------------------------------------------------------------------

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _environment(self) -> dict[str, str]:
        return dict(os.environ)

    def _ready(self) -> bool:
        return _accepts(self.port)

    def url(self, topic: str) -> str:
        raise NotImplementedError

    # lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the broker on the data and ports it had, and wait until it serves."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        log = (self.data / "broker.log").open("ab")
        try:
            self._process = subprocess.Popen(
                self._command(),
                env=self._environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: kill() reaches every process
            )
        finally:
            log.close()
        deadline = time.monotonic() + self.start_timeout
        while not self._ready():
            if self._process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self._process.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                waited = self.start_timeout
                raise RuntimeError(f"{self.name} did not serve within {waited} s: {self.log_tail()}")
            time.sleep(0.1)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        """SIGKILL the broker's whole process group: nothing is flushed or closed cleanly."""
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        _wait_gone(process.pid)
        self.kills += 1

    def restart(self) -> None:
        """``kill()`` if running, then start again on the same data."""
        self.kill()
        self.start()

    def stop(self) -> None:
        """Ask the broker to stop (SIGTERM), SIGKILL it if it has not within 10 s."""
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        _wait_gone(process.pid)

    def log_tail(self, lines: int = 15) -> str:
        path = self.data / "broker.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _wait_gone(group: int, timeout: float = 10.0) -> None:
    """Wait until no process of ``group`` is left (the broker's children die after its shell)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise RuntimeError(f"process group {group} still has processes {timeout} s after SIGKILL")


def _accepts(port: int) -> bool:
    try:
        socket.create_connection((LOOPBACK, port), timeout=0.5).close()
    except OSError:
        return False
    return True


class RabbitNode(BrokerNode):
    """A RabbitMQ node of its own: node name, AMQP and distribution ports, epmd port, Mnesia
    and log directories, Erlang cookie (``HOME``), config file and no plugins."""

    name = "rabbitmq"
    start_timeout = 60.0

    def __init__(self, data: Path) -> None:
        super().__init__(data)
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.node = f"ecsd-{uuid.uuid4().hex[:8]}@localhost"
        (data / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = {LOOPBACK}:{self.port}\nloopback_users = none\n"
        )
        (data / "rabbitmq-env.conf").write_text("")
        (data / "enabled_plugins").write_text("[].\n")

    def _command(self) -> list[str]:
        return [_require(_RABBITMQ_SERVER)]

    def _environment(self) -> dict[str, str]:
        data = str(self.data)
        return {
            **os.environ,
            "HOME": data,  # the Erlang cookie
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": LOOPBACK,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": LOOPBACK,
            "RABBITMQ_MNESIA_BASE": f"{data}/mnesia",
            "RABBITMQ_LOG_BASE": f"{data}/log",
            "RABBITMQ_CONFIG_FILE": f"{data}/rabbitmq.conf",
            "RABBITMQ_ADVANCED_CONFIG_FILE": f"{data}/advanced.config",
            "RABBITMQ_CONF_ENV_FILE": f"{data}/rabbitmq-env.conf",
            "RABBITMQ_ENABLED_PLUGINS_FILE": f"{data}/enabled_plugins",
            "RABBITMQ_PLUGINS_EXPAND_DIR": f"{data}/plugins-expand",
            "RABBITMQ_PID_FILE": f"{data}/rabbitmq.pid",
        }

    def url(self, topic: str) -> str:
        return f"amqp://guest:guest@{LOOPBACK}:{self.port}/?topic={topic}"

    def stop(self) -> None:
        super().stop()
        # erl starts an epmd of its own on this node's epmd port, detached from the node's group.
        epmd = shutil.which("epmd")
        if epmd is not None:
            subprocess.run(
                [epmd, "-port", str(self.epmd_port), "-kill"], capture_output=True, timeout=10, check=False
            )


class NatsNode(BrokerNode):
    """A nats-server with JetStream, its store in ``data/jetstream``; ready when /healthz says so."""

    name = "nats"

    def __init__(self, data: Path) -> None:
        super().__init__(data)
        self.monitor_port = free_port()

    def _command(self) -> list[str]:
        return [
            _require("nats-server"),
            *("-a", LOOPBACK, "-p", str(self.port), "-m", str(self.monitor_port)),
            *("-js", "-sd", str(self.data / "jetstream")),
        ]

    def _ready(self) -> bool:
        try:
            health = f"http://{LOOPBACK}:{self.monitor_port}/healthz"
            with urllib.request.urlopen(health, timeout=1) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def url(self, topic: str) -> str:
        return f"nats://{LOOPBACK}:{self.port}?topic={topic}"


class RedisNode(BrokerNode):
    """A redis-server with an append-only file in ``data`` (what a kill -9 must not lose)."""

    name = "redis"

    def _command(self) -> list[str]:
        return [
            _require("redis-server"),
            *("--bind", LOOPBACK, "--port", str(self.port), "--dir", str(self.data)),
            *("--appendonly", "yes", "--save", ""),
        ]

    def url(self, topic: str) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0?topic={topic}"


@contextlib.contextmanager
def _running(node: BrokerNode) -> Iterator[BrokerNode]:
    node.start()
    try:
        yield node
    finally:
        node.stop()


@contextlib.contextmanager
def rabbitmq(directory: Path) -> Iterator[RabbitNode]:
    """A RabbitMQ node of this test, its data under ``directory/rabbitmq``."""
    node = RabbitNode(directory / "rabbitmq")
    with _running(node):
        yield node


@contextlib.contextmanager
def nats_server(directory: Path) -> Iterator[NatsNode]:
    """A nats-server with JetStream of this test, its store under ``directory/nats``."""
    node = NatsNode(directory / "nats")
    with _running(node):
        yield node


@contextlib.contextmanager
def redis_server(directory: Path) -> Iterator[RedisNode]:
    """A redis-server of this test, its append-only file under ``directory/redis``."""
    node = RedisNode(directory / "redis")
    with _running(node):
        yield node
