"""``python -m devstack up|down|status|prepare``: the local stack behind ``make up``.

``up`` is idempotent: what already runs (pid files under ``.run/``) is left alone.
Environment: ``FENCED_KAFKA_PORT`` (9092), ``FENCED_KAFKA_CONTROLLER_PORT`` (9093),
``FENCED_REDIS_PORT`` (6379), ``FENCED_API_PORT`` (8000), ``FENCED_API_WORKERS`` (2),
``FENCED_DEMO_FOLDERS`` (200; 0 skips the demo), ``FENCED_REDIS_APPENDFSYNC`` (everysec).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from devstack.errors import StackError
from devstack.kafka import KafkaBroker, ensure_kafka_jars, metadata_ready
from devstack.proc import stop_pid
from devstack.redis import RedisServer, ensure_redis_server, ping
from devstack.services import Services, running_pids

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / ".run"


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _say(msg: str) -> None:
    print(f"fenced: {msg}", flush=True)


def prepare() -> None:
    ensure_redis_server()
    ensure_kafka_jars()


def up() -> None:
    t0 = time.monotonic()
    prepare()
    RUN.mkdir(exist_ok=True)
    kport, cport = _env_int("FENCED_KAFKA_PORT", 9092), _env_int("FENCED_KAFKA_CONTROLLER_PORT", 9093)
    rport, aport = _env_int("FENCED_REDIS_PORT", 6379), _env_int("FENCED_API_PORT", 8000)
    workers = _env_int("FENCED_API_WORKERS", 2)
    alive = running_pids(RUN)
    if "redis" in alive and ping(rport):
        _say(f"redis already running on 127.0.0.1:{rport} (pid {alive['redis']})")
    else:
        redis = RedisServer(RUN / "redis", port=rport,
                            appendfsync=os.environ.get("FENCED_REDIS_APPENDFSYNC", "everysec"))
        redis.start()
        assert redis.proc is not None
        (RUN / "redis.pid").write_text(str(redis.proc.pid))
        _say(f"redis started on 127.0.0.1:{rport}")
    if "kafka" in alive and metadata_ready(f"127.0.0.1:{kport}"):
        _say(f"kafka already running on 127.0.0.1:{kport} (pid {alive['kafka']})")
    else:
        broker = KafkaBroker(RUN / "kafka", port=kport, controller_port=cport)
        broker.start()
        assert broker.proc is not None
        (RUN / "kafka.pid").write_text(str(broker.proc.pid))
        _say(f"kafka started on 127.0.0.1:{kport}")
    # a local development stack on loopback: no API keys (compose.yaml and production use them)
    env = {"FENCED_KAFKA_BOOTSTRAP": f"127.0.0.1:{kport}", "FENCED_REDIS_URL": f"redis://127.0.0.1:{rport}/0",
           "FENCED_AUTH": os.environ.get("FENCED_AUTH", "off")}
    topics = subprocess.run([sys.executable, "-m", "service.cli", "topics"], env={**os.environ, **env},
                            capture_output=True, text=True)
    if topics.returncode != 0:
        raise StackError((topics.stderr.strip().splitlines() or ["topics failed"])[-1])
    services = Services(RUN, env)
    if "projector" not in alive:
        services.start_projector()
        _say("projector started")
    else:
        _say(f"projector already running (pid {alive['projector']})")
    url = f"http://127.0.0.1:{aport}"
    if "api" not in alive:
        services.start_api("api", aport, workers=workers)
        _say(f"{workers} API replicas (uvicorn workers) starting on {url}")
    ready = services.wait_ready(url, 90, name="api")
    _say(f"ready in {time.monotonic() - t0:.1f}s: {json.dumps(ready['checks'])}")
    folders = _env_int("FENCED_DEMO_FOLDERS", 200)
    if folders > 0:
        _say(f"demo: racing Update against Destroy on {folders} fresh folders through {url} ...")
        demo = subprocess.run([sys.executable, "-m", "service.cli", "demo", "--url", url,
                               "--folders", str(folders)], env={**os.environ, **env})
        if demo.returncode != 0:
            raise StackError("the demo found a violation (see its report above)")
    _say(f"""running:
  API        {url}  (OpenAPI: {url}/docs)   logs: .run/api.log
  projector  logs: .run/projector.log
  kafka      127.0.0.1:{kport}   data: .run/kafka
  redis      127.0.0.1:{rport}   data: .run/redis
stop everything with: make down""")


def down() -> None:
    alive = running_pids(RUN) if RUN.exists() else {}
    for name in sorted(alive, key=lambda n: n in ("kafka", "redis")):
        stop_pid(alive[name], timeout=60)
        (RUN / f"{name}.pid").unlink(missing_ok=True)
        _say(f"stopped {name} (pid {alive[name]})")
    if not alive:
        _say("nothing was running")


def status() -> None:
    alive = running_pids(RUN) if RUN.exists() else {}
    for name, pid in alive.items():
        print(f"{name}\tpid {pid}")
    if not alive:
        print("nothing running")


def main() -> None:
    cmd = sys.argv[1] if len(sys.argv) > 1 else "status"
    actions = {"up": up, "down": down, "status": status, "prepare": prepare}
    if cmd not in actions:
        sys.exit(f"usage: python -m devstack {{{'|'.join(actions)}}}")
    try:
        actions[cmd]()
    except StackError as e:
        sys.exit(f"fenced: {e}")


if __name__ == "__main__":
    main()
