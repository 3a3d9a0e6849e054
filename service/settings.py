"""Configuration: every setting is an environment variable ``FENCED_<NAME>``.

Each field's description is its documentation; ``fenced settings`` prints the table the
README carries, so the two cannot drift.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FENCED_", frozen=True, extra="ignore")

    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers.")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol (SASL_SSL in production).")
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism when the protocol is SASL_*.")
    kafka_sasl_username: str = Field("", description="SASL username (the fenced principal).")
    kafka_sasl_password: SecretStr = Field(SecretStr(""), description="SASL password.")
    kafka_ssl_cafile: str = Field("", description="CA bundle that signed the brokers' certificates (SSL, SASL_SSL).")
    kafka_ssl_certfile: str = Field("", description="Client certificate for mutual TLS (optional).")
    kafka_ssl_keyfile: str = Field("", description="Client key for mutual TLS (optional).")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description=(
        "Redis URL: redis://[user:password@]host:port/db, or rediss:// for TLS (add "
        "?ssl_ca_certs=/path/ca.pem for a private CA)."))
    topic_prefix: str = Field("fenced.", description="Event topics are named <prefix><type>.")
    partitions: int = Field(12, ge=1, le=10000, description=(
        "Partitions of each event topic; startup refuses a topic whose count differs."))
    kafka_compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field("snappy", description=(
        "Compression of the writer's record batches (snappy: as fast as none here, half the bytes; "
        "bench.compression). Readers decode every codec whatever this says."))
    replication_factor: int = Field(1, ge=1, description="Replication factor of created topics.")
    resource_types: str = Field("folders", description="Comma-separated resource types served.")
    open_types: str = Field("", description=(
        "Comma-separated open resource types, served too: the client decides their events and appends "
        "them (POST /v1/{type}/{id}/events) with an expected version; they need no decider."))
    deciders: str = Field("", description=(
        "Deciders of your own resource types, comma-separated module:attribute (a Decider or a list "
        "of them, as uvicorn takes module:app), e.g. myapp.domain:ORDERS; packages can also declare "
        "them as 'fenced.deciders' entry points."))
    source: str = Field("/fenced", description="CloudEvents ce_source of appended events.")
    lease_ttl_ms: int = Field(5000, ge=100, description=(
        "Lease time-to-live; a writer paused longer than this loses its lease."))
    request_deadline_ms: int = Field(10000, ge=100, description=(
        "How long a write may wait for a lease and for its verdict before 503."))
    ack_mode: Literal["verified", "leased"] = Field("verified", description=(
        "verified: answer after the projection applied the append (safe whatever Redis "
        "loses); leased: answer once the lease is checked (faster, needs linearizable Redis)."))
    conflict_retries: int = Field(3, ge=0, description=(
        "Times a write re-decides after a 'conflict' verdict before answering 503."))
    batch_max: int = Field(64, ge=1, le=10000, description=(
        "Most commands for one stream run as one batch under one lease (group commit)."))
    batch_wait_ms: int = Field(0, ge=0, le=1000, description=(
        "How long a batch waits for more commands once it holds the lease (0: take what is queued)."))
    auth: Literal["keys", "off"] = Field("keys", description=(
        "keys: every route but /healthz and /readyz needs an API key (Authorization: Bearer), and "
        "streams are namespaced by the key's tenant; off: no authentication, no tenants (local use only)."))
    api_keys_file: str = Field("/etc/fenced/api-keys", description=(
        "File of hashed API keys (`fenced keys create`); re-read when it changes."))
    rate_limit: str = Field("1000/second", description=(
        "Per-tenant request limit in `limits` notation, shared by all replicas through Redis, e.g. "
        "'1000/second;50000/minute' (empty: no limit). Above it: 429 with Retry-After."))
    max_json_depth: int = Field(32, ge=2, le=1000, description="Deepest nesting of a command's data (422 above).")
    max_events_per_command: int = Field(100, ge=1, le=10000, description=(
        "Most events one command may produce (422 above)."))
    log_format: Literal["json", "text"] = Field("json", description=(
        "json: one JSON object per line with the request id; text: human-readable lines."))
    max_body_bytes: int = Field(65536, ge=256, le=512 * 1024, description=(
        "Largest accepted request body (413 above); at most 512 KiB, so a command's events fit one record batch."))
    max_id_length: int = Field(128, ge=1, le=1024, description="Longest resource id.")
    idempotency_ttl_s: int = Field(86400, ge=1, description="How long answers are kept per Idempotency-Key.")
    projector_group: str = Field("fenced-projector", description="Consumer group of the projector.")
    projector_metrics_port: int = Field(9108, ge=0, le=65535, description=(
        "Port of the projector's Prometheus /metrics (0: off); it needs a key with the metrics scope."))
    log_level: str = Field("INFO", description="Log level of the service and the projector.")
    fault_injection: bool = Field(False, description=(
        "Honour the X-Fenced-Fault request header (tests and `fenced chaos` only; never in production)."))
    unsafe_ack_on_append: bool = Field(False, description=(
        "Deliberately broken writer for the chaos checker's self-test: answer 201 as soon as Kafka "
        "acknowledges, without a verdict. Needs FENCED_FAULT_INJECTION=true. Never in production."))
    unsafe_early_rejections: bool = Field(False, description=(
        "Deliberately broken writer for the linearizability checker's self-test (S7): answer a batch's "
        "rejections before the appends they were decided after have a verdict. Needs "
        "FENCED_FAULT_INJECTION=true. Never in production."))

    @property
    def types(self) -> tuple[str, ...]:
        """Every type served: the decided ones, then the open ones."""
        names = [t.strip() for t in f"{self.resource_types},{self.open_types}".split(",") if t.strip()]
        return tuple(dict.fromkeys(names))

    @property
    def open(self) -> tuple[str, ...]:
        return tuple(t.strip() for t in self.open_types.split(",") if t.strip())

    def topic(self, resource_type: str) -> str:
        return f"{self.topic_prefix}{resource_type}"

    @property
    def epoch_topic(self) -> str:
        return f"{self.topic_prefix}_epochs"


def get_settings() -> Settings:
    return Settings()
