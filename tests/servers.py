"""Real servers for tests: each starts on a free loopback port in its own temp dir.

Missing tools are reported by raising :class:`MissingTool` inside the fixture that needs
them, with the command that installs them; nothing here fails at import time.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar


class MissingTool(RuntimeError):
    """A binary a fixture needs is not installed."""


def require_binary(name: str, fix: str, candidates: tuple[str, ...] = ()) -> str:
    """Return the path of ``name`` or raise :class:`MissingTool` naming the command ``fix``."""
    for candidate in (*candidates, name):
        found = shutil.which(candidate) or (candidate if os.access(candidate, os.X_OK) else None)
        if found:
            return found
    raise MissingTool(f"{name} is not installed; install it with: {fix}")


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (callers retry on a bind race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.05) -> None:
    """Poll ``check`` until it returns true, or raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class _Server(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


S = TypeVar("S", bound=_Server)


def start_retrying(make: Callable[[int], S], attempts: int, what: str) -> S:
    """Start ``make(attempt)``, retrying with a new one: a probed free port can be taken before it binds."""
    last_error: Exception | None = None
    for attempt in range(attempts):
        server = make(attempt)
        try:
            server.start()
            return server
        except (RuntimeError, TimeoutError) as exc:
            server.stop()
            last_error = exc
    raise RuntimeError(f"could not start {what}: {last_error}")


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it does not exit in time."""
    if proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout_s)
            return
        except subprocess.TimeoutExpired:
            continue


@dataclass
class RedisServer:
    """A ``redis-server`` on 127.0.0.1:``port`` with its data in ``directory``.

    ``stop()``/``start()``/``restart()`` keep the port, so clients can prove they reconnect.
    """

    binary: str
    directory: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = (self.directory / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.directory),
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
                "--protected-mode", "yes",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_until(self._answers_ping, 20, f"redis-server on port {self.port}")

    def _answers_ping(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"redis-server exited; see {self.directory / 'redis.log'}")
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self, **kwargs: object):  # type: ignore[no-untyped-def]
        import redis

        return redis.Redis.from_url(self.url, **kwargs)


def start_redis(directory: Path) -> RedisServer:
    binary = require_binary(
        "redis-server",
        "apt-get update && apt-get install -y redis-server",
        candidates=("/usr/bin/redis-server",),
    )
    return start_retrying(lambda _: RedisServer(binary=binary, directory=directory), 5, "redis-server")


@dataclass
class RabbitMQServer:
    """A RabbitMQ node on 127.0.0.1:``port``, isolated in ``directory``.

    Everything a node would share is private: its own epmd (started here, on its own port, so
    stopping it never touches another node's), Erlang cookie and ``HOME``, Mnesia and log
    directories, an empty plugin list (fast start) and no system config files. Guest/guest
    may log in because the client is on loopback.
    """

    binary: str
    epmd: str
    directory: Path
    port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    epmd_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    epmd_proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    @property
    def nodename(self) -> str:
        return f"celeriac-{self.port}@localhost"

    def _env(self) -> dict[str, str]:
        home = self.directory / "home"
        return {
            **os.environ,
            "HOME": str(home),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.directory / "log"),
            "RABBITMQ_LOGS": "-",
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.directory / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(self.directory / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(self.directory / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.directory / "advanced.config"),
        }

    def _prepare(self) -> None:
        home = self.directory / "home"
        home.mkdir(parents=True, exist_ok=True)
        cookie = home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(os.urandom(16).hex())
            cookie.chmod(0o400)
        (self.directory / "enabled_plugins").write_text("[].\n")
        (self.directory / "rabbitmq-env.conf").write_text("")

    def start(self) -> None:
        self._prepare()
        env = self._env()
        self.epmd_proc = subprocess.Popen(
            [self.epmd, "-port", str(self.epmd_port), "-address", "127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True,
        )
        wait_until(lambda: port_open(self.epmd_port), 20, f"epmd on port {self.epmd_port}")
        log = (self.directory / "rabbitmq.log").open("ab")
        self.proc = subprocess.Popen(
            [self.binary], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.directory,
            start_new_session=True,
        )
        log.close()
        wait_until(self._accepts_amqp, 90, f"RabbitMQ AMQP on port {self.port}", interval_s=0.25)

    def _accepts_amqp(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"rabbitmq-server exited; see {self.directory / 'rabbitmq.log'}")
        if not port_open(self.port):
            return False
        import amqp

        connection = amqp.Connection(host=f"127.0.0.1:{self.port}", connect_timeout=2)
        try:
            connection.connect()
        except Exception:  # the listener is up before the broker accepts logins
            connection.collect()  # drop the half-open socket
            return False
        connection.close()
        return True

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout_s=30)
            self.proc = None
        if self.epmd_proc is not None:
            stop_process(self.epmd_proc)
            self.epmd_proc = None


def start_rabbitmq(directory: Path) -> RabbitMQServer:
    """Start a private RabbitMQ node; raises :class:`MissingTool` when it is not installed."""
    fix = "apt-get update && apt-get install -y rabbitmq-server"
    # The Debian wrapper in /usr/sbin switches to the rabbitmq user (dropping our environment),
    # so prefer the real script it wraps.
    binary = require_binary("rabbitmq-server", fix, candidates=("/usr/lib/rabbitmq/bin/rabbitmq-server",))
    epmd = require_binary("epmd", fix, candidates=("/usr/bin/epmd",))

    def make(attempt: int) -> RabbitMQServer:
        node_dir = directory / f"node{attempt}"
        node_dir.mkdir(parents=True, exist_ok=True)
        return RabbitMQServer(binary=binary, epmd=epmd, directory=node_dir)

    return start_retrying(make, 3, "rabbitmq-server")
