"""The report of a chaos run: report.json, summary.md and timeline.png."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from chaos.history import History
from chaos.runner import ChaosRun


def _p99(values: list[float]) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, math.ceil(0.99 * len(values)) - 1)]


def summarize(run: ChaosRun) -> dict[str, Any]:
    h, res = run.history, run.result
    commands = [o for o in h.ops if not o.is_read]  # availability and recovery are the writes'
    folder = [o for o in commands if o.type == "folders"]
    appends = [o for o in commands if o.type != "folders"]
    ops = {k: sum(1 for o in folder if o.outcome == k) for k in ("ok", "fail", "unknown")}
    reads = {k: sum(1 for o in h.ops if o.is_read and o.type == "folders" and o.outcome == k)
             for k in ("ok", "unknown")}
    open_reads = {k: sum(1 for o in h.ops if o.is_read and o.type != "folders" and o.outcome == k)
                  for k in ("ok", "unknown")}
    per_fault: dict[str, Any] = {}
    for f in h.faults:
        end = f.end if f.end is not None else f.start
        during = [o for o in commands if f.start <= o.invoke <= end]
        ok = [o for o in during if o.outcome == "ok"]
        after = [o.complete for o in commands if o.outcome == "ok" and o.complete is not None and o.complete >= end]
        per_fault.setdefault(f.kind, []).append({
            "start_s": round(f.start, 2), "duration_s": round(end - f.start, 2), "detail": f.detail,
            "availability": round(len(ok) / len(during), 3) if during else None,
            "p99_ms": round(1000 * p, 1) if (p := _p99([o.complete - o.invoke for o in ok if o.complete])) else None,
            "recovery_s": round(min(after) - end, 2) if after else None})
    return {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(run.config).items()},
        "violations": res.counts(),
        "violation_examples": {p: v[:10] for p, v in res.violations.items() if v},
        "faults": run.fault_counts,
        "ops": ops,
        "reads": reads,
        "open_streams": {"appends": {k: sum(1 for o in appends if o.outcome == k) for k in ("ok", "fail", "unknown")},
                         "reads": open_reads, **_open_details(h)},
        "by_type": res.by_type,
        "s7_checked": _s7(run),
        "records": res.records, "accepted": res.accepted, "discards": res.discards,
        "zombie_appends": {"injected": res.zombie_appends, "discarded": res.zombie_discarded},
        "unknown_later_accepted": res.unknown_accepted,
        "per_fault": per_fault,
        "batching": run.batching,
        "ok": res.ok,
    }


def _s7(run: ChaosRun) -> dict[str, int] | None:
    """How much Porcupine checked: streams of each model, and operations."""
    lin = run.result.linearizability
    if lin is None:
        return None
    prefix = f"{run.config.open_type}:" if run.config.open_type else None
    open_ = sum(1 for s in lin.streams if prefix and s.startswith(prefix))
    return {"folder_streams": len(lin.streams) - open_, "open_streams": open_, "operations": lin.operations}


def _open_details(h: History) -> dict[str, Any]:
    """How the open-stream workload went: its expectations, retries and races."""
    appends = [o for o in h.ops if o.command == "Append"]
    first = [o for o in appends if o.attempt == 0]
    kinds: dict[str, int] = {}
    for o in first:
        kind = "exact" if isinstance(o.expected_version, int) else str(o.expected_version or "none")
        kinds[kind] = kinds.get(kind, 0) + 1
    final = {o.key: o.outcome or "unknown" for o in appends}  # each append's last attempt's outcome
    by_race: dict[str, list[str]] = {}
    for o in first:
        if o.race:
            by_race.setdefault(o.race, []).append(final[o.key])
    tally = {"one won": 0, "both refused": 0, "both won": 0, "an outcome unknown": 0}
    for outcomes in by_race.values():
        won = outcomes.count("ok")
        tally["both won" if won == 2 else "an outcome unknown" if "unknown" in outcomes else
              "one won" if won == 1 else "both refused"] += 1
    return {"expected_version": kinds, "events": sum(len(o.events) for o in first),
            "retries": len(appends) - len(first),
            "retried_then_answered": len({o.key for o in appends if o.attempt > 0 and o.outcome != "unknown"}),
            "races": {"run": len(by_race), **tally}}


def markdown(s: dict[str, Any]) -> str:
    lines = [f"# fenced chaos run: {'PASS' if s['ok'] else 'VIOLATIONS'}", "",
             f"mode `{s['config']['ack_mode']}`, seed {s['config']['seed']}, {s['config']['duration']} s", "",
             "| property | violations |", "| --- | --- |"]
    lines += [f"| {p} | {n} |" for p, n in s["violations"].items()]
    o = s["open_streams"]
    lines += ["", f"commands: {s['ops']}; reads: {s['reads']}; records {s['records']}, "
                  f"accepted {s['accepted']}; discards {s['discards']}",
              f"open streams ({s['config']['open_type']}): appends {o['appends']} ({o['events']} events; expected "
              f"version {o['expected_version']}); reads {o['reads']}; {o['retries']} retries with the same key "
              f"({o['retried_then_answered']} appends answered on a retry); races {o['races']}",
              f"per topic: {s['by_type']}; S7 checked {s['s7_checked']}",
              f"zombie appends injected {s['zombie_appends']['injected']}, discarded "
              f"{s['zombie_appends']['discarded']}; unknown outcomes later found accepted: "
              f"{s['unknown_later_accepted']}; group commit at the end: {s['batching']}", "",
              "| fault | at (s) | lasted (s) | availability | p99 (ms) | recovered after (s) |",
              "| --- | --- | --- | --- | --- | --- |"]
    for kind, events in s["per_fault"].items():
        for e in events:
            lines.append(f"| {kind} | {e['start_s']} | {e['duration_s']} | {e['availability']} | {e['p99_ms']} | "
                         f"{e['recovery_s']} |")
    for p, examples in s["violation_examples"].items():
        lines += ["", f"## {p}", *[f"- {x}" for x in examples]]
    return "\n".join(lines) + "\n"


def timeline(h: History, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    end = max([*(o.complete or o.invoke for o in h.ops), 1.0])
    seconds = int(end) + 1
    ok = [0] * seconds
    bad = [0] * seconds
    lat: list[list[float]] = [[] for _ in range(seconds)]
    for o in h.ops:
        t = int(o.complete if o.complete is not None else o.invoke)
        if o.outcome == "ok" and o.complete is not None:
            ok[t] += 1
            lat[int(o.invoke)].append(1000 * (o.complete - o.invoke))
        elif o.outcome == "unknown":
            bad[t] += 1
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    xs = list(range(seconds))
    ax1.plot(xs, ok, label="ok/s", color="tab:green")
    ax1.plot(xs, bad, label="unknown/s", color="tab:red")
    ax1.set_ylabel("operations per second")
    ax1.legend(loc="upper right")
    ax2.plot(xs, [_p99(v) or float("nan") for v in lat], color="tab:blue", label="p99 latency")
    ax2.set_ylabel("p99 ms")
    ax2.set_xlabel("seconds")
    for f in h.faults:
        for ax in (ax1, ax2):
            ax.axvspan(f.start, f.end or f.start + 0.5, color="orange", alpha=0.25)
        ax1.text(f.start, max([*ok, 1]) * 0.95, f.kind, rotation=90, fontsize=7, va="top")
    fig.suptitle("fenced chaos: throughput and latency, fault windows shaded")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write(run: ChaosRun, out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    s = summarize(run)
    (out / "report.json").write_text(json.dumps(s, indent=2))
    (out / "summary.md").write_text(markdown(s))
    run.history.save(out / "history.json")
    timeline(run.history, out / "timeline.png")
    return s
