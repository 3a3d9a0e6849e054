"""The fault-injection run (``fenced chaos``) and its checker, on the real stack.

A short run injects every fault kind and must show zero violations of S1-S7. The checker
itself is shown to catch deliberately broken variants, so a green run means something.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx
import pytest
import redis as syncredis

from chaos.checker import PROPERTIES, TopicLog, check, read_records
from chaos.history import History, Op, classify
from chaos.report import write
from chaos.runner import FAULTS, ChaosConfig, ChaosRun, Cluster, run

# a run starts Kafka, two Redis servers and a stack, drives 60 s with Kafka restarts, waits
# for the projection and replays twice: more than the suite's 300 s default on a slow machine
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def verified_run(workdir: Path) -> ChaosRun:
    return run(ChaosConfig(duration=60, seed=7, root=workdir / "chaos-verified"))


def test_short_run_injects_every_fault_and_violates_nothing(verified_run: ChaosRun, workdir: Path) -> None:
    summary = write(verified_run, workdir / "chaos-report")
    res = verified_run.result
    assert res.counts() == dict.fromkeys(PROPERTIES, 0), summary["violation_examples"]
    assert set(verified_run.fault_counts) == set(FAULTS)
    assert summary["ops"]["ok"] > 100, summary["ops"]
    opened = summary["open_streams"]  # the open-stream workload ran, races and retries included
    assert opened["appends"]["ok"] > 50 and opened["appends"]["fail"] > 10 and opened["reads"]["ok"] > 10, opened
    assert opened["races"]["run"] > 5 and opened["races"]["one won"] > 0, opened
    assert set(opened["expected_version"]) == {"exact", "any", "none", "no_stream", "exists"}, opened
    assert res.by_type["ledger"]["accepted"] > 50, res.by_type
    assert res.zombie_appends >= 1 and res.zombie_discarded == res.zombie_appends
    assert (workdir / "chaos-report" / "timeline.png").stat().st_size > 10_000
    batching = verified_run.batching
    assert batching["batched_commands"] > batching["batches"] > 0, "group commit batched some commands"


def test_checker_catches_a_consumer_that_ignores_tokens(verified_run: ChaosRun) -> None:
    """Replaying the same logs with token checks switched off accepts the zombies' appends, the
    folder's and the open stream's."""
    broken = check(verified_run.history, verified_run.records, ignore_tokens=True)
    assert broken.counts()["S4"] >= 1, broken.counts()
    assert any(x.startswith("ledger:zombie-") for x in broken.violations["S4"]), broken.violations["S4"]


def test_checker_catches_a_writer_that_answers_before_the_verdict(workdir: Path) -> None:
    """A writer that answers 201 when Kafka acknowledges, not when the rule accepts, tells the
    zombie's client its discarded append succeeded: S1."""
    broken = run(ChaosConfig(duration=12, seed=3, faults=("zombie",), unsafe_ack_on_append=True,
                             root=workdir / "chaos-ack-on-append"))
    assert broken.result.counts()["S1"] >= 1, broken.result.counts()


def test_leased_mode_loses_acknowledged_writes_on_a_lossy_redis_failover(workdir: Path) -> None:
    """design.md §4.5: `leased` trusts Redis. A failover to a replica that missed the last
    write-through lets the next writer decide on an old version; its event conflicts in the
    log, yet it was answered 201. The checker must report it (S1)."""
    cluster = Cluster(ChaosConfig(ack_mode="leased"), workdir / "leased-failover")
    history = History(t0=time.monotonic())
    try:
        cluster.start()
        a, b = cluster.stack.urls

        def send(url: str, name: str, data: dict[str, str]) -> Op:
            op = Op(len(history.ops), "lost", name, f"k{len(history.ops)}", time.monotonic() - history.t0)
            for _ in range(20):  # the failover resets connections: retry 503s with the same key
                r = httpx.post(f"{url}/v1/folders/lost/commands", json={"name": name, "data": data},
                               headers={"Idempotency-Key": op.key}, timeout=20)
                if r.status_code != 503:
                    break
                time.sleep(0.3)
            op.complete, op.status = time.monotonic() - history.t0, r.status_code
            op.outcome = classify(r.status_code, r.json())
            op.detail = str(r.json().get("detail", ""))
            op.version = r.json().get("version")
            history.ops.append(op)
            return op

        assert send(a, "Create", {"name": "v1"}).status == 201
        primary = syncredis.Redis(port=cluster.primary.port)
        assert primary.wait(1, 5000) == 1  # the replica has version 1
        primary.close()
        cluster.stack.services.signal("projector", signal.SIGSTOP)
        cluster.freeze_replica()
        assert send(a, "Update", {"name": "v2"}).status == 201  # written through to the primary only
        cluster.promote_replica()
        second = send(b, "Update", {"name": "v2-again"})
        assert second.status == 201 and second.version == 2  # decided on the lost state
        cluster.stack.services.signal("projector", signal.SIGCONT)
        topic = cluster.stack.settings.topic("folders")
        parts = cluster.stack.settings.partitions
        records = asyncio.run(read_records(cluster.kafka.bootstrap, topic, parts, group=False))
    finally:
        cluster.stop()
    result = check(history, [TopicLog("folders", topic, records, records)])
    assert result.counts()["S1"] == 1, result.violations
    assert "accepted 0 times" in result.violations["S1"][0]


def test_checker_catches_a_writer_that_answers_rejections_before_their_verdicts(workdir: Path) -> None:
    """The writer before issue #12 (``FENCED_UNSAFE_EARLY_REJECTIONS``): a rejection decided after
    a batch predecessor is answered while the predecessor's append has no verdict. In the zombie
    fault, a Create queued behind the zombie's Update is refused at the version the Update would
    make, which never exists: the zombie's append is discarded. Porcupine must say so: S7. The
    same on an open stream (zombie-open): appends expecting no stream, queued behind the
    zombie's two events, are refused at the version they would make (as are appends behind others
    in any batch of the hot streams); the open model must say so."""
    broken = run(ChaosConfig(duration=12, seed=3, faults=("zombie", "zombie-open"), unsafe_early_rejections=True,
                             root=workdir / "chaos-early-rejections"))
    counts = broken.result.counts()
    failing = broken.result.linearizability.failing if broken.result.linearizability else []
    assert any(s.startswith("zombie-") for s in failing), broken.result.violations
    # on the open zombie's stream, or on a hot or race stream where a batch refused an append
    # behind another one still in flight
    assert any(s.startswith("ledger:") for s in failing), broken.result.violations
    # S5 may see it too, from the log alone: a refusal at a version the stream never was at
    assert all("which the stream's accepted history never was at" in x for x in broken.result.violations["S5"])
    assert {p: n for p, n in counts.items() if p not in ("S5", "S7")} == dict.fromkeys(
        ("S1", "S2", "S3", "S4", "S6"), 0), counts
