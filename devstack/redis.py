"""Debian's redis-server, started on a private port and data directory."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from devstack.errors import StackError
from devstack.proc import apt_install, require_free_port, stop_process, tail


def ensure_redis_server() -> str:
    path = shutil.which("redis-server")
    if path is None:
        print("redis-server not found: installing Debian's redis-server ...", flush=True)
        apt_install("redis-server")
        path = shutil.which("redis-server")
    if path is None:
        raise StackError("redis-server is still missing after apt-get install redis-server")
    return path


def ping(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


@dataclass
class RedisServer:
    """One redis-server with AOF on; ``replicaof`` makes it a replica of another port."""

    root: Path
    port: int = 6379
    appendfsync: str = "everysec"
    replicaof: int | None = None
    extra_args: list[str] = field(default_factory=list)
    """More redis-server arguments (e.g. TLS, ACL users)."""
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_file(self) -> Path:
        return self.root / "redis.log"

    def start(self, timeout: float = 20.0) -> None:
        binary = ensure_redis_server()
        require_free_port(self.port, "Redis", "FENCED_REDIS_PORT")
        self.root.mkdir(parents=True, exist_ok=True)
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.root),
                "--appendonly", "yes", "--appendfsync", self.appendfsync,
                "--save", "", "--daemonize", "no", "--protected-mode", "yes",
                # a test session gives each stack a db of its own: more than the default 16
                "--databases", "1024",
                "--logfile", str(self.log_file)]
        if self.replicaof is not None:
            args += ["--replicaof", "127.0.0.1", str(self.replicaof)]
        args += self.extra_args
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StackError(f"redis-server exited with code {self.proc.returncode}: "
                                 + tail(self.log_file, 5))
            if ping(self.port):
                return
            time.sleep(0.05)
        raise StackError(f"redis-server on port {self.port} did not answer PING in {timeout}s")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def restart_empty(self) -> None:
        """Kill the server, delete its data (AOF included), start it again: a lost Redis."""
        self.kill()
        for child in self.root.iterdir():
            if child.name != self.log_file.name:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        self.start()
