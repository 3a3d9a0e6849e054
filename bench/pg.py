"""P2's baseline: the same HTTP API shape backed by PostgreSQL instead of Kafka and Redis.

A private PostgreSQL cluster (Debian's ``postgresql`` package; ``initdb``/``pg_ctl`` as the
``postgres`` user on a free port in a temporary folder) holds one ``events`` table with
``UNIQUE (stream_id, version)``. A write reads the stream's latest row (its version and the
state after it), runs the same decider as fenced, and INSERTs the events at the next
versions; a unique violation means another writer won the race, so it decides again, at
most as often as fenced's writer re-decides (``FENCED_CONFLICT_RETRIES`` + 2 attempts),
then answers 503. ``synchronous_commit`` is on: a 201 means the WAL is fsynced on this
node's disk.

    uvicorn bench.pg:create_app --factory    # with BENCH_PG_DSN=postgresql://...
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import asyncpg  # type: ignore[import-untyped]
from fastapi import FastAPI, Header
from fastapi.responses import JSONResponse

from devstack.errors import StackError
from devstack.proc import apt_install
from fenced_client.domain import Command, Rejection
from fenced_client.domain import folders as _folders  # registers the reference type
from service.api.routes import CommandIn, CommandOut, IdPath, TypePath
from service.write.writer import new_command_id

FOLDERS = _folders.FOLDERS
ATTEMPTS = 3 + 2  # FENCED_CONFLICT_RETRIES (default 3) + 2, like service/write/writer.py

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id          bigserial   PRIMARY KEY,
    stream_id   text        NOT NULL,
    version     integer     NOT NULL,
    type        text        NOT NULL,
    data        jsonb       NOT NULL,
    state       jsonb       NOT NULL,  -- the stream's state after this event (a snapshot per row)
    command_id  text        NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream_id, version)
);
"""
LATEST = "SELECT version, state FROM events WHERE stream_id = $1 ORDER BY version DESC LIMIT 1"
INSERT = ("INSERT INTO events (stream_id, version, type, data, state, command_id) "
          "VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6)")


def _bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def ensure_postgres() -> tuple[str, str]:
    """Return (initdb, pg_ctl), installing Debian's postgresql package if they are missing."""
    if _bin("initdb") is None or _bin("pg_ctl") is None:
        apt_install("postgresql")
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise StackError("initdb/pg_ctl not found even after apt-get install postgresql")
    return initdb, pg_ctl


@dataclass
class PgCluster:
    """A throw-away PostgreSQL cluster on ``port``; run as ``postgres`` when we are root."""

    port: int
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="fenced-bench-pg-")))
    started: bool = False

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return subprocess.run([*prefix, *cmd], capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL, cwd="/")

    def start(self) -> None:
        initdb, pg_ctl = ensure_postgres()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        done = self._run(initdb, "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                         "--no-instructions")
        if done.returncode != 0:
            raise StackError(f"initdb failed: {done.stderr.strip()[-300:]}")
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} "
                "-c synchronous_commit=on -c fsync=on -c max_connections=200")
        done = self._run(pg_ctl, "-D", str(self.data), "-l", str(self.root / "postgres.log"), "-o", opts,
                         "-w", "-t", "60", "start")
        if done.returncode != 0:
            raise StackError(f"pg_ctl start failed: {(done.stderr or done.stdout).strip()[-300:]}")
        self.started = True

    def stop(self) -> None:
        if self.started:
            _, pg_ctl = ensure_postgres()
            self._run(pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop")
            self.started = False
        shutil.rmtree(self.root, ignore_errors=True)

    async def create_schema(self) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute(SCHEMA)
        finally:
            await conn.close()

    async def count(self) -> int:
        conn = await asyncpg.connect(self.dsn)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM events"))
        finally:
            await conn.close()


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"type": "about:blank", "status": status, "detail": detail}, status_code=status,
                        media_type="application/problem+json")


def create_app() -> FastAPI:
    """The PostgreSQL-backed API: ``POST /v1/folders/{id}/commands`` like fenced's route."""
    dsn = os.environ["BENCH_PG_DSN"]
    pool_size = int(os.environ.get("BENCH_PG_POOL", "32"))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await asyncpg.create_pool(dsn, min_size=4, max_size=pool_size)
        try:
            yield
        finally:
            await app.state.pool.close()

    app = FastAPI(title="fenced bench: postgres baseline", lifespan=lifespan)

    @app.post("/v1/{resource_type}/{resource_id}/commands", status_code=201, response_model=CommandOut)
    async def send_command(resource_type: TypePath, resource_id: IdPath, body: CommandIn,
                           idempotency_key: Annotated[str | None, Header()] = None) -> Any:
        if resource_type != "folders":
            return _problem(404, f"unknown resource type {resource_type!r}")
        stream, command_id = f"folders:{resource_id}", idempotency_key or new_command_id()
        pool = app.state.pool
        for _ in range(ATTEMPTS):
            async with pool.acquire() as conn:
                row = await conn.fetchrow(LATEST, stream)
                version, state = (0, dict(FOLDERS.initial)) if row is None else \
                    (int(row["version"]), json.loads(row["state"]))
                try:
                    events = FOLDERS.decide(Command(body.name, body.data), state)
                except Rejection as r:
                    return _problem(r.status, r.detail)
                rows = []
                for i, e in enumerate(events):
                    state = dict(FOLDERS.evolve(state, e.type, e.data))
                    rows.append((stream, version + 1 + i, e.type, json.dumps(dict(e.data)), json.dumps(state),
                                 command_id))
                try:
                    async with conn.transaction():
                        await conn.executemany(INSERT, rows)
                except asyncpg.UniqueViolationError:
                    continue  # another writer appended first: decide again on the new state
                return {"command_id": command_id, "version": version + len(rows),
                        "events": [{"type": r[2], "version": r[1], "partition": 0, "offset": 0} for r in rows]}
        return _problem(503, "the command lost every race")

    return app

