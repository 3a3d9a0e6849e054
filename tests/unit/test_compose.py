"""compose.yaml, Dockerfile and deploy/nginx.conf: checked statically, so the deployment
cannot drift from the code (every FENCED_* variable is a Settings field) and keeps its
safety properties (health-gated startup, no default secrets, no retried POSTs).

No Docker engine is needed. Where the `docker compose` CLI is installed, the file is also
validated with `docker compose config -q` (which needs no engine).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
PYPROJECT = ROOT / "pyproject.toml"

SERVICES = ("kafka", "redis", "api", "projector", "lb")
APP_FACTORY = "service.app:create_app"
# ${VAR}, ${VAR:?msg}, ${VAR?msg}, ${VAR:-default}, ${VAR-default}, ${VAR:+alt}, ${VAR+alt}
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[?+-])?(?P<arg>[^}]*)\}")
REQUIRED_VAR = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*:\?[^}]*\}$")
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|API_?KEY", re.IGNORECASE)


def _compose_text() -> str:
    return COMPOSE.read_text(encoding="utf-8")


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(_compose_text())
    assert isinstance(data, dict)
    return data


def _services() -> dict[str, dict[str, Any]]:
    services = _compose().get("services")
    assert isinstance(services, dict)
    return services


def _as_list(value: Any) -> list[str]:
    """A compose command/entrypoint/test in either string or list form, as a list."""
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    assert isinstance(value, list)
    return [str(v) for v in value]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment in either mapping or KEY=VALUE list form."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = [str(item).partition("=") for item in env]
        return {key: value for key, _, value in pairs}
    assert isinstance(env, dict)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):  # short form: implies condition service_started
        return {name: {"condition": "service_started"} for name in deps}
    assert isinstance(deps, dict)
    return deps


def _interpolate(value: str) -> str:
    """Replace every ${VAR...} with a placeholder, as compose would with VAR set."""
    return INTERPOLATION.sub("placeholder", value)


def _dockerfile_cmd() -> list[str]:
    cmds = [line for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()
            if line.strip().upper().startswith("CMD ")]
    assert len(cmds) == 1, "the Dockerfile has exactly one CMD"
    cmd = json.loads(cmds[0].strip()[4:])  # exec form only: uvicorn must be PID 1
    assert isinstance(cmd, list)
    return [str(c) for c in cmd]


def _nginx_conf() -> str:
    # Comments dropped, so a commented-out directive cannot satisfy (or fail) a check.
    lines = NGINX_CONF.read_text(encoding="utf-8").splitlines()
    return "\n".join(line.split("#", 1)[0] for line in lines)


def _compose_cli() -> list[str] | None:
    """`docker compose` when the CLI and its compose plugin are installed, else None."""
    docker = shutil.which("docker")
    if docker is None:
        return None
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=60,
                           check=False)
    return [docker, "compose"] if probe.returncode == 0 else None


def test_all_services_exist() -> None:
    assert set(SERVICES) <= set(_services())


def test_no_obsolete_version_key() -> None:
    assert "version" not in _compose()


def test_images() -> None:
    services = _services()
    assert str(services["kafka"]["image"]).startswith("apache/kafka:")
    assert str(services["redis"]["image"]).startswith("redis:")
    assert str(services["lb"]["image"]).startswith("nginx:")
    for name in ("kafka", "redis", "lb"):
        tag = str(services[name]["image"]).rpartition(":")[2]
        assert tag and tag != "latest", f"{name}: image tag is pinned"


def test_api_is_replicated_and_built_here() -> None:
    api = _services()["api"]
    assert "build" in api
    build = api["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    assert (ROOT / context / "Dockerfile").is_file()
    assert int(api["deploy"]["replicas"]) >= 2
    # Replicas cannot share a host port or a container name: only the load balancer publishes.
    assert "ports" not in api
    assert "container_name" not in api


def test_projector_runs_the_same_image() -> None:
    services = _services()
    api, projector = services["api"], services["projector"]
    assert "build" in projector or projector.get("image") == api.get("image")
    if "image" in projector or "image" in api:
        assert projector.get("image") == api.get("image")


def test_depended_on_services_have_a_healthcheck() -> None:
    services = _services()
    depended_on = {dep for svc in services.values() for dep in _depends_on(svc)}
    assert {"kafka", "redis", "api"} <= depended_on
    for name in depended_on:
        assert name in services, f"depends_on names an unknown service {name!r}"
        health = services[name].get("healthcheck")
        assert isinstance(health, dict), f"{name} has a healthcheck"
        assert not health.get("disable", False)
        test = _as_list(health.get("test"))
        assert test and test[0] != "NONE", f"{name}: healthcheck has a test"
        assert len(test) >= 2 or test[0] not in ("CMD", "CMD-SHELL")


def test_depends_on_waits_for_healthy() -> None:
    services = _services()
    for name, svc in services.items():
        for dep, spec in _depends_on(svc).items():
            assert spec.get("condition") == "service_healthy", f"{name} -> {dep}"
    for name in ("api", "projector"):
        assert {"kafka", "redis"} <= set(_depends_on(services[name])), name
    assert "api" in _depends_on(services["lb"])


def test_healthchecks_probe_what_they_should() -> None:
    services = _services()
    kafka = " ".join(_as_list(services["kafka"]["healthcheck"]["test"]))
    assert "/opt/kafka/bin/kafka-broker-api-versions.sh" in kafka
    assert "--bootstrap-server localhost:9092" in kafka
    redis = " ".join(_as_list(services["redis"]["healthcheck"]["test"]))
    assert "redis-cli" in redis and "ping" in redis
    # $$ escapes compose interpolation: the container's shell expands the variable.
    assert "$$REDIS_PASSWORD" in redis
    assert "REDIS_PASSWORD" in _environment(services["redis"])
    api = " ".join(_as_list(services["api"]["healthcheck"]["test"]))
    assert "urllib" in api and "http://localhost:8000/healthz" in api


def test_kafka_is_kraft_and_never_creates_topics_implicitly() -> None:
    env = _environment(_services()["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_NODE_ID"]
    node = env["KAFKA_NODE_ID"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{node}@")
    assert "CONTROLLER" in env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert "9092" in env["KAFKA_LISTENERS"] and "9093" in env["KAFKA_LISTENERS"]
    assert env["KAFKA_ADVERTISED_LISTENERS"].endswith("kafka:9092")
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env.get("KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE", "false") == "false"


def test_redis_is_durable_and_password_protected() -> None:
    redis = _services()["redis"]
    command = _as_list(redis["command"])
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "always"
    assert REQUIRED_VAR.match(command[command.index("--requirepass") + 1])


def test_data_lives_in_named_volumes() -> None:
    compose, services = _compose(), _services()
    named = set(compose.get("volumes") or {})
    for name in ("kafka", "redis"):
        sources = {str(v).split(":", 1)[0] for v in services[name].get("volumes", [])}
        assert sources & named, f"{name} keeps its data in a named volume"


def test_secrets_are_required_never_defaulted() -> None:
    text = _compose_text()
    found = list(INTERPOLATION.finditer(text))
    assert any(m["name"] == "REDIS_PASSWORD" for m in found)
    for m in found:
        if SECRET_NAME.search(m["name"]):
            assert m["op"] in (":?", "?"), f"{m[0]} must fail when unset, not default"
    # No literal secret anywhere: every value of a secret-named variable, every requirepass
    # argument and every password in a URL is a ${VAR:?...} interpolation.
    for name, svc in _services().items():
        for key, value in _environment(svc).items():
            if SECRET_NAME.search(key) and not (key.endswith("_FILE") and value.startswith("/run/secrets/")):
                assert REQUIRED_VAR.match(value), f"{name}.{key} is a literal secret"
            for password in re.findall(r"^[a-z]+s?://[^:/@]*:([^@]+)@", value):
                assert REQUIRED_VAR.match(password), f"{name}.{key} has a literal password"
        command = _as_list(svc.get("command"))
        for i, arg in enumerate(command[:-1]):
            if arg == "--requirepass":
                assert REQUIRED_VAR.match(command[i + 1]), f"{name}: literal requirepass"


def test_the_api_requires_keys_from_a_docker_secret() -> None:
    """Secure by default: authentication on, the hashed keys file mounted as a secret whose
    source path must be given (no default), read by the API replicas and by the projector (for
    its /metrics); nothing else gets it."""
    data = _compose()
    env = _environment(_services()["api"])
    assert env["FENCED_AUTH"] == "keys"
    secret = env["FENCED_API_KEYS_FILE"].removeprefix("/run/secrets/")
    assert secret in data["secrets"] and secret in _services()["api"]["secrets"]
    assert secret in _services()["projector"]["secrets"], "the projector's /metrics checks the same keys"
    assert REQUIRED_VAR.match(data["secrets"][secret]["file"])
    assert [name for name, svc in _services().items() if "secrets" in svc] == ["api", "projector"]
    assert env["FENCED_RATE_LIMIT"]


def test_fenced_env_vars_are_settings_fields() -> None:
    """Every FENCED_* name in compose.yaml is a Settings field: the two cannot drift."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    assert prefix == "FENCED_"
    fields = set(Settings.model_fields)
    named = {m.lower() for m in re.findall(r"\bFENCED_([A-Za-z0-9_]+)", _compose_text())}
    assert {"kafka_bootstrap", "redis_url", "partitions"} <= named
    assert named <= fields, f"unknown settings in compose.yaml: {sorted(named - fields)}"


def test_fenced_env_is_valid_and_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    services = _services()
    envs = {}
    for name in ("api", "projector"):
        envs[name] = {k: v for k, v in _environment(services[name]).items()
                      if k.startswith("FENCED_")}
    # Both must agree (partitions, topics, Redis, Kafka): the projector reads what the API writes.
    assert envs["api"] == envs["projector"]
    env = envs["api"]
    assert env["FENCED_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert env["FENCED_REDIS_URL"].startswith("redis://")
    assert env["FENCED_REDIS_URL"].endswith("@redis:6379/0")
    for key in [k for k in os.environ if k.startswith("FENCED_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, _interpolate(value))
    settings = Settings()  # validates every value's type and range
    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.redis_url == "redis://:placeholder@redis:6379/0"


def test_api_runs_the_app_factory() -> None:
    api = _services()["api"]
    command = _as_list(api.get("command")) or _dockerfile_cmd()
    assert APP_FACTORY in command
    assert "--factory" in command
    assert command[0] == "uvicorn"
    # Port 8000 on all interfaces: what the healthcheck and nginx upstream expect.
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert command[command.index("--port") + 1] == "8000"


def test_projector_command() -> None:
    assert _as_list(_services()["projector"].get("command")) == ["fenced", "projector"]


def test_fenced_console_script_is_declared() -> None:
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    assert "fenced" in project["scripts"]


def test_dockerfile_installs_the_project() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    from_lines = [line.split()[1] for line in text.splitlines() if line.upper().startswith("FROM ")]
    assert from_lines and from_lines[-1] == "python:3.11-slim"
    assert re.search(r"\bpip install\b[^\n]*\s\.(\s|$)", text)
    assert (ROOT / "pyproject.toml").is_file()


def test_dockerignore_keeps_local_state_out() -> None:
    patterns = {line.strip().lstrip("/").removeprefix("**/").rstrip("/")
                for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.lstrip().startswith("#")}
    assert {".venv", ".cache", ".run", "out", ".git", "__pycache__", ".env"} <= patterns


def test_lb_publishes_and_mounts_the_nginx_conf() -> None:
    lb = _services()["lb"]
    ports = [str(p) if not isinstance(p, dict) else f"{p['published']}:{p['target']}"
             for p in lb.get("ports", [])]
    assert ports, "the load balancer publishes a port"
    assert any(p.rsplit(":", 1)[-1] == "80" for p in ports)
    mounts = [str(v) for v in lb.get("volumes", [])]
    conf = [m for m in mounts if m.split(":", 1)[0].removeprefix("./") == "deploy/nginx.conf"]
    assert conf, "lb mounts deploy/nginx.conf"
    assert conf[0].endswith(":ro")
    assert NGINX_CONF.is_file()


def test_nginx_proxies_to_the_api_service() -> None:
    conf = _nginx_conf()
    upstreams = dict(re.findall(r"upstream\s+(\S+)\s*\{([^}]*)\}", conf))
    assert upstreams, "nginx.conf defines an upstream"
    servers = {name: re.findall(r"^\s*server\s+([^\s;]+)", body, re.MULTILINE)
               for name, body in upstreams.items()}
    to_api = [name for name, addrs in servers.items() if "api:8000" in addrs]
    assert to_api, "an upstream names the compose service api on port 8000"
    passes = re.findall(r"proxy_pass\s+http://([^\s;/]+)", conf)
    assert passes and set(passes) <= set(to_api)
    assert re.search(r"resolver\s+127\.0\.0\.11\b[^;]*valid=10s", conf)


def test_nginx_limits_and_never_retries_non_idempotent_requests() -> None:
    conf = _nginx_conf()
    assert re.search(r"client_max_body_size\s+1m\s*;", conf)
    assert re.search(r"proxy_read_timeout\s+30s\s*;", conf)
    # A POST whose outcome is unknown is retried by the client with its Idempotency-Key,
    # never by nginx on another replica.
    assert "non_idempotent" not in conf
    # proxy_set_header replaces nginx's defaults; clearing a client header would drop it.
    assert not re.search(r"proxy_set_header\s+Idempotency-Key\s+\"\"", conf, re.IGNORECASE)
    assert not re.search(r"proxy_pass_request_headers\s+off", conf)
    assert "underscores_in_headers" not in conf or "underscores_in_headers on" in conf


def test_docker_compose_config_validates(tmp_path: Path) -> None:
    """Validates with the real CLI where installed; the static checks above always run."""
    assert COMPOSE.is_file()
    cli = _compose_cli()
    if cli is None:
        return  # no `docker compose` here: nothing more to assert
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.write_text("", encoding="utf-8")
    base = [*cli, "--project-directory", str(ROOT), "--env-file", str(empty_env_file),
            "-f", str(COMPOSE), "config", "-q"]
    env = {k: v for k, v in os.environ.items() if k != "REDIS_PASSWORD"}
    keys = tmp_path / "api-keys"
    keys.write_text("", encoding="utf-8")
    ok = subprocess.run(base, env={**env, "REDIS_PASSWORD": "test-only", "API_KEYS_FILE": str(keys)},
                        capture_output=True, text=True, timeout=120, check=False)
    assert ok.returncode == 0, ok.stderr
    unset = subprocess.run(base, env={**env, "API_KEYS_FILE": str(keys)}, capture_output=True, text=True, timeout=120,
                           check=False)
    assert unset.returncode != 0, "compose must refuse to start without REDIS_PASSWORD"
    assert "REDIS_PASSWORD" in unset.stderr
