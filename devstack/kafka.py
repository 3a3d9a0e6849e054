"""A single-node Apache Kafka broker (KRaft, combined broker+controller) from Maven jars.

The jars come from Maven Central through ``kafka-pom.xml`` and are cached in a gitignored
folder; a warm cache skips the download. Readiness is a real client metadata request.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from devstack.errors import StackError
from devstack.proc import apt_install, require_free_port, stop_process, tail

HERE = Path(__file__).resolve().parent
POM = HERE / "kafka-pom.xml"
LOG4J = HERE / "log4j2.properties"
DEFAULT_CACHE = HERE.parent / ".cache" / "kafka-libs"


def ensure_java_and_maven() -> None:
    missing = [p for tool, p in (("java", "openjdk-17-jre-headless"), ("mvn", "maven"))
               if shutil.which(tool) is None]
    if missing:
        apt_install(*missing)
    if shutil.which("java") is None:
        raise StackError("java not found: install OpenJDK 17+ (apt-get install openjdk-17-jre-headless)")


def ensure_kafka_jars(cache: Path = DEFAULT_CACHE) -> Path:
    """Fetch the broker jars once; return the folder that holds them."""
    marker = cache / ".complete"
    if marker.exists() and any(cache.glob("kafka_2.13-*.jar")):
        return cache
    ensure_java_and_maven()
    cache.mkdir(parents=True, exist_ok=True)
    for old in cache.glob("*.jar"):
        old.unlink()
    print(f"fetching the Apache Kafka broker jars from Maven Central into {cache} ...", flush=True)
    done = subprocess.run(
        ["mvn", "-B", "-q", "-f", str(POM), "dependency:copy-dependencies",
         "-DincludeScope=runtime", f"-DoutputDirectory={cache}"],
        capture_output=True, text=True,
    )
    if done.returncode != 0 or not any(cache.glob("kafka_2.13-*.jar")):
        last = (done.stdout + done.stderr).strip().splitlines()[-3:]
        raise StackError(
            "could not fetch Kafka from Maven Central (is it reachable? try "
            f"'mvn -f {POM} dependency:copy-dependencies'): {' | '.join(last)}"
        )
    marker.write_text("ok\n")
    return cache


SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{cport}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}
advertised.listeners=PLAINTEXT://127.0.0.1:{aport},CONTROLLER://127.0.0.1:{cport}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data}
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.partitions=1
log.flush.interval.messages=9223372036854775807
"""


SASL_PROPERTIES = """\
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=\\
  org.apache.kafka.common.security.scram.ScramLoginModule required;
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS
allow.everyone.if.no.acl.found=false
"""


async def _cluster_ready(bootstrap: str) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # "not ready yet" is expected here
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await admin.start()
        info = await admin.describe_cluster()
        return bool(info.get("brokers")) and info.get("controller_id", -1) != -1
    except Exception:  # noqa: BLE001 - any failure means "not ready yet"
        return False
    finally:
        await admin.close()


def metadata_ready(bootstrap: str) -> bool:
    """Ask the broker for cluster metadata with a real client, from any thread."""
    host, _, port = bootstrap.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _cluster_ready(bootstrap)).result()


@dataclass
class KafkaBroker:
    """One broker process on ``port`` (controller on ``controller_port``) with its own data."""

    root: Path
    port: int = 9092
    controller_port: int = 9093
    heap: str = "512m"
    jars: Path = DEFAULT_CACHE
    advertised_port: int | None = None
    """Advertise another port (a proxy in front of the broker) to clients."""
    sasl_port: int | None = None
    """Also listen with SASL_PLAINTEXT/SCRAM-SHA-512 there, with ACLs enforced (the PLAINTEXT
    listener stays the harness's super-user door: readiness, test setup)."""
    tls: tuple[int, Path, Path] | None = None
    """(port, server PEM with key and certificate, CA PEM): also listen with TLS (SSL) there."""
    scram_users: dict[str, str] = field(default_factory=dict)
    """SCRAM-SHA-512 users (name: password) created when the data folder is formatted."""
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.advertised_port or self.port}"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "kafka.log"

    @property
    def pid_file(self) -> Path:
        return self.root / "kafka.pid"

    def _java(self, *args: str, heap: str) -> list[str]:
        return ["java", f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC",
                "-XX:TieredStopAtLevel=1" if heap == "256m" else "-XX:+UseStringDeduplication",
                f"-Dkafka.logs.dir={self.root / 'logs'}",
                f"-Dlog4j2.configurationFile={LOG4J}", "-cp", f"{self.jars}/*", *args]

    def _format(self, props: Path) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        cid = subprocess.run(self._java("kafka.tools.StorageTool", "random-uuid", heap="256m"),
                             capture_output=True, text=True)
        if cid.returncode != 0:
            raise StackError(f"Kafka StorageTool failed: {cid.stderr.strip()[-300:]}")
        scram = [arg for name, password in self.scram_users.items()
                 for arg in ("--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]")]
        fmt = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "-t", cid.stdout.strip(),
                       "-c", str(props), "--standalone", *scram, heap="256m"),
            capture_output=True, text=True,
        )
        if fmt.returncode != 0:
            raise StackError(f"formatting {self.data_dir} failed: {fmt.stderr.strip()[-300:]}")

    def start(self, timeout: float = 90.0) -> None:
        ensure_kafka_jars(self.jars)
        if shutil.which("java") is None:
            ensure_java_and_maven()
        require_free_port(self.port, "Kafka", "FENCED_KAFKA_PORT")
        require_free_port(self.controller_port, "the Kafka controller", "FENCED_KAFKA_CONTROLLER_PORT")
        self.root.mkdir(parents=True, exist_ok=True)
        props = self.root / "server.properties"
        text = SERVER_PROPERTIES.format(port=self.port, aport=self.advertised_port or self.port,
                                        cport=self.controller_port, data=self.data_dir)
        if self.sasl_port is not None:
            require_free_port(self.sasl_port, "the Kafka SASL listener", "FENCED_KAFKA_PORT")
            sasl = f"SASL_PLAINTEXT://127.0.0.1:{self.sasl_port}"
            text = text.replace("\nlisteners=", f"\nlisteners={sasl},").replace(
                "\nadvertised.listeners=", f"\nadvertised.listeners={sasl},").replace(
                "\nlistener.security.protocol.map=", "\nlistener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,")
            text += SASL_PROPERTIES
        if self.tls is not None:
            port, pem, ca = self.tls
            require_free_port(port, "the Kafka TLS listener", "FENCED_KAFKA_PORT")
            text = text.replace("\nlisteners=", f"\nlisteners=SSL://127.0.0.1:{port},").replace(
                "\nadvertised.listeners=", f"\nadvertised.listeners=SSL://127.0.0.1:{port},").replace(
                "\nlistener.security.protocol.map=", "\nlistener.security.protocol.map=SSL:SSL,")
            text += (f"ssl.keystore.type=PEM\nssl.keystore.location={pem}\n"
                     f"ssl.truststore.type=PEM\nssl.truststore.location={ca}\nssl.client.auth=none\n")
        props.write_text(text)
        self._format(props)
        log = self.log_file.open("ab")
        self.proc = subprocess.Popen(
            self._java("kafka.Kafka", str(props), heap=self.heap),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self.pid_file.write_text(str(self.proc.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StackError(
                    f"Kafka exited with code {self.proc.returncode}; see {self.log_file}:\n"
                    + tail(self.log_file))
            if metadata_ready(self.bootstrap):
                return
            time.sleep(0.3)
        self.stop()
        raise StackError(f"Kafka did not become ready in {timeout:.0f}s; see {self.log_file}")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=60)
            self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(30)
            self.proc = None

    def restart(self, *, hard: bool = False) -> None:
        self.kill() if hard else self.stop()
        self.start()

    def wipe(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def jars_env_path() -> Path:
    return Path(os.environ.get("FENCED_KAFKA_JARS", str(DEFAULT_CACHE)))
