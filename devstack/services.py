"""fenced's own processes (API replicas, projector) as real OS processes with pid files.

Used by ``make up`` (processes outlive the command; ``make down`` reads the pid files) and
by the integration tests (which pause, kill and restart them).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from devstack.errors import StackError
from devstack.proc import require_free_port, stop_process, tail


@dataclass
class Services:
    root: Path
    env: dict[str, str]
    python: str = sys.executable
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        self.root.mkdir(parents=True, exist_ok=True)
        log = (self.root / f"{name}.log").open("ab")
        proc = subprocess.Popen([self.python, "-m", "service.cli", *args],
                                env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.procs[name] = proc
        (self.root / f"{name}.pid").write_text(str(proc.pid))
        return proc

    def start_api(self, name: str, port: int, *, workers: int = 1) -> None:
        require_free_port(port, f"API replica {name}", "FENCED_API_PORT")
        self._spawn(name, ["serve", "--port", str(port), "--workers", str(workers)])
        (self.root / f"{name}.port").write_text(str(port))

    def start_projector(self, name: str = "projector") -> None:
        self._spawn(name, ["projector"])

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def signal(self, name: str, sig: signal.Signals) -> None:
        os.kill(self.procs[name].pid, sig)

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.kill()
        proc.wait(10)

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
            stop_process(proc, timeout=15)
        (self.root / f"{name}.pid").unlink(missing_ok=True)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def wait_ready(self, url: str, timeout: float = 60.0, *, name: str = "") -> dict[str, object]:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is not None:
                raise StackError(f"{name} exited with code {proc.returncode}:\n"
                                 + tail(self.root / f"{name}.log"))
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=3) as r:
                    return dict(json.loads(r.read()))
            except urllib.error.HTTPError as e:
                last = e.read().decode(errors="replace")
            except (urllib.error.URLError, OSError) as e:
                last = str(e)
            time.sleep(0.2)
        raise StackError(f"{url}/readyz did not answer 200 in {timeout:.0f}s: {last}\n"
                         + (tail(self.root / f"{name}.log") if name else ""))


def running_pids(root: Path) -> dict[str, int]:
    """Processes recorded under ``root`` that are still alive."""
    out: dict[str, int] = {}
    for pidfile in sorted(root.glob("*.pid")):
        try:
            pid = int(pidfile.read_text())
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError, PermissionError):
            pidfile.unlink(missing_ok=True)
            continue
        out[pidfile.stem] = pid
    return out
