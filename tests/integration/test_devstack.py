"""Bad configuration ends with one clear line saying what to do, never a bare stack trace."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from devstack import KafkaBroker, StackError
from devstack.kafka import ensure_kafka_jars
from devstack.proc import free_port

pytestmark = pytest.mark.integration


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=120)


def test_wrong_partition_count_is_refused_with_what_to_do(kafka: KafkaBroker) -> None:
    env = {"FENCED_KAFKA_BOOTSTRAP": kafka.bootstrap, "FENCED_TOPIC_PREFIX": "mismatch.", "FENCED_PARTITIONS": "3"}
    assert run(["-m", "service.cli", "topics"], env).returncode == 0
    done = run(["-m", "service.cli", "topics"], {**env, "FENCED_PARTITIONS": "5"})
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "has 3 partitions" in last and "FENCED_PARTITIONS=3" in last, done.stderr
    assert "Traceback" not in done.stderr


def test_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        broker = KafkaBroker(tmp_path / "k", port=port, controller_port=free_port())
        with pytest.raises(StackError, match=f"port {port} for Kafka is in use.*FENCED_KAFKA_PORT"):
            broker.start()


def test_unreachable_maven_central_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # an empty local repository and a proxy on a closed port: Maven cannot download anything
    monkeypatch.setenv("MAVEN_OPTS", f"-Dmaven.repo.local={tmp_path / 'm2'} -Dhttps.proxyHost=127.0.0.1 "
                                     f"-Dhttps.proxyPort={free_port()} -Dhttp.proxyHost=127.0.0.1 "
                                     f"-Dhttp.proxyPort={free_port()}")
    with pytest.raises(StackError, match="could not fetch Kafka from Maven Central"):
        ensure_kafka_jars(tmp_path / "jars")


def test_bad_setting_is_one_clear_line() -> None:
    done = run(["-m", "service.cli", "topics"], {"FENCED_PARTITIONS": "zero"})
    assert done.returncode != 0 and "bad configuration" in done.stderr and "Traceback" not in done.stderr


def test_missing_api_keys_file_is_one_clear_line(tmp_path: Path) -> None:
    done = run(["-m", "service.cli", "serve", "--port", str(free_port())],
               {"FENCED_AUTH": "keys", "FENCED_API_KEYS_FILE": str(tmp_path / "nope")})
    assert done.returncode != 0 and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "cannot read the API keys file" in last and "fenced keys create" in last, done.stderr
    (tmp_path / "bad").write_text("not a key line\n")
    done = run(["-m", "service.cli", "serve", "--port", str(free_port())],
               {"FENCED_AUTH": "keys", "FENCED_API_KEYS_FILE": str(tmp_path / "bad")})
    assert done.returncode != 0 and "bad:1: the first field must be a SHA-256" in done.stderr, done.stderr
