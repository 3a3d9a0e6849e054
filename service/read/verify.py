"""``fenced verify``: replay every topic from offset 0 and compare with the projection."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from fenced_client import domain
from service.read.projection import Projection
from service.read.replay import replay_topic
from service.settings import Settings


async def verify(settings: Settings, *, compare: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"types": {}, "differences": [], "ok": True}
    redis = aioredis.Redis.from_url(settings.redis_url) if compare else None
    try:
        for t in settings.types:
            decider = domain.get(t)
            assert decider is not None
            tr = await replay_topic(settings.kafka_bootstrap, settings.topic(t), decider, settings.partitions)
            out["types"][t] = tr.summary()
            if redis is None:
                continue
            projection = Projection(redis)
            for stream, st in tr.replay.streams.items():
                key = f"{t}:{stream}"
                got = await projection.load(decider, key)
                if (got.version, got.max_token, dict(got.state)) != (st.version, st.max_token, dict(st.state)):
                    out["differences"].append({
                        "stream": key, "replay": {"version": st.version, "max_token": st.max_token},
                        "projection": {"version": got.version, "max_token": got.max_token}})
    finally:
        if redis is not None:
            await redis.aclose()
    out["ok"] = not out["differences"]
    return out
