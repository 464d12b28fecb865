"""Apache Kafka, single node in KRaft mode, from the jars Maven Central serves.

`stack/pom.xml` names the broker's artifacts; `mvn dependency:copy-dependencies` copies
them into `<stack_dir>/kafka/libs` once (a stamp holds the pom's hash, so a changed pom
fetches again). The storage is formatted on first start and kept, so a warm start only
launches the JVM.

Every door has a key. Clients authenticate with SASL/SCRAM-SHA-512 on the one client
listener (loopback, without TLS on this development stack; SASL_SSL in production, see
docs/integration.md); the SCRAM credentials of every principal are written into the
metadata log when the storage is formatted (``--add-scram``), since SCRAM needs them before
anyone could add them. The controller listener takes SASL/PLAIN from the broker alone (its
user is in the broker's configuration: SCRAM cannot serve the listener that the metadata
log itself comes through). The standard authorizer denies whatever no ACL allows
(``stack.acls``); the broker and the administrator are the super users. The configuration
and the format's argument file hold passwords, so they are the owner's alone (0600).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from schemas.settings import PRINCIPALS, Settings

from . import acls, secrets
from .common import (
    StackError,
    pid_alive,
    port_open,
    read_pid,
    require_binary,
    run,
    spawn_detached,
    terminate,
    wait_until,
)

POM = Path(__file__).with_name("pom.xml")
# Every stream the system consumes or produces (``clock``: the worker's timer commands).
STREAMS = (
    "sales", "surveys", "trainings", "partners", "commands", "clock", "deadletters", "refusals",
    "checkpoints",
)  # fmt: skip
# Topics whose messages must outlive Kafka's retention: the checkpoints' anchors, which an
# auditor verifies the ledger against (audit.anchors).
TOPIC_CONFIGS = {"checkpoints": {"retention.ms": "-1", "retention.bytes": "-1"}}
MECHANISM = "SCRAM-SHA-512"
# Written beside the storage once it is formatted with the principals' SCRAM credentials;
# a storage without it comes from before authentication and holds none.
AUTH_STAMP = "scram-credentials"

_LOG4J = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
"""


class KafkaPaths:
    def __init__(self, settings: Settings) -> None:
        self.root = Path(settings.stack_dir) / "kafka"
        self.libs = self.root / "libs"
        self.stamp = self.libs / ".pom-sha256"
        self.data = self.root / "data"
        self.config = self.root / "server.properties"
        self.log4j = self.root / "log4j.properties"
        self.log = self.root / "kafka.log"
        self.pid = self.root / "kafka.pid"
        self.stamp_auth = self.root / AUTH_STAMP


def _server_properties(settings: Settings, paths: KafkaPaths, broker_password: str) -> str:
    port, ctl = settings.kafka_port, settings.kafka_controller_port
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule"
    plain = "org.apache.kafka.common.security.plain.PlainLoginModule"
    login = f'username="{secrets.BROKER}" password="{broker_password}"'
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{ctl}",
            f"listeners=SASL_PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{ctl}",
            f"advertised.listeners=SASL_PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=SASL_PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
            # Clients and the broker itself: SCRAM, credentials in the metadata log.
            f"sasl.enabled.mechanisms={MECHANISM}",
            f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
            f"listener.name.sasl_plaintext.sasl.enabled.mechanisms={MECHANISM}",
            f"listener.name.sasl_plaintext.{MECHANISM.lower()}.sasl.jaas.config={scram}"
            f" required {login};",
            # The controller listener: the broker alone, by a user of this file.
            "sasl.mechanism.controller.protocol=PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
            f"listener.name.controller.plain.sasl.jaas.config={plain} required {login}"
            f' user_{secrets.BROKER}="{broker_password}";',
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            f"super.users=User:{secrets.BROKER};User:{settings.kafka_user('admin')}",
            "allow.everyone.if.no.acl.found=false",
            f"log.dirs={paths.data}",
            f"num.partitions={settings.topic_partitions}",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=6",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            # Topics are created on purpose (stack up, test fixtures, faust's own), never
            # by a typo in a producer.
            "auto.create.topics.enable=false",
            "log.retention.hours=-1",
            "",
        ]
    )


def _write_private(path: Path, text: str) -> None:
    """Write a file that holds passwords: the owner's alone, from its first byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(path, 0o600)


def fetch_jars(paths: KafkaPaths) -> None:
    pom_hash = hashlib.sha256(POM.read_bytes()).hexdigest()
    if paths.stamp.exists() and paths.stamp.read_text().strip() == pom_hash:
        return
    require_binary("java", "Install a JDK 17 (Debian: apt-get install openjdk-17-jdk-headless).")
    mvn = require_binary("mvn", "Install Maven (Debian: apt-get install maven).")
    paths.libs.mkdir(parents=True, exist_ok=True)
    run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={paths.libs}",
        ],
        what="fetching Kafka's jars from Maven Central",
    )
    paths.stamp.write_text(pom_hash)


def _java_cmd(paths: KafkaPaths, main: str, *args: str, heap_mb: int = 256) -> list[str]:
    java = require_binary(
        "java", "Install a JDK 17 (Debian: apt-get install openjdk-17-jdk-headless)."
    )
    return [
        java,
        f"-Xmx{heap_mb}m",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j.configuration=file:{paths.log4j}",
        "-cp",
        f"{paths.libs}/*",
        main,
        *args,
    ]


def format_storage(settings: Settings, paths: KafkaPaths, cluster_id: str | None = None) -> None:
    """Write the broker's configuration; format its storage once (with `cluster_id`, or a
    new one) with the SCRAM credentials of every principal."""
    passwords = secrets.ensure(settings)["kafka"]
    _write_private(paths.config, _server_properties(settings, paths, passwords[secrets.BROKER]))
    paths.log4j.write_text(_LOG4J)
    if (paths.data / "meta.properties").exists():
        if not paths.stamp_auth.exists():
            raise StackError(
                f"Kafka's storage {paths.data} was formatted before the stack authenticated"
                " its clients: it holds no SCRAM credentials, so no client could log in. Its"
                " topics are development data: `incentives stack reset kafka`, and"
                " `incentives stack reset postgres` too (the database's consumer positions"
                " point into the old topics), then `incentives stack up`."
            )
        return
    if paths.data.exists() and any(paths.data.iterdir()):
        raise StackError(
            f"Kafka's data folder {paths.data} has files but no meta.properties: it is not a "
            "formatted KRaft log. Remove it (`incentives stack reset kafka`) and start again."
        )
    cluster_id = new_cluster_id() if cluster_id is None else check_cluster_id(cluster_id)
    users = [secrets.BROKER, *(settings.kafka_user(p) for p in PRINCIPALS)]
    names = [secrets.BROKER, *PRINCIPALS]
    scram = [
        f"--add-scram={MECHANISM}=[name={user},password={passwords[name]}]"
        for user, name in zip(users, names, strict=True)
    ]
    # `--cluster-id=<id>` in one argument: an id may begin with "-" (urlsafe base64 has it
    # among its letters), and as a separate argument the tool's parser then takes it for
    # an option and fails. Every value we pass to a command line goes this way or is a
    # path we made absolute. The passwords go in an argument file of the owner's, not on
    # the command line.
    argfile = paths.root / "format.args"
    args = [
        "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
        f"--config={paths.config}", *scram,
    ]  # fmt: skip
    _write_private(argfile, "\n".join(args) + "\n")
    try:
        run(_java_cmd(paths, f"@{argfile}"), what="formatting Kafka's storage")
    finally:
        argfile.unlink(missing_ok=True)
    paths.stamp_auth.write_text(f"{MECHANISM}: {', '.join(users)}\n")


def new_cluster_id() -> str:
    """A KRaft cluster id as Kafka's own `random-uuid` makes it: 16 random bytes in urlsafe
    base64 without padding, never the all-zero id and never beginning with "-" (so that it
    can be pasted after an option of Kafka's tools)."""
    while True:
        raw = uuid.uuid4().bytes
        text = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        if raw != bytes(16) and not text.startswith("-"):
            return text


def check_cluster_id(cluster_id: str) -> str:
    """The id unchanged if it is one Kafka accepts (22 urlsafe base64 letters, 16 bytes)."""
    try:
        raw = base64.b64decode(cluster_id + "==", altchars=b"-_", validate=True)
    except ValueError:
        raw = b""
    if len(cluster_id) != 22 or len(raw) != 16 or raw == bytes(16):
        raise StackError(
            f"{cluster_id!r} is not a KRaft cluster id: expected 22 letters of urlsafe base64"
            " encoding 16 bytes, not all zero"
        )
    return cluster_id


def up(settings: Settings) -> str:
    paths = KafkaPaths(settings)
    if read_pid(paths.pid) is not None and port_open(settings.kafka_port):
        if not paths.stamp_auth.exists():
            raise StackError(
                f"the running Kafka (pid {read_pid(paths.pid)}) was started before the stack"
                " authenticated its clients: `incentives stack down`, then `incentives stack"
                " up`, which says how to bring its storage along"
            )
        _wait_ready(settings, paths, alive=lambda: True)
        asyncio.run(acls.ensure_acls(settings))
        return f"Kafka already running (pid {read_pid(paths.pid)})"
    for port in (settings.kafka_port, settings.kafka_controller_port):
        if port_open(port):
            raise StackError(
                f"port {port} on 127.0.0.1 is in use by another process, so Kafka cannot "
                "listen there. Stop that process or choose other ports with "
                "INCENTIVES_KAFKA_PORT / INCENTIVES_KAFKA_CONTROLLER_PORT."
            )
    paths.root.mkdir(parents=True, exist_ok=True)
    fetch_jars(paths)
    format_storage(settings, paths)
    pid = spawn_detached(
        _java_cmd(paths, "kafka.Kafka", str(paths.config), heap_mb=settings.kafka_heap_mb),
        log=paths.log,
    )
    paths.pid.write_text(str(pid))
    _wait_ready(settings, paths, alive=lambda: pid_alive(pid))
    asyncio.run(ensure_topics(settings, STREAMS))
    asyncio.run(acls.ensure_acls(settings))
    return f"Kafka started (pid {pid}) on {settings.bootstrap}"


def _wait_ready(settings: Settings, paths: KafkaPaths, *, alive: Callable[[], bool]) -> None:
    def ready() -> bool:
        return port_open(settings.kafka_port) and asyncio.run(_answers(settings))

    wait_until(
        ready,
        timeout_s=settings.start_timeout_s,
        what=f"Kafka on {settings.bootstrap}",
        log=paths.log,
        alive=alive,
    )


async def _answers(settings: Settings) -> bool:
    admin = acls.admin_client(settings, request_timeout_ms=3000)
    try:
        await admin.start()
        await admin.list_topics()
        return True
    except Exception:
        return False
    finally:
        await admin.close()


async def ensure_topics(settings: Settings, streams: tuple[str, ...] | list[str]) -> None:
    """Create the streams' topics that are missing; existing ones are left as they are."""
    from aiokafka.admin import NewTopic

    admin = acls.admin_client(settings)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in streams if settings.topic(s) not in existing]
        if missing:
            await admin.create_topics([
                NewTopic(settings.topic(s), settings.topic_partitions, 1,
                         topic_configs=TOPIC_CONFIGS.get(s))
                for s in missing
            ])  # fmt: skip
            await _until_described(admin, [settings.topic(s) for s in missing], settings)
    finally:
        await admin.close()


async def _until_described(admin: Any, topics: list[str], settings: Settings) -> None:
    """Wait until the broker describes the new topics with every partition led.

    The controller acknowledges a creation before the broker's metadata has it; on a broker
    that has just started, a client asking at once (a worker's start-up check) would find
    the topics missing."""
    deadline = time.monotonic() + settings.start_timeout_s
    while True:
        described = await admin.describe_topics(topics)
        ready = [
            t for t in described
            if not t["error_code"] and len(t["partitions"]) == settings.topic_partitions
            and all(p["leader"] >= 0 for p in t["partitions"])
        ]  # fmt: skip
        if len(ready) == len(topics):
            return
        if time.monotonic() > deadline:
            raise StackError(
                f"Kafka created {', '.join(topics)} but did not describe them with"
                f" {settings.topic_partitions} led partitions within {settings.start_timeout_s} s"
            )
        await asyncio.sleep(0.1)


async def delete_topics(settings: Settings, *, prefix: str) -> list[str]:
    """Delete every topic whose name starts with `prefix` (a test's own topics)."""
    assert prefix, "an empty prefix would delete every topic"
    admin = acls.admin_client(settings)
    await admin.start()
    try:
        doomed = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if doomed:
            await admin.delete_topics(doomed)
        return doomed
    finally:
        await admin.close()


def down(settings: Settings) -> str:
    paths = KafkaPaths(settings)
    pid = read_pid(paths.pid)
    if pid is None:
        return "Kafka not running"
    terminate(pid, timeout_s=60)
    paths.pid.unlink(missing_ok=True)
    return f"Kafka stopped (pid {pid})"


def status(settings: Settings) -> str:
    paths = KafkaPaths(settings)
    pid = read_pid(paths.pid)
    answers = port_open(settings.kafka_port) and asyncio.run(_answers(settings))
    version = broker_version(paths)
    state = "answering" if answers else "not answering"
    who = f"pid {pid}" if pid else "no pid of ours"
    return (
        f"Kafka {version or '?'} on {settings.bootstrap}: {state} ({who}); log {paths.log};"
        f" SASL/{MECHANISM} with ACLs, principals {', '.join(PRINCIPALS)}"
        f" (passwords in {settings.secrets_path})"
    )


def broker_version(paths: KafkaPaths) -> str | None:
    """The version the broker printed at its last start-up ("Kafka version: 3.9.1")."""
    try:
        text = paths.log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    found = re.findall(r"Kafka version: (\S+)", text)
    return found[-1] if found else None
