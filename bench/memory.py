"""Issue 8: Redis memory per stream and per event, measured on the real stack.

Starts its own Kafka broker and redis-server on free ports (data in a temporary folder) and
one fenced stack (the projector as a process, ``FENCED_ACK_MODE=verified``, 12 partitions;
no API replicas: the writes go through the writer core in this process, ``Runtime`` +
``Writer.execute`` from 64 tasks, like bench.run's P5). The stack has the redis-server to
itself, so ``used_memory`` counts nothing but fenced.

  1. Create folders up to each size in ``--streams`` (cumulative; one event each) and read
     the memory after the projector caught up. The difference between two sizes divided by
     the streams added is the marginal cost of one stream: fixed overhead cancels out.
  2. Send ``--events - 1`` Updates to every stream: the marginal cost of one more event.
  3. Census of the keyspace by key kind: count, ``MEMORY USAGE`` of a sample, encoding, TTL.
  4. Delete the keys that carry a TTL (``k:<command>`` Idempotency-Key answers, kept
     FENCED_IDEMPOTENCY_TTL_S = 24 h; ``o:<offset>`` verdicts, kept ``VERDICT_TTL_S`` = 1 h)
     as if they had expired: what remains is the durable cost of a stream.
  5. A few long streams (``--long-commands`` each, beyond the rule's 256-command window) to
     show how ``proj`` and ``ev`` grow with history.
  6. The same ``proj``/``ev`` hashes re-encoded as listpacks (a copy of a sample, with
     ``hash-max-listpack-value`` raised for a moment): what that setting would save.

    python -m bench.memory --quick      # 1,000 and 5,000 streams, about 2 minutes
    python -m bench.memory              # 2,000 and 20,000 streams, about 3 minutes on 2 cores
    python -m bench.memory --streams 2000,50000 --events 5

Prints a table and saves ``out/bench/memory.json`` (``--out``). The per-million figures are
extrapolations from the marginal costs, not measurements of a million streams.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from devstack.stack import Stack, servers
from fenced_client.domain import folders  # noqa: F401 - registers the reference type
from fenced_client.rule import RECENT_WINDOW
from service.errors import FencedError
from service.read.projection import VERDICT_TTL_S, applied_key
from service.write.writer import Request, new_command_id

CLIENTS = 64
SAMPLE = 300
MILLION = 1_000_000
PREFIX = "m-"
LONG_PREFIX = "long-"
KIND = re.compile(r"^fenced:\{[^}]*\}:(proj|ev|ctr|open|lease|q|w|k|o)(?::|$)")
TTL_KINDS = ("k", "o")
KIND_NOTES = {
    "proj": "projected state (hash: epoch, offset, version, data = rule state JSON)",
    "ev": "accepted events (hash version -> event JSON), the whole history",
    "ctr": "fencing-token counter",
    "open": "token of a holder that did not release cleanly",
    "lease": "held lease (PX lease TTL)",
    "q": "lease waiters (list)",
    "w": "waiter heartbeat (PX)",
    "k": "Idempotency-Key answer (EX FENCED_IDEMPOTENCY_TTL_S)",
    "o": f"verdict of a command group (EX {VERDICT_TTL_S} s)",
}


# ---------------------------------------------------------------- load

@dataclass
class Drive:
    ok: int = 0
    status: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    seconds: float = 0.0


async def drive(writer: Any, items: list[tuple[str, str, dict[str, Any]]], label: str) -> Drive:
    """Run every (folder id, command, data) through ``Writer.execute`` from 64 tasks.

    A 503 is retried with the same command id (so it is idempotent), at most 5 times."""
    out = Drive()
    it = iter(items)
    t0 = time.monotonic()
    last = t0

    async def worker() -> None:
        nonlocal last
        for rid, name, data in it:
            cid = new_command_id()
            code = "201"
            for attempt in range(6):
                try:
                    await writer.execute(Request("folders", rid, name, data, None, cid))
                    code = "201"
                    break
                except FencedError as e:
                    code = str(e.status)
                    if e.status != 503 or attempt == 5:
                        break
                    out.retries += 1
                    await asyncio.sleep(0.2)
            out.status[code] = out.status.get(code, 0) + 1
            out.ok += code == "201"
            now = time.monotonic()
            if now - last >= 10:
                last = now
                done = sum(out.status.values())
                print(f"    {label}: {done:,}/{len(items):,} ({done / (now - t0):,.0f}/s)", flush=True)

    await asyncio.gather(*(worker() for _ in range(CLIENTS)))
    out.seconds = time.monotonic() - t0
    print(f"  {label}: {out.ok:,}/{len(items):,} accepted in {out.seconds:.0f} s "
          f"({len(items) / max(out.seconds, 1e-9):,.0f}/s) {out.status}"
          + (f", {out.retries} retries" if out.retries else ""), flush=True)
    return out


async def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
        return {tp.partition: int(off) for tp, off in ends.items()}
    finally:
        await consumer.stop()


async def settle(r: aioredis.Redis, stack: Stack, timeout: float = 180.0) -> None:
    """Wait until the projector applied the end of every partition and the key count is still."""
    topic = stack.settings.topic("folders")
    ends = await end_offsets(stack.kafka.bootstrap, topic, stack.settings.partitions)
    deadline = time.monotonic() + timeout
    while True:
        applied = {int(k): int(v) for k, v in (await r.hgetall(applied_key(topic))).items()}
        behind = {p: e for p, e in ends.items() if e > 0 and applied.get(p, -1) < e - 1}
        if not behind:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"the projector did not catch up in {timeout:.0f} s: {behind} vs {applied}")
        await asyncio.sleep(0.2)
    before = await r.dbsize()
    while True:
        await asyncio.sleep(1.0)
        now = await r.dbsize()
        if now == before or time.monotonic() > deadline:
            return
        before = now


# ---------------------------------------------------------------- memory

async def snapshot(r: aioredis.Redis, label: str) -> dict[str, Any]:
    """``INFO memory`` and ``MEMORY STATS``. ``data`` is used_memory less what is not data:
    client buffers, the AOF buffer and the replication backlog (all of which move with load)."""
    info = await r.info("memory")
    stats = await r.memory_stats()
    not_data = sum(int(stats.get(k, 0) or 0) for k in
                   ("clients.normal", "clients.slaves", "aof.buffer", "replication.backlog"))
    used = int(info["used_memory"])
    db = next((v for k, v in stats.items() if k.startswith("db.") and isinstance(v, dict)), {})
    return {"label": label, "used_memory": used, "data": used - not_data,
            "used_memory_rss": int(info["used_memory_rss"]), "keys": int(await r.dbsize()),
            "dataset_bytes": int(stats.get("dataset.bytes", 0) or 0),
            "hashtable_main": int(db.get("overhead.hashtable.main", 0) or 0),
            "hashtable_expires": int(db.get("overhead.hashtable.expires", 0) or 0),
            "clients": int(stats.get("clients.normal", 0) or 0),
            "fragmentation": float(info.get("mem_fragmentation_ratio", 0) or 0)}


def kind_of(key: str) -> str:
    m = KIND.match(key)
    if m:
        return m.group(1)
    if key.startswith("fenced:applied:"):
        return "applied"
    if key.startswith("fenced:caughtup:"):
        return "caughtup"
    return "meta" if key == "fenced:meta" else "other"


async def census(r: aioredis.Redis, sample: int, only_prefix: str | None = None) -> dict[str, Any]:
    """Every key, by kind: count and, for a sample, MEMORY USAGE, encoding, TTL and size."""
    counts: dict[str, int] = {}
    picked: dict[str, list[str]] = {}
    async for raw in r.scan_iter(count=2000):
        key = raw.decode()
        if only_prefix and f"{{folders:{only_prefix}" not in key:
            continue
        kind = kind_of(key)
        counts[kind] = counts.get(kind, 0) + 1
        lst = picked.setdefault(kind, [])
        if len(lst) < sample:
            lst.append(key)
    kinds: dict[str, Any] = {}
    for kind, keys in picked.items():
        pipe = r.pipeline(transaction=False)
        for k in keys:
            pipe.memory_usage(k, samples=0)
            pipe.object("encoding", k)
            pipe.pttl(k)
            pipe.type(k)
        rows = await pipe.execute()
        usage, enc, ttl, typ = rows[0::4], rows[1::4], rows[2::4], rows[3::4]
        pipe = r.pipeline(transaction=False)
        for k, t in zip(keys, typ, strict=True):
            t = t.decode() if isinstance(t, bytes) else t
            if t == "hash":
                pipe.hlen(k)
            elif t == "string":
                pipe.strlen(k)
            elif t == "list":
                pipe.llen(k)
            else:
                pipe.exists(k)
        sizes = await pipe.execute()
        live = [(u, e, t, s) for u, e, t, s in zip(usage, enc, ttl, sizes, strict=True) if u is not None]
        if not live:
            continue
        encs: dict[str, int] = {}
        for _, e, _, _ in live:
            name = e.decode() if isinstance(e, bytes) else str(e)
            encs[name] = encs.get(name, 0) + 1
        ttls = [t for _, _, t, _ in live if t is not None and t >= 0]
        example = await _example(r, keys[0], typ[0])
        kinds[kind] = {
            "count": counts[kind], "sampled": len(live),
            "avg_usage": sum(u for u, _, _, _ in live) / len(live),
            "max_usage": max(u for u, _, _, _ in live),
            "avg_size": sum(s for _, _, _, s in live) / len(live),
            "encodings": encs,
            "ttl_s_max": round(max(ttls) / 1000) if ttls else None,
            "with_ttl": len(ttls), "note": KIND_NOTES.get(kind, ""),
            "example_key": keys[0], "example": example, "sample_keys": keys[:50],
        }
    return {"counts": counts, "kinds": kinds}


def _text(x: bytes | str) -> str:
    return x.decode(errors="replace") if isinstance(x, bytes) else x


async def _example(r: aioredis.Redis, key: str, typ: bytes | str) -> str:
    """One key's value, shortened: what the bytes are spent on."""
    t = _text(typ)
    if t == "hash":
        fields = await r.hgetall(key)
        value = json.dumps({_text(k): _text(v) for k, v in list(fields.items())[:2]})
    elif t == "string":
        raw = await r.get(key)
        value = "" if raw is None else _text(raw)
    else:
        value = f"({t})"
    return value if len(value) <= 600 else value[:600] + "..."


async def delete_kinds(r: aioredis.Redis, kinds: Iterable[str]) -> int:
    """Delete every key of these kinds (synchronously, so used_memory drops at once)."""
    wanted = set(kinds)
    n = 0
    batch: list[bytes] = []
    async for raw in r.scan_iter(count=2000):
        if kind_of(raw.decode()) in wanted:
            batch.append(raw)
            if len(batch) >= 1000:
                n += int(await r.delete(*batch))
                batch = []
    if batch:
        n += int(await r.delete(*batch))
    return n


async def listpack_trial(r: aioredis.Redis, keys: list[str], value_limit: int = 4096) -> dict[str, Any]:
    """Copy sample hashes with ``hash-max-listpack-value`` raised, compare MEMORY USAGE, clean up."""
    old = str((await r.config_get("hash-max-listpack-value"))["hash-max-listpack-value"])
    entries = int(str((await r.config_get("hash-max-listpack-entries"))["hash-max-listpack-entries"]))
    before: list[int] = []
    after: list[int] = []
    encs: dict[str, int] = {}
    try:
        await r.config_set("hash-max-listpack-value", value_limit)
        for i, key in enumerate(keys):
            data: dict[Any, Any] = await r.hgetall(key)
            if not data:
                continue
            tmp = f"bench:listpack:{i}"
            await r.delete(tmp)
            await r.hset(tmp, mapping=data)
            u0, u1 = await r.memory_usage(key, samples=0), await r.memory_usage(tmp, samples=0)
            enc = await r.object("encoding", tmp)
            name = enc.decode() if isinstance(enc, bytes) else str(enc)
            encs[name] = encs.get(name, 0) + 1
            await r.delete(tmp)
            if u0 is not None and u1 is not None:
                before.append(int(u0))
                after.append(int(u1))
    finally:
        await r.config_set("hash-max-listpack-value", old)
    if not before:
        return {}
    return {"sampled": len(before), "avg_before": sum(before) / len(before), "avg_after": sum(after) / len(after),
            "encodings_after": encs, "hash_max_listpack_value_was": int(old),
            "hash_max_listpack_entries": entries, "trial_value_limit": value_limit}


# ---------------------------------------------------------------- the run

async def measure(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    from service.runtime import Runtime

    r = aioredis.Redis.from_url(stack.settings.redis_url)
    rt = Runtime(stack.settings)
    snaps: dict[str, dict[str, Any]] = {}
    drives: dict[str, Any] = {}
    out: dict[str, Any] = {"snapshots": snaps, "drives": drives}
    try:
        await rt.start()
        deadline = time.monotonic() + 120
        while True:  # the projector sets ready once it caught up with the (empty) topic
            meta = await r.hgetall("fenced:meta")
            if meta.get(b"epoch") and meta.get(b"ready") == meta.get(b"epoch"):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the projection did not become ready in 120 s: {meta}")
            await asyncio.sleep(0.2)
        out["config"] = {k: v for k, v in (await r.config_get("hash-max-*")).items()}
        out["config"]["idempotency_ttl_s"] = stack.settings.idempotency_ttl_s
        out["config"]["verdict_ttl_s"] = VERDICT_TTL_S
        out["config"]["redis_version"] = (await r.info("server"))["redis_version"]
        await settle(r, stack)
        snaps["empty"] = await snapshot(r, "empty")
        print(f"  empty: used_memory {snaps['empty']['used_memory']:,} B, {snaps['empty']['keys']} keys", flush=True)

        have = 0
        for n in args.streams:
            items = [(f"{PREFIX}{i}", "Create", {"name": f"folder {i}"}) for i in range(have, n)]
            drives[f"create {n}"] = vars(await drive(rt.writer, items, f"create {have:,}..{n:,}"))
            await settle(r, stack)
            snaps[f"streams {n}"] = await snapshot(r, f"{n} streams x 1 event")
            have = n
            s = snaps[f"streams {n}"]
            print(f"  {n:,} streams x 1 event: used_memory {s['used_memory']:,} B, {s['keys']:,} keys", flush=True)

        n = args.streams[-1]
        if args.events > 1:
            items = [(f"{PREFIX}{i}", "Update", {"name": f"folder {i} v{v}"})
                     for v in range(2, args.events + 1) for i in range(n)]
            drives["updates"] = vars(await drive(rt.writer, items, f"{args.events - 1} updates x {n:,} streams"))
            await settle(r, stack)
        snaps["full"] = await snapshot(r, f"{n} streams x {args.events} events")
        print(f"  {n:,} streams x {args.events} events: used_memory {snaps['full']['used_memory']:,} B, "
              f"{snaps['full']['keys']:,} keys", flush=True)
        print("  census of the keyspace ...", flush=True)
        out["census_full"] = await census(r, args.sample)

        print("  deleting the TTL'd keys (answers, verdicts) as if they had expired ...", flush=True)
        out["deleted_ttl_keys"] = await delete_kinds(r, TTL_KINDS)
        snaps["durable"] = await snapshot(r, f"{n} streams x {args.events} events, TTL'd keys gone")
        out["census_durable"] = {"counts": (await census(r, 0))["counts"]}

        kinds = out["census_full"]["kinds"]
        out["listpack_trial"] = {kind: await listpack_trial(r, kinds[kind]["sample_keys"])
                                 for kind in ("proj", "ev") if kind in kinds}

        if args.long_streams and args.long_commands:
            ls, lc = args.long_streams, args.long_commands
            items = [(f"{LONG_PREFIX}{i}", "Create", {"name": f"long {i}"}) for i in range(ls)]
            drives["long create"] = vars(await drive(rt.writer, items, f"create {ls} long streams"))
            items = [(f"{LONG_PREFIX}{i}", "Update", {"name": f"long {i} v{v}"})
                     for v in range(2, lc + 1) for i in range(ls)]
            drives["long updates"] = vars(await drive(rt.writer, items, f"{lc - 1} updates x {ls} long streams"))
            await settle(r, stack)
            long_census = await census(r, 10_000, only_prefix=LONG_PREFIX)
            pipe = r.pipeline(transaction=False)
            for i in range(ls):
                pipe.hstrlen(f"fenced:{{folders:{LONG_PREFIX}{i}}}:proj", "data")
            data_len = await pipe.execute()
            out["long"] = {"streams": ls, "commands": lc, "census": long_census,
                           "avg_proj_data_bytes": sum(data_len) / max(len(data_len), 1)}
    finally:
        await rt.stop()
        await r.aclose()
    return out


def derive(res: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Per-stream and per-event figures from the snapshots (``data``: used_memory less buffers)."""
    s = res["snapshots"]
    n1, n2 = args.streams[0], args.streams[-1]
    e = args.events
    d: dict[str, Any] = {}
    if n2 > n1:
        d["bytes_per_stream_1_event"] = (s[f"streams {n2}"]["data"] - s[f"streams {n1}"]["data"]) / (n2 - n1)
        d["fixed_bytes"] = s[f"streams {n1}"]["data"] - s["empty"]["data"] - n1 * d["bytes_per_stream_1_event"]
    else:
        d["bytes_per_stream_1_event"] = (s[f"streams {n2}"]["data"] - s["empty"]["data"]) / n2
        d["fixed_bytes"] = None
    commands = n2 * e
    if e > 1:
        d["bytes_per_extra_event"] = (s["full"]["data"] - s[f"streams {n2}"]["data"]) / (n2 * (e - 1))
    d["bytes_per_stream_all_events"] = (s["full"]["data"] - s["empty"]["data"]) / n2
    d["ttl_bytes_per_command"] = (s["full"]["data"] - s["durable"]["data"]) / commands
    d["durable_bytes_per_stream_all_events"] = (s["durable"]["data"] - s["empty"]["data"]) / n2
    d["durable_bytes_per_stream_1_event"] = d["bytes_per_stream_1_event"] - d["ttl_bytes_per_command"]
    if e > 1:
        d["durable_bytes_per_extra_event"] = ((d["durable_bytes_per_stream_all_events"]
                                               - d["durable_bytes_per_stream_1_event"]) / (e - 1))
        d["ttl_share_all_events"] = 1 - d["durable_bytes_per_stream_all_events"] / d["bytes_per_stream_all_events"]
    kinds = res["census_full"]["kinds"]
    ttl_sample = sum(kinds[k]["avg_usage"] for k in TTL_KINDS if k in kinds) or 1.0
    d["answer_bytes"] = d["ttl_bytes_per_command"] * kinds.get("k", {}).get("avg_usage", 0) / ttl_sample
    d["verdict_bytes"] = d["ttl_bytes_per_command"] * kinds.get("o", {}).get("avg_usage", 0) / ttl_sample
    ttl = res["config"]["idempotency_ttl_s"]
    d["ttl_bytes_per_command_per_s"] = {
        "answers": d["answer_bytes"] * ttl, "verdicts": d["verdict_bytes"] * VERDICT_TTL_S,
        "total": d["answer_bytes"] * ttl + d["verdict_bytes"] * VERDICT_TTL_S}
    one, all_e = d["durable_bytes_per_stream_1_event"], d["durable_bytes_per_stream_all_events"]
    d["per_million_streams"] = {
        "1 event each, written in the last hour": d["bytes_per_stream_1_event"] * MILLION,
        "1 event each, written 1 h to 24 h ago": (one + d["answer_bytes"]) * MILLION,
        "1 event each, written over 24 h ago": one * MILLION,
        f"{e} events each, written in the last hour": d["bytes_per_stream_all_events"] * MILLION,
        f"{e} events each, written 1 h to 24 h ago": (all_e + e * d["answer_bytes"]) * MILLION,
        f"{e} events each, written over 24 h ago": all_e * MILLION,
    }
    return d


def mb(x: float) -> str:
    return f"{x / 2**20:,.1f} MiB" if abs(x) < 2**30 else f"{x / 2**30:,.2f} GiB"


def report(res: dict[str, Any], d: dict[str, Any], args: argparse.Namespace) -> list[str]:
    e = args.events
    s = res["snapshots"]
    lines = ["", "snapshots (data = used_memory - client buffers - AOF buffer - replication backlog):",
             f"  {'state':46} {'used_memory':>14} {'data':>14} {'keys':>10} {'rss':>12}"]
    for snap in s.values():
        lines.append(f"  {snap['label']:46} {snap['used_memory']:>14,} {snap['data']:>14,} {snap['keys']:>10,} "
                     f"{mb(snap['used_memory_rss']):>12}")
    lines += ["", "marginal cost (bytes):",
              f"  one stream with 1 event (Create), all keys          {d['bytes_per_stream_1_event']:10,.0f}"
              f"   (between {args.streams[0]:,} and {args.streams[-1]:,} streams)"]
    if e > 1:
        lines.append(f"  one more event (Update) on a stream, all keys       {d['bytes_per_extra_event']:10,.0f}")
    lines += [
        f"  one stream with {e} events, all keys                 {d['bytes_per_stream_all_events']:10,.0f}",
        f"  TTL'd keys per command (answer + verdict)           {d['ttl_bytes_per_command']:10,.0f}"
        f"   (answer ~{d['answer_bytes']:,.0f} for {res['config']['idempotency_ttl_s']:,} s, "
        f"verdict ~{d['verdict_bytes']:,.0f} for {VERDICT_TTL_S:,} s)",
        f"  durable: one stream with 1 event                    {d['durable_bytes_per_stream_1_event']:10,.0f}"]
    if e > 1:
        lines += [f"  durable: one more event                             {d['durable_bytes_per_extra_event']:10,.0f}",
                  f"  durable: one stream with {e} events                   "
                  f"{d['durable_bytes_per_stream_all_events']:10,.0f}",
                  f"  share of TTL'd keys while all {e} events are fresh    {100 * d['ttl_share_all_events']:9.0f}%"]
    if d.get("fixed_bytes") is not None:
        lines.append(f"  fixed (not per stream; noise of the dict resizes)   {d['fixed_bytes']:10,.0f}")
    kinds = res["census_full"]["kinds"]
    n = args.streams[-1]
    lines += ["", f"keys by kind at {n:,} streams x {e} events (MEMORY USAGE of a sample of up to {args.sample}):",
              f"  {'kind':8} {'keys':>9} {'per stream':>10} {'avg bytes':>10} {'max':>8} {'avg size':>9} "
              f"{'ttl':>8}  {'encoding':20} {'share':>6}"]
    total = sum(k["avg_usage"] * k["count"] for k in kinds.values()) or 1.0
    for kind, k in sorted(kinds.items(), key=lambda kv: -kv[1]["avg_usage"] * kv[1]["count"]):
        enc = ",".join(f"{name}" + (f" {c}" if len(k["encodings"]) > 1 else "") for name, c in k["encodings"].items())
        ttl = f"{k['ttl_s_max']:,}s" if k["ttl_s_max"] is not None else "-"
        lines.append(f"  {kind:8} {k['count']:>9,} {k['count'] / n:>10.2f} {k['avg_usage']:>10,.0f} "
                     f"{k['max_usage']:>8,} {k['avg_size']:>9,.1f} {ttl:>8}  {enc:20} "
                     f"{100 * k['avg_usage'] * k['count'] / total:5.1f}%")
    lines.append("  (avg size: fields of a hash, bytes of a string; MEMORY USAGE leaves out the keyspace's own "
                 "hash-table slots and the expires entries)")
    lp = res.get("listpack_trial", {})
    for kind, t in lp.items():
        if t:
            lines.append(f"  {kind}: as a listpack (hash-max-listpack-value {t['trial_value_limit']}) "
                         f"{t['avg_after']:,.0f} B instead of {t['avg_before']:,.0f} B "
                         f"({100 * (1 - t['avg_after'] / t['avg_before']):.0f}% less; "
                         f"server has {t['hash_max_listpack_value_was']})")
    if "long" in res:
        lg = res["long"]
        lk = lg["census"]["kinds"]
        lines.append(f"  long streams ({lg['streams']} x {lg['commands']} commands; the rule keeps the last "
                     f"{RECENT_WINDOW} command ids in proj): proj {lk.get('proj', {}).get('avg_usage', 0):,.0f} B "
                     f"(data field {lg['avg_proj_data_bytes']:,.0f} B), "
                     f"ev {lk.get('ev', {}).get('avg_usage', 0):,.0f} B "
                     f"= {lk.get('ev', {}).get('avg_usage', 0) / lg['commands']:,.0f} B/event")
    rate = d["ttl_bytes_per_command_per_s"]
    lines += ["", "EXTRAPOLATION to 1 million streams (marginal costs x 1,000,000; not measured at that size; "
              "'1 h' is the verdicts' TTL, '24 h' the answers' FENCED_IDEMPOTENCY_TTL_S):"]
    for label, v in d["per_million_streams"].items():
        lines.append(f"  {label:46} {mb(v):>12}")
    lines.append(f"  in steady state the TTL'd keys follow the write rate, not the stream count: "
                 f"{mb(rate['total'])} per command/s sustained "
                 f"(answers {mb(rate['answers'])}, verdicts {mb(rate['verdicts'])}); "
                 f"at 100 commands/s {mb(100 * rate['total'])}, at 1,000/s {mb(1000 * rate['total'])}")
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1,000 and 5,000 streams instead of 2,000 and 20,000")
    ap.add_argument("--streams", default=None, help="comma-separated cumulative sizes (default 2000,20000; "
                    "quick 1000,5000); the marginal cost is taken between the first and the last")
    ap.add_argument("--events", type=int, default=5, help="events per stream: 1 Create + (events - 1) Updates")
    ap.add_argument("--sample", type=int, default=SAMPLE, help="keys per kind for MEMORY USAGE")
    ap.add_argument("--long-streams", type=int, default=8, help="streams with a long history (0: skip)")
    ap.add_argument("--long-commands", type=int, default=None, help="commands per long stream (default 300)")
    ap.add_argument("--ack-mode", choices=("verified", "leased"), default="verified")
    ap.add_argument("--out", type=Path, default=Path("out/bench"))
    ap.add_argument("--report", type=Path, default=None, help="print a saved memory.json again, run nothing")
    args = ap.parse_args(argv)
    args.streams = sorted({int(x) for x in (args.streams or ("1000,5000" if args.quick else "2000,20000")).split(",")})
    args.long_commands = args.long_commands or 300
    if args.events < 1 or args.streams[0] < 1:
        ap.error("--events and --streams must be at least 1")
    if args.report is not None:  # print a saved run again (with this version's derivations)
        saved = json.loads(args.report.read_text())
        output(saved, argparse.Namespace(**{**saved["args"], "out": Path(saved["args"]["out"])}), save=False)
        return
    for name in ("fenced", "aiokafka"):
        logging.getLogger(name).setLevel(logging.ERROR)

    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="fenced-bench-memory-"))
    env = {"FENCED_LEASE_TTL_MS": "5000", "FENCED_PARTITIONS": "12", "FENCED_FAULT_INJECTION": "false"}
    try:
        with ExitStack() as cleanup:  # stops every process in reverse order, also on failure or Ctrl-C
            print(f"starting Kafka, Redis and the projector under {root} ...", flush=True)
            kafka, redis = cleanup.enter_context(servers(root))
            stack = Stack(root / "stacks", kafka, redis, ack_mode=args.ack_mode, replicas=0, extra_env=env)
            cleanup.callback(stack.stop)
            stack.start()
            res = asyncio.run(measure(stack, args))
    except BaseException:
        print(f"bench.memory failed; its logs are kept under {root}", file=sys.stderr)
        raise
    shutil.rmtree(root, ignore_errors=True)

    res["seconds_total"] = round(time.monotonic() - started, 1)
    res["machine"] = f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, {platform.platform()}"
    output(res, args, save=True)


def output(res: dict[str, Any], args: argparse.Namespace, *, save: bool) -> None:
    d = derive(res, args)
    command = "python -m bench.memory" + (" --quick" if args.quick else "")
    default_streams = [1000, 5000] if args.quick else [2000, 20000]
    if args.streams != default_streams:
        command += f" --streams {','.join(map(str, args.streams))}"
    if args.events != 5:
        command += f" --events {args.events}"
    print(f"\n== fenced Redis memory: {command}; ack mode {args.ack_mode}; Redis "
          f"{res['config']['redis_version']}; {res['machine']}; {res['seconds_total']:.0f} s ==")
    for line in report(res, d, args):
        print(line)
    if not save:
        return
    for c in (res["census_full"]["kinds"], res.get("long", {}).get("census", {}).get("kinds", {})):
        for k in c.values():
            k.pop("sample_keys", None)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "memory.json"
    path.write_text(json.dumps({
        "command": command, "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "derived": d, **res}, indent=2, default=str))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
