"""Run a locust scenario headless for a fixed time and print its summary.

    python -m loadtests.run --scenario uniform --seconds 20 --users 32 --host http://127.0.0.1:8000
    python -m loadtests.run --scenario all --seconds 15 --users 16 --stack   # on a private stack

``--host`` may be given once per API replica (users are spread over them). ``--stack``
starts a private stack on free ports (:mod:`loadtests.stack`) and stops it afterwards.
Each scenario's summary is saved to ``--out`` (default ``out/loadtest-<scenario>.json``).
Traffic goes to the given hosts only: keep them on loopback.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCENARIOS = ("uniform", "hot", "race", "mixed")


def run_scenario(name: str, hosts: list[str], *, seconds: int, users: int, spawn_rate: float,
                 out: Path, folders: int | None) -> dict[str, Any]:
    out.unlink(missing_ok=True)
    env = {**os.environ, "LOADTEST_OUT": str(out), "LOADTEST_HOSTS": ",".join(hosts),
           "PYTHONPATH": os.pathsep.join(p for p in (str(HERE.parent), os.environ.get("PYTHONPATH")) if p)}
    if folders is not None:
        env["LOADTEST_FOLDERS"] = str(folders)
    cmd = [sys.executable, "-m", "locust", "-f", str(HERE / f"locustfile_{name}.py"), "--headless",
           "--users", str(users), "--spawn-rate", str(spawn_rate), "--run-time", f"{seconds}s",
           "--host", hosts[0], "--stop-timeout", "10", "--only-summary", "--exit-code-on-error", "0",
           "--loglevel", "WARNING"]
    done = subprocess.run(cmd, env=env, timeout=seconds + 120, check=False)
    if done.returncode != 0 or not out.exists():
        raise SystemExit(f"locust failed on scenario {name} (exit code {done.returncode}, summary "
                         f"{'written' if out.exists() else 'missing'})")
    summary: dict[str, Any] = json.loads(out.read_text())
    return summary


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", choices=(*SCENARIOS, "all"), default="uniform")
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--users", type=int, default=32)
    ap.add_argument("--spawn-rate", type=float, default=None, help="users started per second (default: all at once)")
    ap.add_argument("--host", action="append", default=[], help="API base URL; repeat for each replica")
    ap.add_argument("--stack", action="store_true", help="start a private stack on free ports for the run")
    ap.add_argument("--folders", type=int, default=None, help="size of the folder pool (LOADTEST_FOLDERS)")
    ap.add_argument("--out", type=Path, default=None, help="summary path (one scenario only)")
    args = ap.parse_args(argv)
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    if args.out is not None and len(names) > 1:
        ap.error("--out needs a single --scenario")
    if not args.stack and not args.host:
        args.host = ["http://127.0.0.1:8000"]

    if args.stack:
        from loadtests.stack import private_stack

        context: Any = private_stack()
    else:
        context = nullcontext(None)
    summaries = []
    with context as stack:
        hosts = stack.urls if stack is not None else args.host
        for name in names:
            out = args.out or Path("out") / f"loadtest-{name}.json"
            summaries.append(run_scenario(name, hosts, seconds=args.seconds, users=args.users,
                                          spawn_rate=args.spawn_rate or args.users, out=out,
                                          folders=args.folders))
    for s in summaries:
        print(json.dumps({k: v for k, v in s.items() if k != "per_request"}))


if __name__ == "__main__":
    main()
