"""What the locustfiles share: a fenced user, the tally of outcomes, the JSON summary.

Outcomes of writes are counted by meaning: ``accepted`` (201), ``conflicts`` (409 and
410: a business answer, reported as a locust success), ``busy`` (503: the service shed
load; reported as a locust failure) and ``errors`` (anything else, or no answer). When
the test stops, the summary (accepted/s, conflicts, 503s, p50/p95/p99 from locust's stats)
is printed and saved as JSON to ``$LOADTEST_OUT`` (default ``out/loadtest-<scenario>.json``).

Settings (environment): ``LOADTEST_HOSTS`` comma-separated API replicas (users are spread
over them; default: locust's ``--host``), ``LOADTEST_FOLDERS`` size of the folder pool.
The tally lives in the locust process: run locust as one process (no ``--processes``).
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

from locust import FastHttpUser, events
from locust.env import Environment

RUN = uuid.uuid4().hex[:6]
"""Prefix of this run's folder ids: a run never touches the folders of an earlier one."""

_user_numbers = count()
WRITE_EXPECTED = frozenset({201, 404, 409, 410, 503})
READ_EXPECTED = frozenset({200, 404, 503})


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


@dataclass
class Tally:
    scenario: str = "unnamed"
    started: float = 0.0
    writes: Counter[int] = field(default_factory=Counter)
    reads: Counter[int] = field(default_factory=Counter)
    extra: Counter[str] = field(default_factory=Counter)
    summary: dict[str, Any] | None = None

    @property
    def accepted(self) -> int:
        return self.writes[201]

    @property
    def conflicts(self) -> int:
        return self.writes[409] + self.writes[410]

    @property
    def busy(self) -> int:
        return self.writes[503] + self.reads[503]

    @property
    def errors(self) -> int:
        """Answers that are neither a success, a business refusal nor a 503 (0: no answer)."""
        return (sum(n for s, n in self.writes.items() if s not in WRITE_EXPECTED)
                + sum(n for s, n in self.reads.items() if s not in READ_EXPECTED))


TALLY = Tally()


def scenario(name: str) -> None:
    """Called by each locustfile at import: names its summary."""
    TALLY.scenario = name


def _percentiles(entry: Any) -> dict[str, float | None]:
    if not entry.num_requests:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None}
    return {f"p{int(q * 100)}_ms": float(entry.get_response_time_percentile(q)) for q in (0.5, 0.95, 0.99)}


def summarize(environment: Environment, elapsed: float) -> dict[str, Any]:
    stats = environment.stats
    t = TALLY
    per_request = {
        f"{e.method} {e.name}": {"requests": e.num_requests, "failures": e.num_failures, **_percentiles(e)}
        for e in sorted(stats.entries.values(), key=lambda e: (e.method or "", e.name))}
    return {
        "scenario": t.scenario,
        "seconds": round(elapsed, 2),
        "users": getattr(environment.parsed_options, "num_users", None),
        "hosts": hosts(environment),
        "requests": stats.total.num_requests,
        "accepted": t.accepted,
        "accepted_per_s": round(t.accepted / elapsed, 1) if elapsed > 0 else None,
        "conflicts": t.conflicts,
        "busy_503": t.busy,
        "errors": t.errors,
        "write_status": {str(k): v for k, v in sorted(t.writes.items())},
        "read_status": {str(k): v for k, v in sorted(t.reads.items())},
        **_percentiles(stats.total),
        "per_request": per_request,
        **({"outcomes": dict(sorted(t.extra.items()))} if t.extra else {}),
    }


def out_path() -> Path:
    return Path(os.environ.get("LOADTEST_OUT") or f"out/loadtest-{TALLY.scenario}.json")


def _on_start(environment: Environment, **_: Any) -> None:
    TALLY.started = time.monotonic()


def _on_stop(environment: Environment, **_: Any) -> None:
    if TALLY.summary is not None or not TALLY.started:
        return
    TALLY.summary = summarize(environment, time.monotonic() - TALLY.started)
    path = out_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(TALLY.summary, indent=2) + "\n")
    s = TALLY.summary
    print(f"\n[{s['scenario']}] {s['accepted']} accepted ({s['accepted_per_s']}/s), {s['conflicts']} conflicts, "
          f"{s['busy_503']} 503s, {s['errors']} errors; p50 {s['p50_ms']} ms, p95 {s['p95_ms']} ms, "
          f"p99 {s['p99_ms']} ms -> {path}", flush=True)


events.test_start.add_listener(_on_start)  # type: ignore[no-untyped-call]
events.test_stop.add_listener(_on_stop)  # type: ignore[no-untyped-call]


def hosts(environment: Environment) -> list[str]:
    listed = [h.strip().rstrip("/") for h in os.environ.get("LOADTEST_HOSTS", "").split(",") if h.strip()]
    return listed or [(environment.host or "http://127.0.0.1:8000").rstrip("/")]


class FencedUser(FastHttpUser):
    """A user of the fenced API: ``command`` and ``read`` return the HTTP status."""

    abstract = True

    def on_start(self) -> None:
        self.number = next(_user_numbers)
        replicas = hosts(self.environment)
        self.base = replicas[self.number % len(replicas)]
        self.rng = random.Random(f"{RUN}-{self.number}")

    def command(self, folder: str, name: str, data: dict[str, Any] | None = None,
                expected_version: int | None = None) -> int:
        body: dict[str, Any] = {"name": name, "data": data or {}}
        if expected_version is not None:
            body["expected_version"] = expected_version
        with self.client.post(f"{self.base}/v1/folders/{folder}/commands", json=body,
                              headers={"Idempotency-Key": uuid.uuid4().hex},
                              name=f"/v1/folders/[id]/commands {name}",
                              catch_response=True) as resp:
            status = resp.status_code or 0
            TALLY.writes[status] += 1
            if status in (201, 404, 409, 410):
                resp.success()
            else:
                resp.failure(f"{status} {_title(resp.text)}")
        return status

    def read(self, path: str, name: str) -> tuple[int, Any]:
        with self.client.get(f"{self.base}{path}", name=name, catch_response=True) as resp:
            status = resp.status_code or 0
            TALLY.reads[status] += 1
            body: Any = None
            if status == 200:
                body = resp.json()
                resp.success()
            elif status == 404:
                resp.success()
            else:
                resp.failure(f"{status} {_title(resp.text)}")
        return status, body


def _title(text: str | None) -> str:
    try:
        return str(json.loads(text or "").get("title", ""))
    except (ValueError, AttributeError):
        return (text or "no answer")[:60]
