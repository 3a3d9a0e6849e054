"""The seed race, as a demo and as an acceptance check.

For N fresh folders: create each one, then send Update and Destroy at the same time
through different replicas. Afterwards replay the log with the rule and check: every
accepted history is valid (Create first, versions 1..n, nothing after Destroy), every 201
is an accepted event of the replay (S1), and no rejected command left an accepted event
(S5).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import httpx

from fenced_client import domain
from service.read.replay import replay_topic
from service.read.verify import verify
from service.settings import Settings


def history_problems(events: list[dict[str, Any]]) -> list[str]:
    """Why an accepted folder history is invalid (empty when it is valid)."""
    problems = []
    for i, e in enumerate(events):
        if e["version"] != i + 1:
            problems.append(f"version {e['version']} at position {i + 1}")
    types = [e["type"] for e in events]
    if types and types[0] != "FolderCreated":
        problems.append("does not start with FolderCreated")
    if "FolderDestroyed" in types and types.index("FolderDestroyed") != len(types) - 1:
        problems.append("events after FolderDestroyed")
    return problems


async def _send(client: httpx.AsyncClient, url: str, folder: str, name: str, data: dict[str, Any],
                key: str) -> dict[str, Any]:
    r = await client.post(f"{url}/v1/folders/{folder}/commands", json={"name": name, "data": data},
                          headers={"Idempotency-Key": key})
    return {"folder": folder, "command": name, "key": key, "status": r.status_code, "body": r.json()}


async def race(urls: list[str], folders: int, *, concurrency: int = 32) -> list[dict[str, Any]]:
    run = uuid.uuid4().hex[:8]
    sem = asyncio.Semaphore(concurrency)
    results: list[dict[str, Any]] = []
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=concurrency * 2)) as client:
        async def one(i: int) -> None:
            folder = f"demo-{run}-{i}"
            a, b = urls[i % len(urls)], urls[(i + 1) % len(urls)]
            async with sem:
                results.append(await _send(client, a, folder, "Create", {"name": f"f{i}"}, uuid.uuid4().hex))
                results.extend(await asyncio.gather(
                    _send(client, a, folder, "Update", {"name": f"g{i}"}, uuid.uuid4().hex),
                    _send(client, b, folder, "Destroy", {}, uuid.uuid4().hex)))
        await asyncio.gather(*(one(i) for i in range(folders)))
    return results


async def run_demo(settings: Settings, urls: list[str], folders: int) -> dict[str, Any]:
    results = await race(urls, folders)
    decider = domain.get("folders")
    assert decider is not None
    tr = await replay_topic(settings.kafka_bootstrap, settings.topic("folders"), decider, settings.partitions)
    histories = tr.histories()
    accepted_commands = {e["command"] for events in histories.values() for e in events}
    ours = {r["folder"] for r in results}
    invalid = {s: p for s, events in histories.items() if s in ours and (p := history_problems(events))}
    lost = [r for r in results if r["status"] == 201 and r["key"] not in accepted_commands]
    rejected_but_accepted = [r for r in results if r["status"] in (404, 409, 410, 422)
                             and r["key"] in accepted_commands]
    final = Counter(" -> ".join(e["type"].removeprefix("Folder") for e in histories.get(f, [])) for f in ours)
    return {
        "requests": len(results),
        "status": dict(Counter(str(r["status"]) for r in results)),
        "accepted_histories": dict(final),
        "invalid_histories": len(invalid),
        "acknowledged_but_not_accepted": len(lost),
        "rejected_but_accepted": len(rejected_but_accepted),
        "discards": tr.summary()["discards"],
        "verify": await verify(settings),
    }
