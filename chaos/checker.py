"""The checker: replay every partition from offset 0 and check S1-S7 against the history.

Two independent consumers replay the topic (``assign`` and a fresh consumer group). S4 is
checked from the raw records, independently of the rule: no accepted event may carry a
token below the highest fence or accepted token seen earlier in its stream. S7 is Porcupine's
verdict on the clients' answers (:mod:`chaos.linearizability`).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from chaos import linearizability
from chaos.history import History, Op
from fenced_client import domain
from fenced_client.rule import Replay, Verdict
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

    def counts(self) -> dict[str, int]:
        return {p: len(v) for p, v in self.violations.items()}

    @property
    def ok(self) -> bool:
        return not any(self.violations.values())


async def read_records(bootstrap: str, topic: str, partitions: int, *, group: bool) -> list[Record]:
    return [decode(m.key, m.value, m.headers, m.partition, m.offset, partitions)
            async for m in read_topic(bootstrap, topic, group=group)]


def replay(records: list[Record], topic: str, *, ignore_tokens: bool = False) -> TopicReplay:
    """The rule over the records; ``ignore_tokens`` is a deliberately broken consumer."""
    decider = domain.get("folders")
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


def check(history: History, records_a: list[Record], records_b: list[Record], topic: str,
          projection: dict[str, tuple[int, int]] | None = None, *, ignore_tokens: bool = False,
          visualize: Path | None = None) -> CheckResult:
    res = CheckResult()
    ra = replay(records_a, topic, ignore_tokens=ignore_tokens)
    rb = replay(records_b, topic, ignore_tokens=ignore_tokens)
    res.records, res.accepted, res.discards = ra.replay.records, ra.replay.accepted, dict(ra.replay.discards)
    v = res.violations
    # S2: independent replays agree, and agree with the projection
    if ra.digest() != rb.digest():
        v["S2"].append("the assign() replay and the consumer-group replay differ")
    if projection is not None:
        for stream, st in ra.replay.streams.items():
            seen = projection.get(f"folders:{stream}")
            if seen != (st.version, st.max_token):
                v["S2"].append(f"{stream}: replay (version, max_token) = {(st.version, st.max_token)}, "
                               f"projection = {seen}")
    histories = ra.histories()
    # S3: every accepted history is valid
    for stream, events in histories.items():
        if problems := history_problems(events):
            v["S3"].append(f"{stream}: {'; '.join(problems)}")
    # S4: from the raw records, no accepted event below the stream's token high-water mark
    accepted_at = {(e["partition"], e["offset"]) for events in histories.values() for e in events}
    high: dict[tuple[int, str], int] = defaultdict(int)
    for rec in sorted(records_a, key=lambda r: (r.partition, r.offset)):
        key = (rec.partition, rec.stream)
        if rec.kind == "fence":
            high[key] = max(high[key], rec.token)
        elif rec.kind == "event" and (rec.partition, rec.offset) in accepted_at:
            if rec.token < high[key]:
                v["S4"].append(f"{rec.stream}@{rec.partition}/{rec.offset}: token {rec.token} accepted below "
                               f"{high[key]}")
            high[key] = max(high[key], rec.token)
    by_command: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for stream, events in histories.items():
        for e in events:
            by_command[e["command"]].append({**e, "stream": stream})
    stale_commands = {vd.command for vd in ra.verdicts if not vd.accepted and vd.reason == "stale"}
    commands = [o for o in history.ops if o.command != "Get"]
    for o in commands:
        got = by_command.get(o.key, [])
        if o.outcome == "ok":  # S1: acknowledged exactly once, at the version the client was told
            if len(got) != 1:
                v["S1"].append(f"op {o.id} ({o.command} {o.stream}) acknowledged, accepted {len(got)} times")
            elif o.version is not None and got[0]["version"] != o.version:
                v["S1"].append(f"op {o.id}: told version {o.version}, accepted at {got[0]['version']}")
        elif o.outcome == "fail" and got:  # S5
            v["S5"].append(f"op {o.id} ({o.command} {o.stream}) failed with {o.status} but was accepted")
        elif o.outcome == "unknown" and got:
            res.unknown_accepted += 1
        if o.zombie:
            res.zombie_appends += 1
            res.zombie_discarded += o.key in stale_commands
    # S6: per stream, acknowledged-before-invoked implies a lower version
    acked: dict[str, list[tuple[float, int, Op]]] = defaultdict(list)
    for o in commands:
        if o.outcome == "ok" and o.complete is not None and len(by_command.get(o.key, [])) == 1:
            acked[o.stream].append((o.complete, by_command[o.key][0]["version"], o))
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
            n = bisect.bisect_left(done_at, b.invoke)
            if n and best[n - 1][0] >= version:
                a = best[n - 1][1]
                v["S6"].append(f"{stream}: op {a.id} acknowledged before op {b.id} was sent, but "
                               f"v{best[n - 1][0]} >= v{version}")
    # S7: the answers, reads and rejections included, are linearizable per stream; an unknown
    # outcome is settled by the log's verdict on it
    try:
        lin = res.linearizability = linearizability.check(
            history, {c: events[-1]["version"] for c, events in by_command.items()}, visualize=visualize)
    except linearizability.CheckerUnavailable as e:  # not checked is not a pass; S1-S6 still stand
        v["S7"].append(f"not checked: {e}")
        return res
    for stream in lin.failing:
        n = sum(1 for o in history.ops if o.stream == stream)
        what = "not linearizable" if lin.streams[stream] == "Illegal" else "undecided (the checker ran out of time)"
        where = f"; see {lin.visualizations[stream]}" if stream in lin.visualizations else ""
        v["S7"].append(f"{stream}: {what} ({n} operations){where}")
    return res
