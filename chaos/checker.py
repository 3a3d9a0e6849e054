"""The checker: replay every partition of every topic from offset 0 and check S1-S7 against the history.

Two independent consumers replay the topic (``assign`` and a fresh consumer group). S4 is
checked from the raw records, independently of the rule: no accepted event may carry a
token below the highest fence or accepted token seen earlier in its stream. S7 is Porcupine's
verdict on the clients' answers (:mod:`chaos.linearizability`).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from chaos import linearizability
from chaos.history import History, Op
from fenced_client import domain
from fenced_client.domain import folders  # noqa: F401 - registers the folders' decider
from fenced_client.domain.plugins import install
from fenced_client.rule import AcceptedEvent, Replay, Verdict
from fenced_client.wire import Record, decode
from service.demo import history_problems
from service.read.replay import TopicReplay, read_topic

PROPERTIES = ("S1", "S2", "S3", "S4", "S5", "S6", "S7")


@dataclass
class CheckResult:
    violations: dict[str, list[str]] = field(default_factory=lambda: {p: [] for p in PROPERTIES})
    discards: dict[str, int] = field(default_factory=dict)
    records: int = 0
    accepted: int = 0
    unknown_accepted: int = 0
    zombie_appends: int = 0
    zombie_discarded: int = 0
    linearizability: linearizability.Linearizability | None = None
    by_type: dict[str, dict[str, Any]] = field(default_factory=dict)
    """records, accepted and discards of each type's topic."""

    def counts(self) -> dict[str, int]:
        return {p: len(v) for p, v in self.violations.items()}

    @property
    def ok(self) -> bool:
        return not any(self.violations.values())


async def read_records(bootstrap: str, topic: str, partitions: int, *, group: bool) -> list[Record]:
    return [decode(m.key, m.value, m.headers, m.partition, m.offset, partitions)
            async for m in read_topic(bootstrap, topic, group=group)]


@dataclass(frozen=True)
class TopicLog:
    """One topic as two independent consumers read it: ``records_a`` by ``assign``, ``records_b``
    in a fresh consumer group. ``is_open``: the type is open (its decider is the open one)."""

    type: str
    topic: str
    records_a: list[Record]
    records_b: list[Record]
    is_open: bool = False


def decider_of(log: TopicLog) -> domain.Decider:
    if log.is_open:
        install("", (), (log.type,))
    decider = domain.get(log.type)
    assert decider is not None, log.type
    return decider


def replay(records: list[Record], topic: str, decider: domain.Decider | None = None, *,
           ignore_tokens: bool = False) -> TopicReplay:
    """The rule over the records; ``ignore_tokens`` is a deliberately broken consumer."""
    decider = decider or domain.get("folders")
    assert decider is not None
    r = Replay(decider)
    verdicts: list[Verdict] = []
    for rec in records:
        if ignore_tokens:
            if rec.kind == "fence":
                continue
            rec = replace(rec, token=0)
        verdicts.extend(r.feed(rec))
    return TopicReplay(topic, r, verdicts)


def open_history_problems(events: list[dict[str, Any]]) -> list[str]:
    """Why an accepted open-stream history is invalid: its versions are not 1..n."""
    return [f"version {e['version']} at position {i + 1}" for i, e in enumerate(events) if e["version"] != i + 1]


@dataclass
class _Accepted:
    """A command's accepted group in the log."""

    type: str
    stream: str
    version: int
    events: tuple[AcceptedEvent, ...]


def check(history: History, logs: Sequence[TopicLog], projection: dict[str, tuple[int, int]] | None = None, *,
          ignore_tokens: bool = False, visualize: Path | None = None) -> CheckResult:
    """S1-S7 of ``history`` against every topic in ``logs``; ``projection`` maps ``type:stream``
    to the projection's (version, max token)."""
    res = CheckResult()
    v = res.violations
    accepted: dict[str, list[_Accepted]] = defaultdict(list)  # command id -> its accepted groups
    boundaries: dict[str, set[int]] = {}  # stream key -> the versions it was at between commands
    stale_commands: set[str] = set()
    for log in logs:
        decider = decider_of(log)
        ra = replay(log.records_a, log.topic, decider, ignore_tokens=ignore_tokens)
        rb = replay(log.records_b, log.topic, decider, ignore_tokens=ignore_tokens)
        res.records += ra.replay.records
        res.accepted += ra.replay.accepted
        for reason, n in ra.replay.discards.items():
            res.discards[reason] = res.discards.get(reason, 0) + n
        res.by_type[log.type] = {"records": ra.replay.records, "accepted": ra.replay.accepted,
                                 "discards": {k: n for k, n in ra.replay.discards.items() if n}}
        # S2: independent replays agree, and agree with the projection
        if ra.digest() != rb.digest():
            v["S2"].append(f"{log.topic}: the assign() replay and the consumer-group replay differ")
        if projection is not None:
            for stream, st in ra.replay.streams.items():
                seen = projection.get(f"{log.type}:{stream}")
                if seen != (st.version, st.max_token):
                    v["S2"].append(f"{log.type}:{stream}: replay (version, max_token) = "
                                   f"{(st.version, st.max_token)}, projection = {seen}")
        histories = ra.histories()
        # S3: every accepted history is valid
        for stream, events in histories.items():
            if problems := (open_history_problems if log.is_open else history_problems)(events):
                v["S3"].append(f"{log.type}:{stream}: {'; '.join(problems)}")
        # S4: from the raw records, no accepted event below the stream's token high-water mark
        accepted_at = {(e["partition"], e["offset"]) for events in histories.values() for e in events}
        high: dict[tuple[int, str], int] = defaultdict(int)
        for rec in sorted(log.records_a, key=lambda r: (r.partition, r.offset)):
            key = (rec.partition, rec.stream)
            if rec.kind == "fence":
                high[key] = max(high[key], rec.token)
            elif rec.kind == "event" and (rec.partition, rec.offset) in accepted_at:
                if rec.token < high[key]:
                    v["S4"].append(f"{log.type}:{rec.stream}@{rec.partition}/{rec.offset}: token {rec.token} "
                                   f"accepted below {high[key]}")
                high[key] = max(high[key], rec.token)
        prefix = "" if log.type == "folders" else f"{log.type}:"
        for vd in ra.verdicts:
            if vd.accepted and vd.version is not None:
                accepted[vd.command].append(_Accepted(log.type, vd.stream, vd.version, vd.events))
                boundaries.setdefault(prefix + vd.stream, {0}).add(vd.version)
            elif vd.reason == "stale":
                stale_commands.add(vd.command)
    writes = [o for o in history.ops if not o.is_read]
    first_invoke: dict[str, float] = {}
    for o in writes:
        first_invoke[o.key] = min(first_invoke.get(o.key, o.invoke), o.invoke)
    unknown_keys: set[str] = set()
    unknown_attempts = {o.key for o in writes if o.outcome == "unknown"}
    for o in writes:
        got = accepted.get(o.key, [])
        if o.outcome == "ok":  # S1: acknowledged exactly once, at the version the client was told
            if problem := _acknowledged_problem(o, got):
                v["S1"].append(f"op {o.id} ({o.command} {o.stream_key}) {problem}")
        elif o.outcome == "fail" and got and not (o.status == 503 and o.key in unknown_attempts):
            # S5 (a Busy retry says only that it appended nothing: an attempt before it may have)
            v["S5"].append(f"op {o.id} ({o.command} {o.stream_key}{f', attempt {o.attempt}' if o.attempt else ''}) "
                           f"failed with {o.status} but was accepted")
        elif o.outcome == "unknown" and got:
            unknown_keys.add(o.key)
        if o.zombie:
            res.zombie_appends += 1
            res.zombie_discarded += o.key in stale_commands
    res.unknown_accepted = len(unknown_keys)
    # S5: what a rejection or a read says of a stream is a version its accepted history was at (an
    # append of several events is accepted whole: no one sees the stream between them)
    for o in history.ops:
        said = o.version if o.is_read and o.status == 200 else \
            o.current_version if o.outcome == "fail" and o.status in linearizability.REJECTIONS else None
        if said is not None and said not in boundaries.get(o.stream_key, {0}):
            v["S5"].append(f"op {o.id} ({o.command} {o.stream_key}) answered {o.status} at version {said}, "
                           "which the stream's accepted history never was at")
    # S6: per stream, acknowledged-before-invoked implies a lower version (a retried operation was
    # invoked when its first attempt was sent)
    acked: dict[str, list[tuple[float, int, Op]]] = defaultdict(list)
    for o in writes:
        if o.outcome == "ok" and o.complete is not None and len(accepted.get(o.key, [])) == 1:
            acked[o.stream_key].append((o.complete, accepted[o.key][0].version, o))
    for stream, ops in acked.items():
        ops.sort(key=lambda x: x[0])
        done_at = [c for c, _, _ in ops]
        best: list[tuple[int, Op]] = []  # running maximum of versions, by completion time
        for _, version, o in ops:
            if best and best[-1][0] >= version:
                best.append(best[-1])
            else:
                best.append((version, o))
        for _, version, b in ops:
            n = bisect.bisect_left(done_at, first_invoke[b.key])
            if n and best[n - 1][0] >= version:
                a = best[n - 1][1]
                v["S6"].append(f"{stream}: op {a.id} acknowledged before op {b.id} was sent, but "
                               f"v{best[n - 1][0]} >= v{version}")
    # S7: the answers, reads and rejections included, are linearizable per stream; an unknown
    # outcome is settled by the log's verdict on it
    try:
        lin = res.linearizability = linearizability.check(
            history, {c: groups[-1].version for c, groups in accepted.items()}, visualize=visualize)
    except linearizability.CheckerUnavailable as e:  # not checked is not a pass; S1-S6 still stand
        v["S7"].append(f"not checked: {e}")
        return res
    for stream in lin.failing:
        n = sum(1 for o in history.ops if o.stream_key == stream)
        what = "not linearizable" if lin.streams[stream] == "Illegal" else "undecided (the checker ran out of time)"
        where = f"; see {lin.visualizations[stream]}" if stream in lin.visualizations else ""
        v["S7"].append(f"{stream}: {what} ({n} operations){where}")
    return res


def _acknowledged_problem(o: Op, got: list[_Accepted]) -> str | None:
    """Why an acknowledged operation is not in the log as the client was told (None: it is)."""
    if len(got) != 1:
        return f"acknowledged, accepted {len(got)} times"
    a = got[0]
    if (a.type, a.stream) != (o.type, o.stream):
        return f"acknowledged, accepted on {a.type}:{a.stream}"
    if o.version is not None and a.version != o.version:
        return f"told version {o.version}, accepted at {a.version}"
    if o.offsets and o.offsets != [e.offset for e in a.events]:
        return f"told offsets {o.offsets}, accepted at {[e.offset for e in a.events]}"
    if o.command == "Append" and o.events != [e.type for e in a.events]:
        return f"sent events {o.events}, accepted {[e.type for e in a.events]}"
    return None
