"""Small process helpers shared by the Kafka and Redis launchers."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from devstack.errors import StackError


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def require_free_port(port: int, what: str, env: str) -> None:
    if not port_is_free(port):
        raise StackError(
            f"port {port} for {what} is in use: stop what holds it (ss -ltnp | grep :{port}) "
            f"or choose another port with {env}"
        )


def _listen_ports() -> range:
    """Ports below Linux's ephemeral range (``ip_local_port_range``, 32768-60999 by default): a
    port handed out here is not also taken by one of the many outgoing connections made
    between picking it and the server binding it."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return range(20000, low) if low > 21000 else range(low // 2, low)


_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on now, drawn below the ephemeral range and never handed
    out twice by this process (two picks before either server binds would otherwise collide)."""
    ports = _listen_ports()
    for _ in range(200):
        port = random.randrange(ports.start, ports.stop)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # a crowded range: let the kernel pick
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def apt_install(*packages: str) -> None:
    """Install Debian packages (the machines run as root with apt reachable)."""
    if shutil.which("apt-get") is None:
        raise StackError(f"cannot install {' '.join(packages)}: no apt-get; install them by hand")
    sudo: list[str] = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *packages]):
        done = subprocess.run([*sudo, *cmd], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
            raise StackError(f"'{' '.join(cmd)}' failed: {' '.join(tail)}")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def stop_pid(pid: int, timeout: float = 30.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
