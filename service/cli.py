"""The ``fenced`` command: serve, projector, verify, topics, settings, demo."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys

from fenced_client.domain import folders  # noqa: F401 - registers the reference type
from service import __version__
from service.settings import Settings, get_settings


def _client_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fenced-client")
    except PackageNotFoundError:
        return "0+unknown"


def _settings_table() -> str:
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, f in Settings.model_fields.items():
        rows.append(f"| `FENCED_{name.upper()}` | `{f.default}` | {f.description} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="fenced", description=__doc__)
    parser.add_argument("--version", action="version",
                        version=f"fenced {__version__} (fenced-client {_client_version()})")
    sub = parser.add_subparsers(dest="cmd", required=True)
    serve = sub.add_parser("serve", help="run one API replica (uvicorn)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    proj = sub.add_parser("projector", help="run the projector (a consumer group)")
    proj.add_argument("--rebuild", action="store_true", help="replay every topic from offset 0")
    proj.add_argument("--until-caught-up", action="store_true", help="exit once caught up")
    ver = sub.add_parser("verify", help="replay every topic with the rule and compare with Redis")
    ver.add_argument("--no-compare", action="store_true", help="do not read the projection")
    sub.add_parser("topics", help="create the topics (idempotent) and check partition counts")
    sub.add_parser("settings", help="print every setting as a Markdown table")
    chaos = sub.add_parser("chaos", help="fault-injection run on a private stack; checks S1-S7")
    chaos.add_argument("--duration", type=float, default=120)
    chaos.add_argument("--seed", type=int, default=1)
    chaos.add_argument("--faults", default="all", help="comma-separated fault kinds, or all")
    chaos.add_argument("--mode", choices=["verified", "leased"], default="verified")
    chaos.add_argument("--report", default="out/chaos", help="folder for report.json, summary.md, timeline.png")
    keys = sub.add_parser("keys", help="create, list or revoke API keys (hashed in FENCED_API_KEYS_FILE)")
    keys_sub = keys.add_subparsers(dest="keys_cmd", required=True)
    create = keys_sub.add_parser("create", help="create a key and print it (it is shown only this once)")
    create.add_argument("--tenant", required=True, help="the tenant its requests act for (a-z 0-9 -)")
    create.add_argument("--scopes", default="read,write", help="comma-separated: read, write, metrics")
    create.add_argument("--name", required=True, help="a label to list and revoke it by")
    listing = keys_sub.add_parser("list", help="list the keys (names, tenants, scopes; never the keys)")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by name (takes effect within a second)")
    revoke.add_argument("name")
    for p in (create, listing, revoke):
        p.add_argument("--file", help="the keys file (default: FENCED_API_KEYS_FILE)")
    acls = sub.add_parser("kafka-acls", help="print the kafka-acls.sh commands a deployment needs")
    acls.add_argument("--principal", default="User:fenced", help="fenced's Kafka principal")
    acls.add_argument("--reader", help="also grant read-only access to this principal (e.g. User:billing)")
    acls.add_argument("--reader-group", default="", help="consumer group prefix of the reader")
    demo = sub.add_parser("demo", help="race Update against Destroy on fresh folders")
    demo.add_argument("--url", action="append", default=[], help="API base URL (repeat per replica)")
    demo.add_argument("--folders", type=int, default=200)
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
    except Exception as e:  # noqa: BLE001 - pydantic's message is the one line to show
        sys.exit(f"fenced: bad configuration: {e}")
    from fenced_client.domain.plugins import PluginError, install
    try:  # the same deciders for every command, and one line if a plugin is broken
        install(settings.deciders, settings.types if args.cmd in ("serve", "projector", "verify") else (),
                settings.open)
    except PluginError as e:
        sys.exit(f"fenced: {e}")
    from service import logs
    logs.configure(settings.log_level, settings.log_format if args.cmd in ("serve", "projector") else "text")
    for noisy in ("httpx", "aiokafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.cmd == "serve":
        import uvicorn

        if settings.auth == "keys":  # say it in one line here, not in a traceback from each worker
            from service.auth import KeyFile, KeyFileError
            try:
                KeyFile(settings.api_keys_file)
            except KeyFileError as e:
                sys.exit(f"fenced: {e} (or set FENCED_AUTH=off for a local development stack)")
        uvicorn.run("service.app:create_app", factory=True, host=args.host, port=args.port, log_config=None,
                    workers=args.workers, log_level=settings.log_level.lower(), access_log=False)
    elif args.cmd == "keys":
        _keys(args, settings)
    elif args.cmd == "kafka-acls":
        from service.infra.kafka_acls import fenced_acls, reader_acls
        print("# only fenced may write the event topics: a forged record with a huge token fences a stream for ever")
        for acl in fenced_acls(settings):
            print(acl.command(args.principal, settings.kafka_bootstrap))
        if args.reader:
            for acl in reader_acls(settings, args.reader_group or args.reader.split(":")[-1]):
                print(acl.command(args.reader, settings.kafka_bootstrap))
    elif args.cmd == "projector":
        from service.read.projector import run_projector
        asyncio.run(run_projector(settings, rebuild=args.rebuild, until_caught_up=args.until_caught_up))
    elif args.cmd == "verify":
        from service.read.verify import verify
        result = asyncio.run(verify(settings, compare=not args.no_compare))
        print(json.dumps(result, indent=2))
        sys.exit(0 if result["ok"] else 1)
    elif args.cmd == "topics":
        from service.infra.kafka import ensure_topics
        try:
            asyncio.run(ensure_topics(settings))
        except Exception as e:  # noqa: BLE001
            sys.exit(f"fenced: {e}")
        print("topics ok")
    elif args.cmd == "settings":
        print(_settings_table())
    elif args.cmd == "chaos":
        from pathlib import Path

        try:
            from chaos import report, runner
        except ImportError as e:
            sys.exit(f"fenced: chaos is a dev tool that runs from a source checkout (python -m service.cli chaos, "
                     f"or make chaos there), not from an installed fenced: {e}")

        def interrupted(signum: int, frame: object) -> None:
            raise KeyboardInterrupt  # so the runner's cleanup stops every server it started

        signal.signal(signal.SIGTERM, interrupted)
        faults = runner.FAULTS if args.faults == "all" else tuple(args.faults.split(","))
        cfg = runner.ChaosConfig(duration=args.duration, seed=args.seed, faults=faults, ack_mode=args.mode)
        summary = report.write(runner.run(cfg), Path(args.report))
        print(report.markdown(summary))
        sys.exit(0 if summary["ok"] else 1)
    elif args.cmd == "demo":
        from service.demo import run_demo
        result = asyncio.run(run_demo(settings, args.url or ["http://127.0.0.1:8000"], args.folders))
        print(json.dumps(result, indent=2))
        sys.exit(0 if result["verify"]["ok"] and result["invalid_histories"] == 0 else 1)


def _keys(args: argparse.Namespace, settings: Settings) -> None:
    from service import auth

    path = getattr(args, "file", None) or settings.api_keys_file
    try:
        if args.keys_cmd == "create":
            key = auth.create_key(path, args.tenant, frozenset(args.scopes.split(",")), args.name)
            print(key)
            print(f"key {args.name!r} for tenant {args.tenant!r} ({args.scopes}) added to {path}; it is not "
                  "stored anywhere: keep it now", file=sys.stderr)
        elif args.keys_cmd == "list":
            for e in auth.KeyFile(path).entries():
                print(f"{e.name}\t{e.tenant}\t{','.join(sorted(e.scopes))}\tsha256:{e.digest[:12]}")
        elif args.keys_cmd == "revoke":
            if not auth.revoke_key(path, args.name):
                sys.exit(f"fenced: no key named {args.name!r} in {path}")
            print(f"revoked {args.name!r}")
    except (auth.KeyFileError, OSError) as e:
        sys.exit(f"fenced: {e}")


if __name__ == "__main__":
    main()
