"""S7: per stream, every answer (201s, rejections, reads) is linearizable.

The check is Porcupine's (github.com/anishathalye/porcupine, the checker etcd's robustness
tests use), run by the small Go program in ``checkers/porcupine`` with a model of one folder
(``model.go``) or of one open stream (``open_model.go``). This module turns a chaos history
into Porcupine's operations and reads the verdicts back.

What each operation becomes:
- a 201: the command with its new version;
- a rejection (404 / 409 / 410 / 422): the command with its status and ``current_version``;
- a read: ``GET`` 200 with the version and the destroyed flag, or 404;
- a command whose outcome is unknown (a 503 that is not Busy, a broken connection): it may have
  taken effect at any time after it was sent, or never, so its return is the end of time. When
  the log is given, its verdict there settles which: accepted at version v (Porcupine places
  it), or not accepted (it had no effect and is left out), as etcd's robustness tests patch
  their histories from the watch;
- a definite failure that changes nothing and says nothing of the state (503 Busy, a read that
  got no answer) is left out;
- the attempts of an append retried with one Idempotency-Key are one operation (:func:`operations`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos.history import History, Op

SOURCE = Path(__file__).resolve().parents[1] / "checkers" / "porcupine"
BINARY = Path(__file__).resolve().parents[1] / ".cache" / "bin" / "fenced-porcupine"
REJECTIONS = frozenset({404, 409, 410, 422})
"""Answers that refuse a write at the stream's ``current_version`` (an open stream's are 409s;
another is an answer its model does not allow)."""


class CheckerUnavailable(RuntimeError):
    """The Go checker could not be built or run."""


@dataclass
class Linearizability:
    streams: dict[str, str] = field(default_factory=dict)
    """Porcupine's verdict per stream: Ok, Illegal, or Unknown (it ran out of time)."""
    visualizations: dict[str, str] = field(default_factory=dict)
    operations: int = 0

    @property
    def failing(self) -> list[str]:
        return sorted(s for s, r in self.streams.items() if r != "Ok")


def go() -> str:
    """The Go toolchain (on PATH, or where the machine's image installs it)."""
    return shutil.which("go") or "/usr/local/go/bin/go"


def binary() -> Path:
    """The checker's executable, built with the Go toolchain when its sources are newer."""
    sources = [*SOURCE.glob("*.go"), SOURCE / "go.mod", SOURCE / "go.sum"]
    newest = max(p.stat().st_mtime for p in sources)
    if BINARY.exists() and BINARY.stat().st_mtime >= newest:
        return BINARY
    go_ = go()
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run([go_, "build", "-o", str(BINARY), "."], cwd=SOURCE, capture_output=True, text=True,
                              timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CheckerUnavailable(f"cannot build the linearizability checker with {go_}: {e}") from e
    if done.returncode != 0:
        raise CheckerUnavailable(f"`go build` of {SOURCE} failed:\n{done.stderr.strip()}")
    return BINARY


def _us(t: float) -> int:
    return round(t * 1_000_000)


def _input(o: Op) -> dict[str, Any]:
    inp: dict[str, Any] = {"stream": o.stream_key, "kind": o.command, "valid": o.valid}
    if o.type == "folders":
        return {**inp, "model": "folder", "expected_version": o.expected_version}
    exact = isinstance(o.expected_version, int)
    return {**inp, "model": "open", "expected_version": o.expected_version if exact else None,
            "expectation": "" if exact else (o.expected_version or "any"), "events": len(o.events)}


def operation(o: Op, accepted: Mapping[str, int] | None, *, call_at: float | None = None) -> dict[str, Any] | None:
    """One op as Porcupine's operation, or None if it is left out (see the module's docstring).
    ``call_at``: when the operation was invoked, if before ``o`` (its first attempt's invocation)."""
    call = _us(o.invoke if call_at is None else call_at)
    ret = None if o.complete is None else _us(o.complete)
    inp = _input(o)
    if o.is_read:
        if o.status == 200:
            return {"client": o.client, "call": call, "return": ret, "input": inp,
                    "output": {"status": 200, "version": o.version, "destroyed": o.destroyed}}
        if o.status == 404:
            return {"client": o.client, "call": call, "return": ret, "input": inp, "output": {"status": 404}}
        return None
    if o.outcome == "ok":
        return {"client": o.client, "call": call, "return": ret, "input": inp,
                "output": {"status": 201, "version": o.version}}
    if o.outcome == "fail":
        if o.status not in REJECTIONS:
            return None
        return {"client": o.client, "call": call, "return": ret, "input": inp,
                "output": {"status": o.status, "version": o.current_version}}
    if accepted is None:
        return {"client": o.client, "call": call, "return": None, "input": inp, "output": {"unknown": True}}
    if o.key not in accepted:
        return None
    return {"client": o.client, "call": call, "return": None, "input": inp,
            "output": {"status": 201, "version": accepted[o.key]}}


def operations(history: History, accepted: Mapping[str, int] | None) -> list[dict[str, Any]]:
    """Porcupine's operations of ``history``. The attempts of a write retried with one
    Idempotency-Key are one operation, from the first attempt's invocation to the answer that
    settled it: the first definite one (201 or a rejection); if none came, the last attempt stands
    (unknown, settled by the log, or left out if each attempt was Busy)."""
    attempts: dict[str, list[Op]] = {}
    for o in history.ops:
        if not o.is_read:
            attempts.setdefault(o.key, []).append(o)
    out: list[dict[str, Any]] = []
    for o in history.ops:
        if o.is_read:
            op = operation(o, accepted)
        elif (tries := attempts[o.key])[0] is not o:
            continue
        else:
            settled = next((t for t in tries if t.outcome == "ok" or (t.outcome == "fail" and t.status in REJECTIONS)),
                           None)
            unknown = next((t for t in tries if t.outcome == "unknown"), None)
            op = operation(settled or unknown or tries[-1], accepted, call_at=o.invoke)
        if op is not None:
            out.append(op)
    return out


def check(history: History, accepted: Mapping[str, int] | None = None, *, timeout_s: float = 120,
          visualize: Path | None = None) -> Linearizability:
    """Check every stream of ``history``; ``accepted`` maps a command id to the version the log
    accepted it at (None: nothing is known of the log, unknown outcomes stay open)."""
    ops = operations(history, accepted)
    clients = {c: i for i, c in enumerate(sorted({op["client"] for op in ops}))}
    for op in ops:
        op["client"] = clients[op["client"]]
    if visualize is not None:
        visualize.mkdir(parents=True, exist_ok=True)
    request = {"timeout_s": timeout_s, "visualize": str(visualize) if visualize else "", "ops": ops}
    with tempfile.TemporaryFile("w+") as stdin:
        json.dump(request, stdin)
        stdin.seek(0)
        try:
            done = subprocess.run([str(binary())], stdin=stdin, capture_output=True, text=True,
                                  timeout=timeout_s * max(len({op["input"]["stream"] for op in ops}), 1) + 60,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise CheckerUnavailable(f"the linearizability checker did not finish: {e}") from e
    if done.returncode != 0:
        raise CheckerUnavailable(f"the linearizability checker failed: {done.stderr.strip()}")
    out = json.loads(done.stdout)
    return Linearizability(dict(out["streams"]), dict(out["visualizations"]), len(ops))
