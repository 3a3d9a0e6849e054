"""The write path on the real stack: two API replicas (processes), the projector, Kafka, Redis."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import httpx
import pytest
import redis.asyncio as aioredis

from devstack.stack import Stack, post_body
from locks import stream_key
from service.demo import history_problems, race

pytestmark = pytest.mark.integration


def fid() -> str:
    return f"f-{uuid.uuid4().hex[:10]}"


async def check_race(stack: Stack, folders: int) -> None:
    results = await race(stack.urls, folders)
    assert {r["status"] for r in results} <= {201, 404, 410}, results
    replays = [await stack.replay(), await stack.replay(group=True)]
    assert replays[0].digest() == replays[1].digest(), "S2: two independent replays disagree"
    histories = replays[0].histories()
    ours = {r["folder"] for r in results}
    for folder in ours:
        assert history_problems(histories[folder]) == [], (folder, histories[folder])  # S3
    accepted = {e["command"]: e for events in histories.values() for e in events}
    for r in results:
        if r["status"] == 201:  # S1: every acknowledged write is in the replay, at its version
            assert r["key"] in accepted, r
            assert accepted[r["key"]]["version"] == r["body"]["version"]
        else:  # S5: a rejected command has no accepted event
            assert r["key"] not in accepted, r
    destroyed_first = [f for f in ours if [e["type"] for e in histories[f]] == ["FolderCreated", "FolderDestroyed"]]
    updates_410 = [r for r in results if r["command"] == "Update" and r["status"] == 410]
    assert len(destroyed_first) == len(updates_410), "every Update that lost the race was told 410"


async def test_seed_race_verified(stack: Stack) -> None:
    """200 folders, Update and Destroy at once through two replicas: no invalid history."""
    await check_race(stack, 200)


async def test_seed_race_leased(leased_stack: Stack) -> None:
    await check_race(leased_stack, 200)


async def test_zombie_writer_is_fenced(stack: Stack) -> None:
    """SIGSTOP a writer holding the lease before it appends; another replica takes over and
    destroys the folder; SIGCONT: the zombie's late append lands in the log, is discarded as
    stale everywhere, and its client is not told 201."""
    folder = fid()
    a, b = stack.urls
    pid_a = stack.services.pid("api-0")
    r = aioredis.Redis.from_url(stack.env["FENCED_REDIS_URL"])
    async with httpx.AsyncClient(timeout=30) as client:
        created = await client.post(f"{a}/v1/folders/{folder}/commands", json=post_body("Create", {"name": "x"}))
        assert created.status_code == 201
        key = uuid.uuid4().hex
        zombie = asyncio.create_task(client.post(
            f"{a}/v1/folders/{folder}/commands", json=post_body("Update", {"name": "late"}),
            headers={"Idempotency-Key": key, "X-Fenced-Fault": "pause-before-append"}))
        until = time.monotonic() + 30
        while not await r.get(f"fenced:fault:{key}"):
            if time.monotonic() > until:
                pytest.fail("the writer never reached the pause point")
            await asyncio.sleep(0.02)
        stack.services.signal("api-0", signal.SIGSTOP)
        try:
            await r.delete(f"fenced:fault:{key}")  # the writer goes on when it wakes
            # replica b waits in line for the lease until a's 2 s TTL lapses, then takes over
            destroyed = await client.post(f"{b}/v1/folders/{folder}/commands", json=post_body("Destroy"))
            assert destroyed.status_code == 201, destroyed.text
        finally:
            stack.services.signal("api-0", signal.SIGCONT)
        answer = await zombie
    await r.aclose()
    assert answer.status_code == 410, answer.text
    assert pid_a == stack.services.pid("api-0")
    replay = await stack.replay()
    stale = [v for v in replay.verdicts if v.command == key]
    assert stale and all(not v.accepted and v.reason == "stale" for v in stale), stale
    assert [e["type"] for e in replay.histories()[folder]] == ["FolderCreated", "FolderDestroyed"]


async def test_idempotency_key_appends_once(stack: Stack) -> None:
    folder = fid()
    key = uuid.uuid4().hex
    async with httpx.AsyncClient(timeout=30) as client:
        await client.post(f"{stack.urls[0]}/v1/folders/{folder}/commands", json=post_body("Create", {"name": "a"}))
        answers = await asyncio.gather(*(
            client.post(f"{stack.urls[i % 2]}/v1/folders/{folder}/commands",
                        json=post_body("Update", {"name": "b"}), headers={"Idempotency-Key": key})
            for i in range(5)))
        other = await client.post(f"{stack.urls[0]}/v1/folders/{folder}/commands",
                                  json=post_body("Update", {"name": "different"}), headers={"Idempotency-Key": key})
    assert {a.status_code for a in answers} == {201}
    assert len({a.text for a in answers}) == 1, [a.text for a in answers]
    assert other.status_code == 422 and "different request" in other.json()["detail"]
    replay = await stack.replay()
    assert [e["command"] for e in replay.histories()[folder]].count(key) == 1


@pytest.mark.parametrize("mode", ["verified", "leased"])
async def test_a_reused_key_with_another_body_is_refused_after_its_answer_expired(
        request: pytest.FixtureRequest, mode: str) -> None:
    """Once the saved answer is gone (its TTL, or a Redis that lost it), the key is answered
    from the log's recent window: the events carry the command's fingerprint, so another body
    under the same key is still refused (422) and the first body still gets its answer. In
    leased mode the window is the writer's write-through of its own records."""
    stack: Stack = request.getfixturevalue("stack" if mode == "verified" else "leased_stack")
    folder = fid()
    key = uuid.uuid4().hex
    r = aioredis.Redis.from_url(stack.env["FENCED_REDIS_URL"])
    url = f"{stack.urls[0]}/v1/folders/{folder}/commands"
    async with httpx.AsyncClient(timeout=30) as client:
        first = await client.post(url, json=post_body("Create", {"name": "a"}), headers={"Idempotency-Key": key})
        assert first.status_code == 201, first.text
        assert await r.delete(f"{stream_key('folders:' + folder)}:k:{key}") == 1, "the saved answer existed"
        other = await client.post(url, json=post_body("Create", {"name": "b"}), headers={"Idempotency-Key": key})
        assert other.status_code == 422 and "different request" in other.json()["detail"], other.text
        again = await client.post(url, json=post_body("Create", {"name": "a"}), headers={"Idempotency-Key": key})
        assert again.status_code == 201 and again.json() == first.json(), again.text
        other = await client.post(url, json=post_body("Create", {"name": "b"}), headers={"Idempotency-Key": key})
        assert other.status_code == 422, "the answer saved from the window is the first request's"
    await r.aclose()
    replay = await stack.replay()
    assert [e["command"] for e in replay.histories()[folder]] == [key]


async def test_reads_history_and_etag(stack: Stack) -> None:
    folder = fid()
    url = stack.urls[1]
    async with httpx.AsyncClient(timeout=30) as client:
        assert (await client.get(f"{url}/v1/folders/{folder}")).status_code == 404
        await client.post(f"{url}/v1/folders/{folder}/commands", json=post_body("Create", {"name": "a"}))
        for i in range(4):
            r = await client.post(f"{url}/v1/folders/{folder}/commands",
                                  json=post_body("Update", {"name": f"n{i}"}, expected_version=i + 1))
            assert r.status_code == 201 and r.json()["version"] == i + 2
        stale = await client.post(f"{url}/v1/folders/{folder}/commands",
                                  json=post_body("Update", {"name": "x"}, expected_version=1))
        assert stale.status_code == 409 and stale.json()["current_version"] == 5
        assert stale.headers["content-type"] == "application/problem+json"
        got = await client.get(f"{url}/v1/folders/{folder}")
        assert got.json()["state"]["name"] == "n3" and got.headers["etag"] == '"5"'
        page1 = (await client.get(f"{url}/v1/folders/{folder}/events", params={"limit": 2})).json()
        assert [e["version"] for e in page1["events"]] == [1, 2] and page1["next_from_version"] == 3
        page3 = (await client.get(f"{url}/v1/folders/{folder}/events",
                                  params={"from_version": 5, "limit": 2})).json()
        assert [e["type"] for e in page3["events"]] == ["FolderUpdated"] and page3["next_from_version"] is None


@pytest.mark.parametrize(("path", "body", "headers", "status"), [
    ("/v1/widgets/a/commands", post_body("Create", {"name": "a"}), {}, 404),
    ("/v1/folders/" + "a" * 200 + "/commands", post_body("Create", {"name": "a"}), {}, 422),
    ("/v1/folders/bad%20id/commands", post_body("Create", {"name": "a"}), {}, 422),
    ("/v1/folders/ok/commands", {"name": "Create", "data": {"name": "x" * 70000}}, {}, 413),
    ("/v1/folders/ok/commands", b"{not json", {"content-type": "application/json"}, 422),
    ("/v1/folders/ok/commands", {"nam": "Create"}, {}, 422),
    ("/v1/folders/ok/commands", post_body("Explode"), {}, 422),
    ("/v1/folders/ok/commands", post_body("Create", {"name": ""}), {}, 422),
    ("/v1/folders/ok/commands", post_body("Create", {"name": "a"}, expected_version=-1), {}, 422),
    ("/v1/folders/ok/commands", post_body("Create", {"name": "a"}), {"Idempotency-Key": "a b"}, 422),
    ("/v1/folders/never/commands", post_body("Update", {"name": "a"}), {}, 404),
])
async def test_bad_input_is_a_clear_4xx_and_appends_nothing(
        stack: Stack, path: str, body: object, headers: dict[str, str], status: int) -> None:
    before = (await stack.replay()).replay.records
    async with httpx.AsyncClient(timeout=30) as client:
        if isinstance(body, bytes):
            r = await client.post(stack.urls[0] + path, content=body, headers=headers)
        else:
            r = await client.post(stack.urls[0] + path, json=body, headers=headers)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"]
    assert (await stack.replay()).replay.records == before


async def test_tokens_recover_their_floor_from_the_log(stack: Stack) -> None:
    """design.md §4.7: if Redis hands out a token below the log's fence (a failover lost
    counter increments), the append is discarded as stale; the writer raises the counter
    above the projection's max token and retries once, so the client still gets 201."""
    folder = fid()
    url = stack.urls[0]
    r = aioredis.Redis.from_url(stack.env["FENCED_REDIS_URL"])
    async with httpx.AsyncClient(timeout=30) as client:
        for name in ("Create", "Update", "Update"):
            resp = await client.post(f"{url}/v1/folders/{folder}/commands", json=post_body(name, {"name": "a"}))
            assert resp.status_code == 201
        ctr = f"fenced:{{folders:{folder}}}:ctr"
        high = int(await r.get(ctr) or 0)
        await r.set(ctr, high - 2)  # Redis "forgot" two increments
        resp = await client.post(f"{url}/v1/folders/{folder}/commands", json=post_body("Update", {"name": "b"}))
    assert resp.status_code == 201 and resp.json()["version"] == 4, resp.text
    assert int(await r.get(ctr) or 0) > high
    await r.aclose()
    replay = await stack.replay()
    mine = [v for v in replay.verdicts if v.stream == folder]
    assert [v.reason for v in mine if not v.accepted] == ["stale"]
    assert [e["type"] for e in replay.histories()[folder]][-1] == "FolderUpdated"


def test_rebuild_and_verify_agree_with_the_log(stack: Stack) -> None:
    """`fenced projector --rebuild` replays from offset 0 into a new epoch; `fenced verify`
    then finds no difference between the replay and the projection."""
    env = {**os.environ, **stack.env}
    created = httpx.post(f"{stack.urls[0]}/v1/folders/{fid()}/commands", json=post_body("Create", {"name": "r"}))
    assert created.status_code == 201
    stack.services.stop("projector")
    try:
        rebuilt = subprocess.run([sys.executable, "-m", "service.cli", "projector", "--rebuild",
                                  "--until-caught-up"], env=env, capture_output=True, text=True, timeout=120)
        assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
        assert "records" in rebuilt.stderr  # the progress bar
    finally:
        stack.services.start_projector()
    # the next verified 201 needs the new projector in its consumer group: wait for one, so
    # this test leaves the stack as it found it
    until = time.monotonic() + 60
    while httpx.post(f"{stack.urls[0]}/v1/folders/{fid()}/commands", json=post_body("Create", {"name": "r"}),
                     timeout=30).status_code != 201:
        assert time.monotonic() < until, stack.log("projector")[-3000:]
    verified = subprocess.run([sys.executable, "-m", "service.cli", "verify"], env=env, capture_output=True,
                              text=True, timeout=120)
    assert verified.returncode == 0, verified.stdout[-3000:]
    report = json.loads(verified.stdout)
    assert report["ok"] and report["differences"] == []
    assert report["types"]["folders"]["accepted"] > 0


async def test_metrics_count_requests_commands_and_writer_events(stack: Stack) -> None:
    url = stack.urls[0]
    async with httpx.AsyncClient(timeout=30) as client:
        folder = fid()
        assert (await client.post(f"{url}/v1/folders/{folder}/commands",
                                  json=post_body("Create", {"name": "m"}))).status_code == 201
        assert (await client.post(f"{url}/v1/folders/{folder}/commands",
                                  json=post_body("Create", {"name": "m"}))).status_code == 409
        text = (await client.get(f"{url}/metrics")).text
    route = 'route="/v1/{resource_type}/{resource_id}/commands"'
    assert f'fenced_http_requests_total{{method="POST",{route},status="201"}}' in text
    assert f'fenced_http_requests_total{{method="POST",{route},status="409"}}' in text
    assert 'fenced_command_seconds_count{status="201",type="folders"}' in text
    assert "fenced_lease_wait_seconds_count" in text
    assert "fenced_writer_takeovers_total" in text and "fenced_writer_outcome_unknown_total" in text
