"""What the two distributions install (issue #13, parts 3 and 6).

- ``fenced`` (the server) holds the product's packages only, ``service`` and ``locks``: the
  dev tools (devstack, chaos, bench, loadtests, checkers) run from a checkout.
- ``fenced-client`` installs alone, into a fresh venv, with no server dependency (no FastAPI,
  uvicorn, Starlette, pydantic or Redis, and no aiokafka without its ``kafka`` extra), and
  its own tests (sdk/tests) pass against that installed copy, outside the checkout.

The fresh venv installs from the package index (pip's cache makes it quick on a second run).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER_ONLY = {"fastapi", "uvicorn", "starlette", "pydantic", "pydantic-core", "pydantic-settings", "redis",
               "hiredis", "limits", "prometheus-client"}

pytestmark = [pytest.mark.packaging, pytest.mark.timeout(600)]


SKIP = shutil.ignore_patterns(".git", ".venv", ".cache", ".run", "out", "build", "*.egg-info", "__pycache__",
                              ".*_cache")


def _wheel(source: Path, out: Path) -> Path:
    """Builds from a copy: setuptools writes build/ and *.egg-info beside the sources."""
    copy = out.parent / f"src-{source.name}"
    shutil.copytree(source, copy, ignore=SKIP)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(copy)],
                   check=True, capture_output=True)
    [wheel] = out.glob("*.whl")
    return wheel


def _top_level(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as z:
        return {name.split("/", 1)[0] for name in z.namelist() if not name.split("/", 1)[0].endswith(".dist-info")}


def _dev_pin(name: str) -> str:
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    [pin] = [d for d in dev if d.split("==")[0].split("[")[0] == name]
    return pin


def test_the_server_wheel_holds_service_and_locks_only(tmp_path: Path) -> None:
    assert _top_level(_wheel(ROOT, tmp_path)) == {"service", "locks"}


def test_the_client_installs_alone_without_server_dependencies_and_its_tests_pass(tmp_path: Path) -> None:
    wheel = _wheel(ROOT / "sdk", tmp_path / "dist")
    assert _top_level(wheel) == {"fenced_client"}
    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    py = str(env / "bin" / "python")

    def pip(*args: str) -> None:
        subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", *args], check=True,
                       capture_output=True)

    def installed() -> set[str]:
        out = subprocess.run([py, "-m", "pip", "list", "--format=freeze"], check=True, capture_output=True,
                             text=True).stdout
        return {line.split("==")[0].lower().replace("_", "-") for line in out.split()}

    pip(str(wheel))
    base = installed()
    assert "fenced-client" in base and "httpx" in base
    assert not base & (SERVER_ONLY | {"aiokafka", "fenced"}), base & (SERVER_ONLY | {"aiokafka", "fenced"})
    probe = ("import fenced_client, fenced_client.rule, fenced_client.wire, fenced_client.domain.folders;"
             "print(fenced_client.__file__)")
    where = subprocess.run([py, "-c", probe], check=True, capture_output=True, text=True, cwd=tmp_path).stdout
    assert str(env) in where, "the installed copy, not the checkout's"
    no_kafka = subprocess.run([py, "-c", "import fenced_client.consumer"], capture_output=True, text=True,
                              cwd=tmp_path)
    assert no_kafka.returncode != 0 and "pip install 'fenced-client[kafka]'" in no_kafka.stderr

    # with its extras (the consumer helper, pyeventsourcing) and the test tools, its own tests, outside the checkout
    pip(f"{wheel}[kafka,eventsourcing]", _dev_pin("pytest"), _dev_pin("pytest-asyncio"), _dev_pin("hypothesis"))
    assert not installed() & SERVER_ONLY
    tests = tmp_path / "client-tests"
    subprocess.run(["cp", "-r", str(ROOT / "sdk" / "tests"), str(tests)], check=True)
    (tests / "pytest.ini").write_text("[pytest]\naddopts = --strict-markers -ra -p no:cacheprovider\n"
                                      "asyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
                                      "filterwarnings = error\n")
    run = subprocess.run([py, "-m", "pytest", "-q", "-x"], capture_output=True, text=True, cwd=tests)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout
