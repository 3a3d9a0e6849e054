"""Issue 6's benchmark: fenced against the simplest thing doing the same job, as ratios.

Starts its own Kafka broker and redis-server on free ports (data in a temporary folder),
one fenced stack per acknowledgement mode (projector + 2 API replicas), and the baselines,
then measures system and baseline side by side in short windows whose order rotates each
round. Each figure is the ratio of the medians over the rounds; the machine is noisy and
everything shares its cores, so compare within one run, not across runs.

  P1  HTTP efficiency: fenced accepted commands/s (uniform over 10k folders, 2 replicas)
      / requests/s of a no-op FastAPI app with the same route, body and uvicorn settings
  P2  fenced / the same HTTP API on PostgreSQL (asyncpg, UNIQUE(stream_id, version))
  P3  fenced hot (every client on 3 folders) / fenced uniform, accepted commands/s
  P4  projector rebuild from offset 0, records/s / a plain aiokafka consumer of the topic
  P5  writer core in-process (Runtime + Writer.execute, no HTTP) / plain aiokafka
      produce of the same event records (acks=all, idempotent, send_and_wait)
  A1  fenced with API keys and a per-tenant rate limit / fenced with FENCED_AUTH=off (HTTP)

    python -m bench.run --quick     # make bench QUICK=1: 2 rounds of 4 s, a few minutes
    python -m bench.run             # 3 rounds of 8 s, plus P1 from 1k to 1M folders

Prints one line per ratio, ``P<n> <name>: <ratio> (target <t>)``, and saves
``report.json`` and ``ratios.png`` under ``--out`` (default ``out/bench``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import aiohttp
import httpx
import redis.asyncio as aioredis
from fastapi import FastAPI, Header

from devstack.errors import StackError
from devstack.proc import free_port, stop_process, tail
from devstack.stack import Stack, servers
from fenced_client.domain import folders  # noqa: F401 - registers the reference type
from fenced_client.wire import encode_value, event_headers, partition_for
from service.api.routes import CommandIn, CommandOut, IdPath, TypePath
from service.auth import create_key
from service.errors import FencedError
from service.settings import Settings
from service.write.writer import Request, new_command_id

ROOT = Path(__file__).resolve().parent.parent
A1_RATE_LIMIT = os.environ.get("BENCH_A1_RATE_LIMIT", "100000/second")
"""A1's per-tenant rate limit: high enough never to bite; empty for none."""
TARGETS = {"A1": 0.9, "P1": 0.5, "P2 uniform": 2.0, "P2 hot": 5.0, "P3": 0.5, "P4": 0.5, "P5": 0.25}
CLIENTS = 64
HOT_FOLDERS = 3
REBUILD_DB = 15  # the stacks use Redis dbs from 1 up (devstack.stack), the rebuilds this one
NOOP = "no-op FastAPI app, same body, same uvicorn settings (fenced's route and body model; no middleware, no I/O)"


def noop_app() -> FastAPI:
    """P1's baseline: fenced's POST route with nothing behind it (served by ``uvicorn --factory``)."""
    app = FastAPI(title="fenced bench: no-op")

    @app.post("/v1/{resource_type}/{resource_id}/commands", status_code=201, response_model=CommandOut)
    async def send_command(resource_type: TypePath, resource_id: IdPath, body: CommandIn,
                           idempotency_key: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        return {"command_id": idempotency_key or new_command_id(), "version": 1,
                "events": [{"type": "FolderCreated", "version": 1, "partition": 0, "offset": 0}]}

    return app


# ---------------------------------------------------------------- samples and ratios

@dataclass
class Sample:
    """One window of one system: ``rate`` is what the ratio compares (accepted/s, records/s)."""

    rate: float
    count: int
    seconds: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    status: dict[str, int] = field(default_factory=dict)


def sample(ok: int, seconds: float, latencies: list[float], status: dict[str, int]) -> Sample:
    lat = sorted(latencies)
    return Sample(ok / seconds, ok, round(seconds, 3),
                  round(1000 * lat[len(lat) // 2], 2) if lat else None,
                  round(1000 * lat[min(int(len(lat) * 0.99), len(lat) - 1)], 2) if lat else None, status)


def _median(xs: list[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


@dataclass
class Ratio:
    key: str
    name: str
    target: float
    sut: str
    base: str
    unit: str
    sut_samples: list[Sample]
    base_samples: list[Sample]
    note: str = ""
    base_unit: str = ""

    @property
    def sut_rate(self) -> float:
        return statistics.median(s.rate for s in self.sut_samples)

    @property
    def base_rate(self) -> float:
        return statistics.median(s.rate for s in self.base_samples)

    @property
    def value(self) -> float:
        return self.sut_rate / self.base_rate if self.base_rate else float("nan")

    def _side(self, label: str, rate: float, unit: str, samples: list[Sample]) -> str:
        p50, p99 = _median([s.p50_ms for s in samples]), _median([s.p99_ms for s in samples])
        lat = f" p50 {p50:.1f} ms p99 {p99:.1f} ms" if p50 is not None and p99 is not None else ""
        return f"{label} {rate:,.0f} {unit}{lat}"

    def line(self) -> str:
        met = "met" if self.value >= self.target else "NOT met"
        return (f"{self.key} {self.name}: {self.value:.2f} (target {self.target:g}) {met} -- "
                f"{self._side(self.sut, self.sut_rate, self.unit, self.sut_samples)} / "
                f"{self._side(self.base, self.base_rate, self.base_unit or self.unit, self.base_samples)}"
                + (f"; {self.note}" if self.note else ""))

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "name": self.name, "ratio": round(self.value, 4), "target": self.target,
                "met": self.value >= self.target, "system": self.sut, "baseline": self.base,
                "unit": self.unit, "baseline_unit": self.base_unit or self.unit,
                "system_median": round(self.sut_rate, 1), "baseline_median": round(self.base_rate, 1),
                "note": self.note, "system_rounds": [asdict(s) for s in self.sut_samples],
                "baseline_rounds": [asdict(s) for s in self.base_samples]}


Measure = Callable[[float], Coroutine[Any, Any, Sample]]


async def rotate(systems: dict[str, Measure], rounds: int, seconds: float, warmup: float) -> dict[str, list[Sample]]:
    """Measure every system once per round, rotating the order so none always goes first."""
    for measure in systems.values():
        if warmup > 0:
            await measure(warmup)
    names = list(systems)
    out: dict[str, list[Sample]] = {n: [] for n in names}
    for rnd in range(rounds):
        shift = rnd % len(names)
        for name in names[shift:] + names[:shift]:
            s = await systems[name](seconds)
            out[name].append(s)
            lat = f"  p50 {s.p50_ms:.1f} ms  p99 {s.p99_ms:.1f} ms" if s.p50_ms is not None else ""
            print(f"  round {rnd + 1}/{rounds}  {name:28} {s.rate:9,.0f}/s{lat}  {s.status or ''}", flush=True)
    return out


# ---------------------------------------------------------------- load generators

@dataclass
class Keyspace:
    """Folder ids ``<prefix><n>`` for n < folders; Create the first time, then Update."""

    prefix: str
    folders: int
    created: set[int] = field(default_factory=set)
    versions: dict[int, int] = field(default_factory=dict)

    def pick(self, rng: random.Random) -> tuple[int, str, str, dict[str, Any]]:
        f = rng.randrange(self.folders)
        if f in self.created:
            return f, f"{self.prefix}{f}", "Update", {"name": f"n{rng.random()}"}
        return f, f"{self.prefix}{f}", "Create", {"name": "new"}


async def _loop(tasks: int, seconds: float, one: Callable[[random.Random, int], Awaitable[str]],
                latencies: list[float], status: dict[str, int]) -> float:
    end = time.monotonic() + seconds
    rng = random.Random(7)

    async def worker(w: int) -> None:
        while time.monotonic() < end:
            t0 = time.perf_counter()
            code = await one(rng, w)
            latencies.append(time.perf_counter() - t0)
            status[code] = status.get(code, 0) + 1

    t0 = time.monotonic()
    await asyncio.gather(*(worker(w) for w in range(tasks)))
    return time.monotonic() - t0


class RawConnection:
    """One keep-alive HTTP/1.1 connection written with asyncio streams.

    The load generator of every HTTP system: it costs about a tenth of a core at 2,400
    requests/s, where httpx's AsyncClient tops out near 100 requests/s with 64 concurrent
    requests on this machine (see bench/README.md), so httpx would measure itself.
    """

    def __init__(self, url: str, api_key: str | None = None) -> None:
        host, _, port = url.removeprefix("http://").rpartition(":")
        self.host, self.port = host, int(port)
        self.auth = f"authorization: Bearer {api_key}\r\n" if api_key else ""
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> int:
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        try:
            self.writer.write(f"POST {path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\n{self.auth}"
                              f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
                              .encode() + body)
            await self.writer.drain()
            head = (await self.reader.readuntil(b"\r\n\r\n")).lower()
            length = int(head.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
            await self.reader.readexactly(length)
        except (OSError, IndexError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            self.close()
            raise
        if b"connection: close" in head:
            self.close()
        return int(head[9:12])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def http_system(urls: list[str], space: Keyspace, client: str = "raw", api_key: str | None = None) -> Measure:
    """POST commands through the HTTP API with 64 concurrent clients; the rate counts 201s.
    ``api_key`` is sent by the raw client only (the A1 comparison uses it)."""
    async def measure(seconds: float) -> Sample:
        latencies: list[float] = []
        status: dict[str, int] = {}
        conns = [RawConnection(urls[w % len(urls)], api_key) for w in range(CLIENTS)]
        limits = httpx.Limits(max_connections=CLIENTS * 2, max_keepalive_connections=CLIENTS * 2)
        hx = httpx.AsyncClient(timeout=30, limits=limits) if client == "httpx" else None
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CLIENTS * 2),
                                        timeout=aiohttp.ClientTimeout(total=30)) if client == "aiohttp" else None

        async def one(rng: random.Random, w: int) -> str:
            f, rid, name, data = space.pick(rng)
            path = f"/v1/folders/{rid}/commands"
            try:
                if hx is not None:
                    code = (await hx.post(f"{urls[w % len(urls)]}{path}", json={"name": name, "data": data})
                            ).status_code
                elif session is not None:
                    async with session.post(f"{urls[w % len(urls)]}{path}", json={"name": name, "data": data}) as r:
                        await r.read()
                        code = r.status
                else:
                    body = json.dumps({"name": name, "data": data}).encode()
                    code = await asyncio.wait_for(conns[w].post(path, body), 30)
            except (httpx.HTTPError, aiohttp.ClientError, OSError, ValueError, IndexError,
                    asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as e:
                return type(e).__name__
            if code in (201, 409):
                space.created.add(f)
            return str(code)

        try:
            elapsed = await _loop(CLIENTS, seconds, one, latencies, status)
        finally:
            for c in conns:
                c.close()
            if hx is not None:
                await hx.aclose()
            if session is not None:
                await session.close()
        return sample(status.get("201", 0), elapsed, latencies, status)
    return measure


def core_system(writer: Any, space: Keyspace) -> Measure:
    """``Writer.execute`` in this process, no HTTP; the rate counts accepted commands."""
    async def measure(seconds: float) -> Sample:
        latencies: list[float] = []
        status: dict[str, int] = {}

        async def one(rng: random.Random, w: int) -> str:
            f, rid, name, data = space.pick(rng)
            try:
                await writer.execute(Request("folders", rid, name, data, None, new_command_id()))
            except FencedError as e:
                if e.status == 409:
                    space.created.add(f)
                return str(e.status)
            space.created.add(f)
            return "201"

        elapsed = await _loop(CLIENTS, seconds, one, latencies, status)
        return sample(status.get("201", 0), elapsed, latencies, status)
    return measure


def produce_system(producer: Any, topic: str, partitions: int, space: Keyspace) -> Measure:
    """Plain aiokafka: the writer's event records (same value and headers), send_and_wait each."""
    async def measure(seconds: float) -> Sample:
        latencies: list[float] = []
        status: dict[str, int] = {}

        async def one(rng: random.Random, w: int) -> str:
            f, rid, name, data = space.pick(rng)
            version = space.versions.get(f, 0) + 1
            space.versions[f] = version
            space.created.add(f)
            etype, payload = ("FolderCreated", {**data, "parent_id": None}) if name == "Create" else \
                ("FolderUpdated", data)
            headers = event_headers(source="/fenced", subject=rid, event_type=etype, version=version,
                                    token=(1 << 32) | 1, command=new_command_id(), index=0, count=1)
            await producer.send_and_wait(topic, encode_value(payload), key=rid.encode(), headers=headers,
                                         partition=partition_for(rid, partitions))
            return "ok"

        elapsed = await _loop(CLIENTS, seconds, one, latencies, status)
        return sample(status.get("ok", 0), elapsed, latencies, status)
    return measure


# ---------------------------------------------------------------- processes

@contextmanager
def uvicorn_servers(root: Path, name: str, app: str, count: int, env: dict[str, str]) -> Iterator[list[str]]:
    """``count`` uvicorn processes of ``app`` (a factory), 1 worker each, like ``fenced serve``."""
    procs: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        for i in range(count):
            port = free_port()
            logf = root / f"{name}-{i}.log"
            with logf.open("ab") as log:
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "uvicorn", app, "--factory", "--host", "127.0.0.1", "--port", str(port),
                     "--workers", "1", "--log-level", "warning", "--no-access-log"],
                    cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env}, stdout=log,
                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True))
            urls.append(f"http://127.0.0.1:{port}")
        for i, url in enumerate(urls):
            _wait_http(url, procs[i], root / f"{name}-{i}.log")
        yield urls
    finally:
        for p in procs:
            stop_process(p, timeout=15)


def _wait_http(url: str, proc: subprocess.Popen[bytes], logf: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"{url} exited with code {proc.returncode}:\n{tail(logf)}")
        try:
            if httpx.get(f"{url}/openapi.json", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise StackError(f"{url} did not answer in {timeout:.0f}s:\n{tail(logf)}")


def _settings(stack: Stack, **update: Any) -> Settings:
    return stack.settings.model_copy(update=update)


async def _topic_records(bootstrap: str, topic: str, partitions: int) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
        return int(sum(ends.values()))
    finally:
        await consumer.stop()


# ---------------------------------------------------------------- phases

async def phase_core(stacks: dict[str, Stack], args: argparse.Namespace) -> list[Ratio]:
    """P5: Writer.execute in-process per mode, and plain aiokafka produce of the same records."""
    from aiokafka import AIOKafkaProducer

    from service.infra.kafka import ensure_topics
    from service.runtime import Runtime

    any_stack = next(iter(stacks.values()))
    raw_settings = _settings(any_stack, topic_prefix=f"raw{uuid.uuid4().hex[:6]}.")
    await ensure_topics(raw_settings)
    producer = AIOKafkaProducer(bootstrap_servers=any_stack.kafka.bootstrap, acks="all",
                                enable_idempotence=True, linger_ms=0)
    runtimes = {mode: Runtime(s.settings) for mode, s in stacks.items()}
    try:
        await producer.start()
        for rt in runtimes.values():
            await rt.start()
        systems: dict[str, Measure] = {f"writer core {m}": core_system(rt.writer, Keyspace(f"c{m[0]}-", 10_000))
                                       for m, rt in runtimes.items()}
        systems["aiokafka produce"] = produce_system(producer, raw_settings.topic("folders"),
                                                     raw_settings.partitions, Keyspace("raw-", 10_000))
        res = await rotate(systems, args.rounds, args.seconds, args.warmup)
    finally:
        for rt in runtimes.values():
            await rt.stop()
        await producer.stop()
    return [Ratio("P5", f"writer core without HTTP, {m}", TARGETS["P5"], f"writer core ({m})",
                  "aiokafka produce (acks=all, idempotent, send_and_wait)", "accepted/s",
                  res[f"writer core {m}"], res["aiokafka produce"],
                  "commands of 1 event each; 64 tasks, uniform over 10k folders", "records/s")
            for m in runtimes]


async def fill(stack: Stack, want: int, cap_s: float) -> int:
    """Top the stack's topic up to ``want`` records through the writer core (untimed)."""
    from service.runtime import Runtime

    topic = stack.settings.topic("folders")
    have = await _topic_records(stack.kafka.bootstrap, topic, stack.settings.partitions)
    if have >= want:
        return have
    rt = Runtime(stack.settings)
    await rt.start()
    try:
        measure = core_system(rt.writer, Keyspace("fill-", 10_000))
        deadline = time.monotonic() + cap_s
        while have < want and time.monotonic() < deadline:
            s = await measure(5.0)
            have = await _topic_records(stack.kafka.bootstrap, topic, stack.settings.partitions)
            print(f"  fill: {have:,} records in {topic} (writer core {s.rate:,.0f}/s)", flush=True)
    finally:
        await rt.stop()
    return have


def rebuild_system(stack: Stack, records: int) -> Measure:
    """The real Projector, from offset 0 in a fresh Redis db and a new consumer group, until ready."""
    from service.read.projector import Projector

    async def measure(seconds: float) -> Sample:
        url = f"redis://127.0.0.1:{stack.redis.port}/{REBUILD_DB}"
        redis = aioredis.Redis.from_url(url)
        await redis.flushdb()
        settings = _settings(stack, redis_url=url, projector_group=f"bench-rebuild-{uuid.uuid4().hex[:8]}")
        projector = Projector(settings, redis, rebuild=True)
        stop = asyncio.Event()
        t0 = time.perf_counter()
        task = asyncio.create_task(projector.run(stop))
        try:
            while True:
                if task.done():
                    task.result()
                    raise RuntimeError("the projector stopped before it caught up")
                ready = await redis.hget("fenced:meta", "ready")
                if ready is not None and projector.epoch and int(ready) == projector.epoch:
                    break
                if time.perf_counter() - t0 > 600:
                    raise TimeoutError("the rebuild did not catch up in 600 s")
                await asyncio.sleep(0.01)
            elapsed = time.perf_counter() - t0
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
            await redis.aclose()
        n = projector.applied_records
        return sample(n, elapsed, [], {"records": n, **{k: v for k, v in projector.discards.items() if v}})
    return measure


def consume_system(bootstrap: str, topic: str, records: int) -> Measure:
    """Plain aiokafka: subscribe with a new group (like the projector) and read every record."""
    from aiokafka import AIOKafkaConsumer

    async def measure(seconds: float) -> Sample:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, group_id=f"bench-raw-{uuid.uuid4().hex[:8]}",
            enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_wait_ms=10,
            max_partition_fetch_bytes=4 * 1024 * 1024)
        t0 = time.perf_counter()
        await consumer.start()
        n = 0
        try:
            while n < records:
                batch = await consumer.getmany(timeout_ms=200, max_records=5000)
                n += sum(len(msgs) for msgs in batch.values())
                if time.perf_counter() - t0 > 600:
                    raise TimeoutError("the plain consumer did not finish in 600 s")
            elapsed = time.perf_counter() - t0
        finally:
            await consumer.stop()
        return sample(n, elapsed, [], {"records": n})
    return measure


async def phase_rebuild(stack: Stack, args: argparse.Namespace) -> list[Ratio]:
    """P4: fill the verified stack's topic, then rebuild vs plain consume, alternating."""
    topic = stack.settings.topic("folders")
    records = await fill(stack, args.rebuild_records, cap_s=120 if args.quick else 600)
    systems = {"projector rebuild": rebuild_system(stack, records),
               "aiokafka consume": consume_system(stack.kafka.bootstrap, topic, records)}
    res = await rotate(systems, args.rounds, 0, 0)
    return [Ratio("P4", "projector rebuild", TARGETS["P4"], "projector rebuild",
                  "aiokafka consume (new group, same fetch settings)", "records/s",
                  res["projector rebuild"], res["aiokafka consume"],
                  f"{records:,} records of {topic}, written by the writer; each timed from start "
                  "(group join included) to the end of the topic (projector: to ready)")]


# ---------------------------------------------------------------- the run

def http_phase(stacks: dict[str, Stack], noop: list[str], pg: list[str] | None, args: argparse.Namespace,
               secure: tuple[Stack, str] | None = None) -> list[Ratio]:
    """P1 (both modes, and in full mode 1k..1M folders), A1, P3 and P2, all through HTTP."""
    ratios: list[Ratio] = []

    def hs(urls: list[str], space: Keyspace) -> Measure:
        return http_system(urls, space, args.client)

    uniform = {m: Keyspace(f"u{m[0]}-", 10_000) for m in stacks}
    wanted = set(args.only)
    if "P1" in wanted:
        systems: dict[str, Measure] = {"no-op": hs(noop, Keyspace("n-", 10_000))}
        for m, st in stacks.items():
            systems[f"fenced {m} 10k"] = hs(st.urls, uniform[m])
        scale = [] if args.quick else [1_000, 100_000, 1_000_000]
        for n in scale:
            systems[f"fenced verified {n // 1000}k"] = hs(stacks["verified"].urls, Keyspace(f"s{n}-", n))
        print(f"P1: {', '.join(systems)}", flush=True)
        res = asyncio.run(rotate(systems, args.rounds, args.seconds, args.warmup))
        for m in stacks:
            ratios.append(Ratio("P1", f"http efficiency, {m}", TARGETS["P1"], f"fenced {m}", "no-op", "accepted/s",
                                res[f"fenced {m} 10k"], res["no-op"],
                                f"10k folders, 2 replicas, 64 clients; baseline: {NOOP}", "req/s"))
        for n in scale:
            label = f"{n // 1000}k" if n < 1_000_000 else "1M"
            ratios.append(Ratio("P1", f"http efficiency, verified, {label} folders", TARGETS["P1"],
                                "fenced verified", "no-op", "accepted/s", res[f"fenced verified {n // 1000}k"],
                                res["no-op"], "folder ids drawn from this many; not preloaded", "req/s"))
    if "A1" in wanted and secure is not None:
        systems = {"fenced verified": hs(stacks["verified"].urls, Keyspace("a-", 10_000)),
                   "fenced verified + keys": http_system(secure[0].urls, Keyspace("k-", 10_000), "raw", secure[1])}
        print(f"A1: {', '.join(systems)}", flush=True)
        res = asyncio.run(rotate(systems, args.rounds, args.seconds, args.warmup))
        ratios.append(Ratio("A1", "authentication + rate limit", TARGETS["A1"], "fenced verified, API key + "
                            "per-tenant rate limit", "fenced verified, FENCED_AUTH=off", "accepted/s",
                            res["fenced verified + keys"], res["fenced verified"],
                            "our own bar: the key check, tenant namespacing and the Redis-counted rate limit "
                            f"({A1_RATE_LIMIT or 'none'}, never reached) cost at most 10%"))
    if "P3" in wanted or "P2" in wanted:
        st = stacks["verified"]
        systems = {"fenced uniform": hs(st.urls, uniform["verified"]),
                   "fenced hot": hs(st.urls, Keyspace("h-", HOT_FOLDERS))}
        if pg is not None and "P2" in wanted:
            systems["postgres uniform"] = hs(pg, Keyspace("u-", 10_000))
            systems["postgres hot"] = hs(pg, Keyspace("h-", HOT_FOLDERS))
        print(f"P3/P2: {', '.join(systems)}", flush=True)
        res = asyncio.run(rotate(systems, args.rounds, args.seconds, args.warmup))
        if "P3" in wanted:
            ratios.append(Ratio("P3", "hot / uniform, verified", TARGETS["P3"], "fenced hot (3 folders)",
                                "fenced uniform (10k)", "accepted/s", res["fenced hot"], res["fenced uniform"]))
        if "postgres uniform" in res:
            note = ("fenced / postgres, higher is better. Durability differs: postgres fsyncs its WAL before "
                    "each commit (synchronous_commit=on); fenced's 201 waits for acks=all on a single broker "
                    "with replication factor 1 and no fsync (Kafka relies on replication)")
            for scen in ("uniform", "hot"):
                ratios.append(Ratio("P2", f"postgres {scen}", TARGETS[f"P2 {scen}"], f"fenced verified {scen}",
                                    f"postgres {scen}", "accepted/s", res[f"fenced {scen}"],
                                    res[f"postgres {scen}"], note))
    return ratios


def chart(ratios: list[Ratio], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.key} {r.name}" for r in ratios]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(ratios) + 1.6))
    y = list(range(len(ratios)))[::-1]
    values = [r.value if r.value == r.value else 0.0 for r in ratios]  # NaN (no baseline) draws as nothing
    lo = min([v for v in values if v > 0] + [r.target for r in ratios]) / 3
    ax.set_xscale("log")  # targets run from 0.25 to 5
    ax.barh(y, [max(v - lo, 0) for v in values], left=lo,
            color=["#2e7d32" if v >= r.target else "#c62828" for v, r in zip(values, ratios, strict=True)])
    ax.scatter([r.target for r in ratios], y, marker="|", s=400, color="black", zorder=3, label="target")
    for yi, v in zip(y, values, strict=True):
        ax.text(max(v, lo), yi, f" {v:.2f}", va="center", fontsize=8)
    ax.set_xlim(lo, max(values + [r.target for r in ratios]) * 2)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("ratio of medians, system / baseline (log scale); green: target met, |: target")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="fenced-bench-"))
    ratios: list[Ratio] = []
    notes: list[str] = []
    env = {"FENCED_LEASE_TTL_MS": "5000", "FENCED_PARTITIONS": "12", "FENCED_FAULT_INJECTION": "false"}
    try:
        with ExitStack() as cleanup:  # stops every process in reverse order, also on failure or Ctrl-C
            print(f"starting Kafka, Redis and 2 fenced stacks (verified, leased) under {root} ...", flush=True)
            kafka, redis = cleanup.enter_context(servers(root))
            stacks: dict[str, Stack] = {}
            secure: tuple[Stack, str] | None = None
            for mode in ("verified", "leased"):
                stack = Stack(root / "stacks", kafka, redis, ack_mode=mode, extra_env=env)
                cleanup.callback(stack.stop)
                stacks[mode] = stack.start()
            if "A1" in args.only:  # authentication on, and a rate limit high enough never to bite
                keys = root / "api-keys"
                key = create_key(keys, "bench", frozenset({"read", "write"}), "bench")
                stack = Stack(root / "stacks", kafka, redis, extra_env={
                    **env, "FENCED_AUTH": "keys", "FENCED_API_KEYS_FILE": str(keys),
                    "FENCED_RATE_LIMIT": A1_RATE_LIMIT})
                cleanup.callback(stack.stop)
                secure = (stack.start(), key)
            noop = cleanup.enter_context(uvicorn_servers(root, "noop", "bench.run:noop_app", 2, {}))
            warm = {mode: http_system(st.urls, Keyspace("w-", 10_000), args.client) for mode, st in stacks.items()}
            if secure is not None:
                warm["keys"] = http_system(secure[0].urls, Keyspace("w-", 10_000), "raw", secure[1])
            for mode, system in warm.items():  # the broker's JIT and caches warm up before any window counts
                w = asyncio.run(system(args.stack_warmup))
                print(f"  warm-up {mode}: {w.rate:,.0f} accepted/s over {args.stack_warmup:g} s (not counted)",
                      flush=True)
            pg_urls: list[str] | None = None
            if "P2" in args.only:
                try:
                    pg_urls = cleanup.enter_context(start_postgres(root))
                except Exception as e:  # noqa: BLE001 - any failure is reported as "not measured"
                    notes.append(f"P2 postgres: not measured ({type(e).__name__}: {str(e).strip()[:300]})")
            ratios += http_phase(stacks, noop, pg_urls, args, secure)
            if "P5" in args.only:
                print("P5: writer core vs aiokafka produce", flush=True)
                ratios += asyncio.run(phase_core(stacks, args))
            if "P4" in args.only:
                print("P4: projector rebuild vs aiokafka consume", flush=True)
                ratios += asyncio.run(phase_rebuild(stacks["verified"], args))
            if not args.quick and "P1" in args.only:
                rate = next((r.sut_rate for r in ratios if r.name.endswith("1M folders")), 0.0)
                notes.append(f"P1 at 1M folders: ids drawn from 1M, but a round writes only a few thousand of "
                             f"them; 1M live folders were not preloaded (about {1e6 / max(rate, 1) / 60:.0f} min "
                             f"at the {rate:.0f} writes/s measured)")
            elif args.quick:
                notes.append("P1 scaling over 1k..1M folders: skipped in --quick")
    except BaseException:
        print(f"bench failed; its logs are kept under {root}", file=sys.stderr)
        raise
    shutil.rmtree(root, ignore_errors=True)
    return {"ratios": ratios, "notes": notes}


@contextmanager
def start_postgres(root: Path) -> Iterator[list[str]]:
    from bench.pg import PgCluster

    cluster = PgCluster(free_port())
    try:
        cluster.start()
        asyncio.run(cluster.create_schema())
        with uvicorn_servers(root, "pg", "bench.pg:create_app", 2,
                             {"BENCH_PG_DSN": cluster.dsn, "BENCH_PG_POOL": "32"}) as urls:
            yield urls
    finally:
        cluster.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 rounds of 4 s, 20k records for P4, no scaling")
    ap.add_argument("--rounds", type=int, default=None, help="rounds per comparison (default 3; quick 2)")
    ap.add_argument("--seconds", type=float, default=None, help="length of one window (default 8; quick 4)")
    ap.add_argument("--rebuild-records", type=int, default=None, help="records in P4's topic (default 50k; quick 20k)")
    ap.add_argument("--only", default="P1,P2,P3,P4,P5,A1", help="comma-separated subset, e.g. P1,P4")
    ap.add_argument("--client", choices=("raw", "aiohttp", "httpx"), default="raw",
                    help="HTTP load generator: asyncio keep-alive connections (default), aiohttp or httpx")
    ap.add_argument("--out", type=Path, default=Path("out/bench"))
    args = ap.parse_args(argv)
    args.rounds = args.rounds or (2 if args.quick else 3)
    args.seconds = args.seconds or (4.0 if args.quick else 8.0)
    args.warmup = 1.0
    args.stack_warmup = 5.0 if args.quick else 15.0
    args.rebuild_records = args.rebuild_records or (20_000 if args.quick else 50_000)
    args.only = [p.strip().upper() for p in args.only.split(",") if p.strip()]
    for name in ("fenced", "aiokafka", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    started = time.monotonic()
    result = run(args)
    ratios: list[Ratio] = result["ratios"]
    order = {k: i for i, k in enumerate(("P1", "P2", "P3", "P4", "P5", "A1"))}
    ratios.sort(key=lambda r: order[r.key])
    machine = f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, {platform.platform()}"
    command = "python -m bench.run" + (" --quick" if args.quick else "")
    print(f"\n== fenced bench: {command}; {args.rounds} rounds of {args.seconds:g} s; {machine}; "
          f"{time.monotonic() - started:.0f} s ==")
    for r in ratios:
        print(r.line())
    for n in result["notes"]:
        print(n)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"command": command, "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "machine": machine, "cpus": os.cpu_count(), "clients": CLIENTS,
              "ratios": [r.to_json() for r in ratios], "notes": result["notes"],
              "seconds_total": round(time.monotonic() - started, 1)}
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    if ratios:
        chart(ratios, args.out / "ratios.png", f"{command} ({args.rounds} rounds of {args.seconds:g} s, {machine})")
    print(f"saved {args.out / 'report.json'} and {args.out / 'ratios.png'}")


if __name__ == "__main__":
    main()
