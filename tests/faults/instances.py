"""Broker instances of the fault tests' own: Redis, NATS JetStream and a second RabbitMQ node,
each on free loopback ports with its data in a directory of the test, never the machine's
6379/5672/4222. ``kill()`` is ``kill -9`` of the instance's process group (only what it
started); ``start()`` again brings it back on the same ports and data.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

LOOPBACK = "127.0.0.1"
RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"  # not the wrapper that drops to user rabbitmq


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def answers(port: int) -> bool:
    try:
        socket.create_connection((LOOPBACK, port), timeout=0.5).close()
    except OSError:
        return False
    return True


def available(kind: str) -> bool:
    """Whether the binaries of broker ``kind`` (redis, nats, amqp) are installed."""
    binary = {"redis": "redis-server", "nats": "nats-server", "amqp": RABBITMQ_SERVER}[kind]
    return shutil.which(binary) is not None or Path(binary).exists()


class Instance:
    """One broker process, restartable on the same port and data."""

    kind = ""
    boot_s = 10.0  # how long a start may take before it counts as failed

    def __init__(self, root: Path) -> None:
        self.root = root / f"{self.kind}-{uuid.uuid4().hex[:6]}"
        self.root.mkdir(parents=True)
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._log = self.root / "out.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def url(self) -> str:
        """The base URL of the topics on this broker (``topic_url`` adds a topic name)."""
        raise NotImplementedError

    def start(self) -> Instance:
        if self._process is not None:
            raise RuntimeError(f"{self.kind} on {self.port} is running")
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                self.command(),
                cwd=self.root,
                env=self.environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: kill() takes all of it, nothing else
            )
        deadline = time.monotonic() + self.boot_s
        while not answers(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"{self.kind} did not start on {self.port}: see {self._log}")
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        """``kill -9`` of the instance (its whole process group), then wait for it."""
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait(10)
        self._process = None
        deadline = time.monotonic() + 5
        while answers(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    @property
    def running(self) -> bool:
        return self._process is not None


class RedisInstance(Instance):
    kind = "redis"

    def command(self) -> list[str]:
        # The AOF is written before each answer: a kill -9 loses nothing acknowledged.
        return [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            LOOPBACK,
            "--dir",
            str(self.root),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--daemonize",
            "no",
        ]

    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"


class NatsInstance(Instance):
    kind = "nats"

    def command(self) -> list[str]:
        return ["nats-server", "-js", "-sd", str(self.root / "js"), "-a", LOOPBACK, "-p", str(self.port)]

    def url(self) -> str:
        return f"nats://{LOOPBACK}:{self.port}"


class RabbitInstance(Instance):
    """A second RabbitMQ node beside the machine's: its own node name, ports, config (no
    plugins, so no management port), mnesia and log directories, and Erlang cookie."""

    kind = "amqp"
    boot_s = 60.0

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.dist_port = free_port()
        self.node = f"faults{uuid.uuid4().hex[:8]}@localhost"
        (self.root / "rabbitmq.conf").write_text(f"listeners.tcp.local = {LOOPBACK}:{self.port}\n")
        (self.root / "enabled_plugins").write_text("[].\n")
        (self.root / "rabbitmq-env.conf").write_text("")

    def command(self) -> list[str]:
        return [RABBITMQ_SERVER]

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.root),  # its own .erlang.cookie
            "RABBITMQ_CONF_ENV_FILE": str(self.root / "rabbitmq-env.conf"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_PID_FILE": str(self.root / "rabbit.pid"),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_ADDRESS": LOOPBACK,
        }

    def url(self) -> str:
        return f"amqp://guest:guest@{LOOPBACK}:{self.port}/"


INSTANCES: dict[str, type[Instance]] = {"redis": RedisInstance, "nats": NatsInstance, "amqp": RabbitInstance}
