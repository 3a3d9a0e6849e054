"""The chaos runner: a private stack, concurrent clients, a seeded fault schedule, a check.

Topology: clients -> 2 API replicas -> (TCP proxy) -> Kafka broker, and -> (TCP proxy) ->
Redis primary with a replica (for the failover fault). The projector reads through the
same proxies. Faults are injected one at a time, each healed before the next; a quiet
phase ends the run, then the checker replays the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import signal
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis.asyncio as aioredis

from chaos.checker import CheckResult, TopicLog, check, read_records
from chaos.history import FaultEvent, History, Op
from chaos.proxy import Proxy
from chaos.workload import append, folder_client, new_events, open_client, open_racer, send
from devstack import KafkaBroker, RedisServer
from devstack.proc import free_port
from devstack.stack import Stack
from service.read.projection import applied_key

FAULTS = ("pause", "zombie", "zombie-open", "kill-writer", "kafka-kill", "kafka-restart", "redis-wipe",
          "redis-failover", "projector-kill", "slow", "reset")


@dataclass
class ChaosConfig:
    duration: float = 60.0
    seed: int = 1
    faults: tuple[str, ...] = FAULTS
    ack_mode: str = "verified"
    folders: int = 60
    hot: int = 3
    clients: int = 12
    open_type: str = "ledger"
    """The open type served next to folders (FENCED_OPEN_TYPES); its streams get appends and reads
    ("": folders only, no open-stream clients, no zombie-open)."""
    ledgers: int = 30
    open_clients: int = 5
    racers: int = 2
    """Pairs of clients that append to one open stream at once, with one expected version."""
    quiet: float = 8.0
    lease_ttl_ms: int = 1500
    unsafe_ack_on_append: bool = False
    unsafe_early_rejections: bool = False
    batch_wait_ms: int = 10
    """A batch waits this long for more commands once it holds the lease (group commit gets more to do)."""
    root: Path | None = None
    shuffle: bool = True
    """Inject the faults in an order drawn from the seed (else in the order given)."""


@dataclass
class ChaosRun:
    config: ChaosConfig
    history: History
    result: CheckResult
    records: list[TopicLog] = field(default_factory=list)
    """Each topic's records as the two replays read them (for checks of broken consumers)."""
    fault_counts: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    batching: dict[str, int] = field(default_factory=dict)
    """Batches and batched commands of the replicas alive at the end (group commit was on)."""


class Cluster:
    """The stack under test, with handles to hurt it."""

    def __init__(self, cfg: ChaosConfig, root: Path) -> None:
        self.cfg = cfg
        self.root = root
        self.kafka_port, self.kafka_proxy_port = free_port(), free_port()
        self.kafka = KafkaBroker(root / "kafka", port=self.kafka_port, controller_port=free_port(),
                                 advertised_port=self.kafka_proxy_port)
        self.kafka_proxy = Proxy(self.kafka_proxy_port, self.kafka_port)
        ports = free_port(), free_port()
        self.primary = RedisServer(root / "redis-a", port=ports[0], appendfsync="always")
        self.replica = RedisServer(root / "redis-b", port=ports[1], replicaof=ports[0])
        self.redis_proxy_port = free_port()
        self.redis_proxy = Proxy(self.redis_proxy_port, ports[0])
        env = {"FENCED_KAFKA_BOOTSTRAP": f"127.0.0.1:{self.kafka_proxy_port}",
               "FENCED_REDIS_URL": f"redis://127.0.0.1:{self.redis_proxy_port}/0",
               "FENCED_LEASE_TTL_MS": str(cfg.lease_ttl_ms), "FENCED_REQUEST_DEADLINE_MS": "8000",
               "FENCED_UNSAFE_ACK_ON_APPEND": "true" if cfg.unsafe_ack_on_append else "false",
               "FENCED_UNSAFE_EARLY_REJECTIONS": "true" if cfg.unsafe_early_rejections else "false",
               "FENCED_BATCH_WAIT_MS": str(cfg.batch_wait_ms),
               "FENCED_PROJECTOR_GROUP": "chaos-projector", "FENCED_OPEN_TYPES": cfg.open_type}
        self.stack = Stack(root / "stack", self.kafka, self.primary, ack_mode=cfg.ack_mode, extra_env=env)
        self.ports: dict[str, int] = {}

    def start(self) -> None:
        self.kafka_proxy.start()
        self.kafka.start()
        self.primary.start()
        self.replica.start()
        self.redis_proxy.start()
        self.stack.start()
        for i, url in enumerate(self.stack.urls):
            self.ports[f"api-{i}"] = int(url.rsplit(":", 1)[1])

    def stop(self) -> None:
        for step in (self.stack.stop, self.redis_proxy.stop, self.replica.stop, self.primary.stop,
                     self.kafka.stop, self.kafka_proxy.stop):
            with contextlib.suppress(Exception):
                step()

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.primary.port}/0"

    def restart_api(self, name: str) -> None:
        self.stack.services.start_api(name, self.ports[name])

    def redis_wipe(self) -> None:
        self.primary.restart_empty()

    def redis_failover(self) -> None:
        """Promote a replica that missed the last second of writes, behind the same address."""
        self.freeze_replica()
        time.sleep(1.0)  # writes the replica will never see
        self.promote_replica()

    def freeze_replica(self) -> None:
        """Cut the replica off the primary: from now on it misses every write.

        (A SIGSTOP is not enough: the kernel keeps buffering the replication stream, and the
        replica catches up as soon as it runs again.)"""
        import redis as syncredis

        client = syncredis.Redis(port=self.replica.port)
        client.replicaof("NO", "ONE")
        client.close()

    def promote_replica(self) -> None:
        """Kill the primary and send every client to the cut-off replica: it lacks what it missed."""
        old, new = self.primary, self.replica
        old.kill()
        new.replicaof = None  # it is the primary now, also when it restarts
        self.redis_proxy.retarget(new.port)
        shutil.rmtree(old.root, ignore_errors=True)
        self.primary, self.replica = new, RedisServer(old.root, port=old.port, replicaof=new.port)
        self.replica.start()


async def inject(kind: str, cluster: Cluster, history: History, rng: random.Random,
                 state: dict[str, str], http: httpx.AsyncClient) -> None:
    services = cluster.stack.services
    ttl = cluster.cfg.lease_ttl_ms / 1000
    ev = FaultEvent(kind, time.monotonic() - history.t0)
    history.faults.append(ev)
    if kind == "pause":
        name = f"api-{rng.randrange(2)}"
        services.signal(name, signal.SIGSTOP)
        await asyncio.sleep(ttl + 1)
        services.signal(name, signal.SIGCONT)
        ev.detail = name
    elif kind in ("zombie", "zombie-open"):
        await _zombie(kind, cluster, history, rng, state, http, ev)
    elif kind == "kill-writer":
        name = f"api-{rng.randrange(2)}"
        await asyncio.sleep(rng.random())
        services.kill(name)
        await asyncio.sleep(1)
        await asyncio.to_thread(cluster.restart_api, name)
        ev.detail = name
    elif kind == "kafka-kill":
        await asyncio.to_thread(cluster.kafka.restart, hard=True)
    elif kind == "kafka-restart":
        await asyncio.to_thread(cluster.kafka.restart)
    elif kind == "redis-wipe":
        await asyncio.to_thread(cluster.redis_wipe)
    elif kind == "redis-failover":
        await asyncio.to_thread(cluster.redis_failover)
    elif kind == "projector-kill":
        services.kill("projector")
        await asyncio.sleep(1)
        services.start_projector()
    elif kind == "slow":
        proxy = rng.choice([cluster.kafka_proxy, cluster.redis_proxy])
        proxy.slow(rng.choice([0.05, 0.2]))
        await asyncio.sleep(3)
        proxy.slow(0)
    elif kind == "reset":
        cluster.kafka_proxy.reset(refuse_s=1)
        cluster.redis_proxy.reset(refuse_s=1)
        await asyncio.sleep(1)
    else:
        raise ValueError(f"unknown fault {kind!r}: choose from {', '.join(FAULTS)}")
    ev.end = time.monotonic() - history.t0


async def _zombie(kind: str, cluster: Cluster, history: History, rng: random.Random, state: dict[str, str],
                  http: httpx.AsyncClient, ev: FaultEvent) -> None:
    """A write that takes the lease and stops before its append, on a folder (``zombie``) or on an
    open stream (``zombie-open``: an append of two events), and writes queued behind it."""
    services = cluster.stack.services
    ttl = cluster.cfg.lease_ttl_ms / 1000
    i = rng.randrange(2)
    key = uuid.uuid4().hex
    stream = f"zombie-{uuid.uuid4().hex[:6]}"
    follows: list[asyncio.Task[Op]] = []
    if kind == "zombie":
        await send(cluster, history, rng, stream, "Create", {"name": "z"}, state, http, replica=1 - i)
        task = asyncio.create_task(send(cluster, history, rng, stream, "Update", {"name": "late"}, state, http,
                                        replica=i, zombie=True, key=key))
        # queued behind the zombie, so decided after it in the same batch: refused as existing, they
        # rest on the zombie's append, which will be discarded (S7 checks when they are answered);
        # three, a few ms apart, so that one at least is in the zombie's batch (it waits 10 ms for more)
        for _ in range(3):
            await asyncio.sleep(0.003)
            follows.append(asyncio.create_task(send(cluster, history, rng, stream, "Create", {"name": "z"}, state,
                                                    http, replica=i)))
    else:
        await append(cluster, history, rng, stream, new_events(rng, 1), "no_stream", http, replica=1 - i)
        task = asyncio.create_task(append(cluster, history, rng, stream, new_events(rng, 2), 1, http, replica=i,
                                          zombie=True, key=key))
        # the same for an open stream: refused (409) at the version the zombie's two events would make
        for _ in range(3):
            await asyncio.sleep(0.003)
            follows.append(asyncio.create_task(append(cluster, history, rng, stream, new_events(rng, 1), "no_stream",
                                                      http, replica=i)))
    r = aioredis.Redis.from_url(f"redis://127.0.0.1:{cluster.redis_proxy_port}/0")
    try:
        until = time.monotonic() + 30
        while time.monotonic() < until and not task.done():
            with contextlib.suppress(Exception):
                if await r.get(f"fenced:fault:{key}"):
                    ev.detail = "paused before its append"
                    break
            await asyncio.sleep(0.02)
        services.signal(f"api-{i}", signal.SIGSTOP)
        with contextlib.suppress(Exception):  # the handshake: the writer goes on when it wakes
            await r.delete(f"fenced:fault:{key}")
    finally:
        await r.aclose()
    await asyncio.sleep(ttl + 0.7)
    # the other replica takes over: it fences, then refuses (409); the zombie's append lands after
    if kind == "zombie":
        await send(cluster, history, rng, stream, "Create", {"name": "again"}, state, http, replica=1 - i)
    else:
        await append(cluster, history, rng, stream, new_events(rng, 1), "no_stream", http, replica=1 - i)
    services.signal(f"api-{i}", signal.SIGCONT)
    await task
    await asyncio.gather(*follows)
    ev.detail = f"api-{i} on {stream}: {ev.detail or 'never reached the pause point'}"


FAULT_EVERY_S = 8.0
"""A long run injects a fault about this often: every kind once first, then drawn at random."""


def schedule(cfg: ChaosConfig) -> list[str]:
    rng = random.Random(cfg.seed)
    faults = [k for k in cfg.faults if cfg.open_type or k != "zombie-open"]  # no open type: no open zombie
    kinds = list(faults)
    if cfg.shuffle:
        rng.shuffle(kinds)
    extra = int(max(cfg.duration - cfg.quiet, 0) / FAULT_EVERY_S) - len(kinds)
    return kinds + [rng.choice(faults) for _ in range(max(extra, 0))]


def _types(cfg: ChaosConfig) -> list[str]:
    return ["folders", *([cfg.open_type] if cfg.open_type else [])]


async def _wait_caught_up(cluster: Cluster, timeout: float = 90) -> None:
    """Wait until the projector applied every record of the topics (or give up at the timeout)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    topics = [cluster.stack.settings.topic(t) for t in _types(cluster.cfg)]
    consumer = AIOKafkaConsumer(bootstrap_servers=cluster.kafka.bootstrap)
    await consumer.start()
    r = aioredis.Redis.from_url(f"redis://127.0.0.1:{cluster.redis_proxy_port}/0")
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(cluster.stack.settings.partitions)]
        ends = await consumer.end_offsets(tps)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            applied = {(t, int(k)): int(v) for t in topics for k, v in (await r.hgetall(applied_key(t))).items()}
            if all(applied.get((tp.topic, tp.partition), -1) >= ends[tp] - 1 for tp in tps):
                return
            await asyncio.sleep(0.3)
    finally:
        await consumer.stop()
        await r.aclose()


async def _projection(cluster: Cluster) -> dict[str, tuple[int, int]]:
    """(version, max token) of every stream the projection holds, by ``type:stream``."""
    from fenced_client.rule import StreamState
    r = aioredis.Redis.from_url(f"redis://127.0.0.1:{cluster.redis_proxy_port}/0")
    out: dict[str, tuple[int, int]] = {}
    try:
        for t in _types(cluster.cfg):
            async for key in r.scan_iter(match=f"fenced:{{{t}:*}}:proj", count=1000):
                data = await r.hget(key, "data")
                if data is not None:
                    st = StreamState.from_json(data)
                    out[key.decode()[len("fenced:{"):-len("}:proj")]] = (st.version, st.max_token)
    finally:
        await r.aclose()
    return out


async def _drive(cfg: ChaosConfig, cluster: Cluster, history: History) -> dict[str, float]:
    rng = random.Random(cfg.seed)
    stop = asyncio.Event()
    state: dict[str, str] = {}
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(timeout=20, limits=limits) as http:
        clients = [asyncio.create_task(folder_client(cfg, cluster, history, random.Random(cfg.seed * 1000 + i),
                                                     stop, state, http, i)) for i in range(cfg.clients)]
        if cfg.open_type:
            n = cfg.clients
            clients += [asyncio.create_task(open_client(cfg, cluster, history, random.Random(cfg.seed * 1000 + n + i),
                                                        stop, http, n + i)) for i in range(cfg.open_clients)]
            n += cfg.open_clients
            clients += [asyncio.create_task(open_racer(cfg, cluster, history, random.Random(cfg.seed * 1000 + n + i),
                                                       stop, http, (n + 2 * i, n + 2 * i + 1)))
                        for i in range(cfg.racers)]
        kinds = schedule(cfg)
        fault_phase = max(cfg.duration - cfg.quiet, 1)
        gap = fault_phase / max(len(kinds), 1)
        for kind in kinds:
            started = time.monotonic()
            await inject(kind, cluster, history, rng, state, http)
            await asyncio.sleep(max(gap - (time.monotonic() - started), 0.5))
        await asyncio.sleep(cfg.quiet)
        stop.set()
        await asyncio.gather(*clients)
    return {}


def run(cfg: ChaosConfig) -> ChaosRun:
    root = cfg.root or Path(tempfile.mkdtemp(prefix="fenced-chaos-"))
    cluster = Cluster(cfg, root)
    history = History(t0=time.monotonic())
    logs: list[TopicLog] = []
    try:
        cluster.start()
        history.t0 = time.monotonic()
        asyncio.run(_drive(cfg, cluster, history))
        asyncio.run(_wait_caught_up(cluster))
        batching = _batching(cluster)
        projection = asyncio.run(_projection(cluster))
        parts = cluster.stack.settings.partitions
        for t in _types(cfg):
            topic = cluster.stack.settings.topic(t)
            a, b = (asyncio.run(read_records(cluster.kafka.bootstrap, topic, parts, group=g)) for g in (False, True))
            logs.append(TopicLog(t, topic, a, b, is_open=t == cfg.open_type))
    finally:
        cluster.stop()
    result = check(history, logs, projection, visualize=root / "s7")
    counts: dict[str, int] = {}
    for f in history.faults:
        counts[f.kind] = counts.get(f.kind, 0) + 1
    return ChaosRun(cfg, history, result, logs, counts, batching=batching)


def _batching(cluster: Cluster) -> dict[str, int]:
    """Sum the writer's batch counters over the replicas' /metrics (those alive now)."""
    out = {"batches": 0, "batched_commands": 0}
    for url in cluster.stack.urls:
        try:
            text = httpx.get(f"{url}/metrics", timeout=5).text
        except httpx.HTTPError:
            continue
        for line in text.splitlines():
            for name in out:
                if line.startswith(f"fenced_writer_{name}_total "):
                    out[name] += int(float(line.split()[1]))
    return out
