"""What the chaos clients send: folder commands and reads, and appends to and reads of open streams.

Every request is recorded in the history as an :class:`~chaos.history.Op` with what the client
was told. Folder clients send Create / Update / Destroy (now and then with an expected version
or data the decider refuses) and read; they race on folders that are new every few seconds.
Open-stream clients append 1-3 events with every kind of expected version (the exact version
they last heard of, a stale one, ``any``, none, ``no_stream``, ``exists``), read, and retry an
append whose outcome is unknown with the same Idempotency-Key. Racers send two appends with the
same exact expected version to one stream through the two replicas at once.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from typing import TYPE_CHECKING, Any

import httpx

from chaos.history import History, Op, classify

if TYPE_CHECKING:
    from chaos.runner import ChaosConfig, Cluster

RACE_PERIOD_S = 3.0
"""Race folders are new every this many seconds: clients Create, Update and Destroy them at once."""
RETRIES = 3
"""Times an open-stream client resends an append whose outcome is unknown (same key, same body)."""
EVENT_TYPES = ("Credited", "Debited", "Noted")


async def folder_client(cfg: ChaosConfig, cluster: Cluster, history: History, rng: random.Random,
                        stop: asyncio.Event, state: dict[str, str], http: httpx.AsyncClient, client: int = -1) -> None:
    seen: dict[str, int] = {}  # the last version this client was told of, per folder
    while not stop.is_set():
        pick = rng.random()
        race = pick < 0.15
        if race:
            f = f"r-{int((time.monotonic() - history.t0) / RACE_PERIOD_S)}-{rng.randrange(2)}"
        else:
            f = f"hot-{rng.randrange(cfg.hot)}" if pick < 0.55 else f"f-{rng.randrange(cfg.folders)}"
        known = state.get(f, "new")
        data: dict[str, Any] = {}
        if rng.random() < 0.2:
            name = "Get"
        elif known == "new":
            name, data = "Create", {"name": f}
        elif race:
            name = rng.choice(["Create", "Update", "Update", "Destroy"])
        elif rng.random() < 0.03 and not f.startswith("hot-"):
            name = "Destroy"
        else:
            name = "Update"
        if name in ("Create", "Update"):
            # now and then a name the decider refuses (422, at the current version)
            data = {"name": "" if rng.random() < 0.02 else (f if name == "Create" else uuid.uuid4().hex[:6])}
        expected = seen.get(f) if name != "Get" and rng.random() < 0.3 else None
        op = await send(cluster, history, rng, f, name, data, state, http, expected_version=expected, client=client)
        for v in (op.version, op.current_version):
            if v is not None:
                seen[f] = v
        if op.status in (404, 409, 410, 422) and name != "Get" and rng.random() < 0.5:
            # a read right after a rejection: it must not show less than the rejection did
            await send(cluster, history, rng, f, "Get", {}, state, http, client=client)


async def send(cluster: Cluster, history: History, rng: random.Random, folder: str, name: str,
               data: dict[str, Any], state: dict[str, str], http: httpx.AsyncClient, *,
               replica: int | None = None, zombie: bool = False, key: str | None = None,
               expected_version: int | None = None, client: int = -1, resource_type: str = "folders") -> Op:
    """Send one command (or a read, ``name == "Get"``, of any type) and record it in the history."""
    urls = cluster.stack.urls
    url = urls[replica if replica is not None else rng.randrange(len(urls))]
    op = Op(len(history.ops), folder, name, key or uuid.uuid4().hex, time.monotonic() - history.t0, zombie=zombie,
            expected_version=expected_version, valid=name not in ("Create", "Update") or bool(data.get("name")),
            client=client, type=resource_type)
    history.ops.append(op)
    headers = {"Idempotency-Key": op.key}
    if zombie:
        headers["X-Fenced-Fault"] = "pause-before-append"
    status: int | None = None
    body: dict[str, Any] | None = None
    try:
        if name == "Get":
            r = await http.get(f"{url}/v1/{resource_type}/{folder}")
        else:
            command: dict[str, Any] = {"name": name, "data": data}
            if expected_version is not None:
                command["expected_version"] = expected_version
            r = await http.post(f"{url}/v1/folders/{folder}/commands", json=command, headers=headers)
        status = r.status_code
        body = r.json()
    except (httpx.HTTPError, ValueError) as e:
        op.detail = type(e).__name__
    op.complete = time.monotonic() - history.t0
    op.status = status
    if name == "Get":
        op.outcome = "ok" if status in (200, 404) else "unknown"
        if status == 200 and body is not None:
            op.version, op.destroyed = body["version"], body["destroyed"]
        elif body is not None:
            op.detail = str(body.get("detail", ""))[:200]
        return op
    op.outcome = classify(status, body)
    if status == 201 and body is not None:
        op.version = body["version"]
        op.offsets = [e["offset"] for e in body["events"]]
        state[folder] = "destroyed" if name == "Destroy" else "exists"
    else:
        if body is not None:
            op.detail = str(body.get("detail", ""))[:200]
            op.current_version = body.get("current_version")
        if status == 409 and name == "Create":
            state[folder] = "exists"
        elif status == 410:
            state[folder] = "destroyed"
    return op


def new_events(rng: random.Random, n: int | None = None) -> list[dict[str, Any]]:
    """1-3 events (``n`` if given); some carry a client-chosen id."""
    out: list[dict[str, Any]] = []
    for _ in range(n if n is not None else rng.randint(1, 3)):
        e: dict[str, Any] = {"type": rng.choice(EVENT_TYPES), "data": {"cents": rng.randrange(1, 1000)}}
        if rng.random() < 0.3:
            e["id"] = uuid.uuid4().hex
        out.append(e)
    return out


async def append(cluster: Cluster, history: History, rng: random.Random, stream: str,
                 events: list[dict[str, Any]], expected: int | str | None, http: httpx.AsyncClient, *,
                 replica: int | None = None, zombie: bool = False, key: str | None = None, client: int = -1,
                 race: str = "", retries: int = 0) -> Op:
    """Append ``events`` to an open stream and record it; after an unknown outcome, send the same
    body with the same Idempotency-Key again (up to ``retries`` times, through either replica).
    Returns the last attempt."""
    key = key or uuid.uuid4().hex
    attempt = 0
    while True:
        op = await _append_once(cluster, history, rng, stream, events, expected, http, key=key, attempt=attempt,
                                replica=replica if attempt == 0 else None, zombie=zombie, client=client, race=race)
        if op.outcome != "unknown" or attempt >= retries:
            return op
        attempt += 1
        await asyncio.sleep(0.2 * 2 ** attempt * (0.5 + rng.random()))


async def _append_once(cluster: Cluster, history: History, rng: random.Random, stream: str,
                       events: list[dict[str, Any]], expected: int | str | None, http: httpx.AsyncClient, *,
                       key: str, attempt: int, replica: int | None, zombie: bool, client: int, race: str) -> Op:
    urls = cluster.stack.urls
    url = urls[replica if replica is not None else rng.randrange(len(urls))]
    rtype = cluster.cfg.open_type
    op = Op(len(history.ops), stream, "Append", key, time.monotonic() - history.t0, zombie=zombie,
            expected_version=expected, client=client, type=rtype, events=[e["type"] for e in events],
            attempt=attempt, race=race)
    history.ops.append(op)
    headers = {"Idempotency-Key": key}
    if zombie:
        headers["X-Fenced-Fault"] = "pause-before-append"
    body: dict[str, Any] = {"events": events}
    if expected is not None:
        body["expected_version"] = expected
    answer: dict[str, Any] | None = None
    try:
        r = await http.post(f"{url}/v1/{rtype}/{stream}/events", json=body, headers=headers)
        op.status = r.status_code
        answer = r.json()
    except (httpx.HTTPError, ValueError) as e:
        op.detail = type(e).__name__
    op.complete = time.monotonic() - history.t0
    op.outcome = classify(op.status, answer)
    if op.status == 201 and answer is not None:
        op.version = answer["version"]
        op.offsets = [e["offset"] for e in answer["events"]]
    elif answer is not None:
        op.detail = str(answer.get("detail", ""))[:200]
        op.current_version = answer.get("current_version")
    return op


def _expectation(rng: random.Random, known: int | None) -> int | str | None:
    """An expected version: mostly the exact one last heard of, else every other kind."""
    pick = rng.random()
    if pick < 0.4:
        return known if known is not None else 0
    if pick < 0.5:
        return max((known or 0) - 1, 0)  # likely stale
    if pick < 0.65:
        return "any"
    if pick < 0.75:
        return None  # the same as any
    return "exists" if pick < 0.88 else "no_stream"


async def open_client(cfg: ChaosConfig, cluster: Cluster, history: History, rng: random.Random,
                      stop: asyncio.Event, http: httpx.AsyncClient, client: int) -> None:
    """Appends to and reads of open streams: two hot ones and ``cfg.ledgers`` others."""
    seen: dict[str, int] = {}  # the last version this client heard of, per stream
    while not stop.is_set():
        s = f"lhot-{rng.randrange(2)}" if rng.random() < 0.4 else f"l-{rng.randrange(cfg.ledgers)}"
        if rng.random() < 0.2:
            op = await send(cluster, history, rng, s, "Get", {}, {}, http, client=client,
                            resource_type=cfg.open_type)
        else:
            op = await append(cluster, history, rng, s, new_events(rng), _expectation(rng, seen.get(s)), http,
                              client=client, retries=RETRIES)
        for v in (op.version, op.current_version, 0 if op.is_read and op.status == 404 else None):
            if v is not None:
                seen[s] = v
        if op.status == 409:
            if rng.random() < 0.5:  # read, then append at what was read: optimistic concurrency
                got = await send(cluster, history, rng, s, "Get", {}, {}, http, client=client,
                                 resource_type=cfg.open_type)
                if got.status in (200, 404):
                    seen[s] = got.version or 0
            if rng.random() < 0.5:
                await append(cluster, history, rng, s, new_events(rng), seen.get(s, 0), http, client=client,
                             retries=RETRIES)


async def open_racer(cfg: ChaosConfig, cluster: Cluster, history: History, rng: random.Random,
                     stop: asyncio.Event, http: httpx.AsyncClient, clients: tuple[int, int]) -> None:
    """Two clients that append to one stream at once, with the same exact expected version, one
    through each replica: at most one may be told 201, the other must hear 409 at the winner's version."""
    a, b = clients
    n = 0
    while not stop.is_set():
        n += 1
        race = f"{a}-{n}"
        expected: int | str
        if rng.random() < 0.25:  # a stream neither has seen: both expect it not to exist
            s, expected = f"lnew-{a}-{n}", "no_stream" if rng.random() < 0.5 else 0
        else:
            s = f"lrace-{rng.randrange(3)}" if rng.random() < 0.7 else f"l-{rng.randrange(cfg.ledgers)}"
            got = await send(cluster, history, rng, s, "Get", {}, {}, http, client=a, resource_type=cfg.open_type)
            if got.status not in (200, 404):
                continue
            expected = got.version or 0
        first = rng.randrange(2)
        await asyncio.gather(
            append(cluster, history, rng, s, new_events(rng), expected, http, replica=first, client=a, race=race,
                   retries=RETRIES),
            append(cluster, history, rng, s, new_events(rng), expected, http, replica=1 - first, client=b,
                   race=race, retries=RETRIES))
        await asyncio.sleep(rng.random() * 0.2)
