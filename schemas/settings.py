"""Settings for every process: one typed struct, read once by the entry points.

Values come, in rising priority, from the defaults below, an optional TOML settings file
(``INCENTIVES_SETTINGS=path``), and environment variables named ``INCENTIVES_<FIELD>``
in upper case (for example ``INCENTIVES_PG_DSN``). Nothing here is read at import time:
``load_settings`` is called by the CLI and the worker bootstraps and the result is passed down.

The defaults describe the local stack (``incentives stack up``): Kafka and PostgreSQL on
loopback on non-default ports, state under ``.stack/`` in the project. In production the
same code runs against external services by setting ``kafka_bootstrap`` and, for each
process, the DSN of its PostgreSQL role and the credentials of its Kafka principal.

Least privilege: every process connects as its own PostgreSQL role (``PgRole``) and Kafka
principal (``Principal``), never as a superuser. There is one DSN setting per role
(``pg_owner_dsn``, ``pg_writer_dsn``, ``pg_reader_dsn``, ``pg_auditor_dsn``) and one user
and password per principal (``kafka_worker_user``, ``kafka_worker_password``, ...); which
process uses which is fixed in code (README, "Roles and principals"), so a deployment gives
each process only the secret it needs. Left empty, they mean the local stack's roles and
principals, whose passwords ``stack up`` generated into ``secrets_file`` (readable by its
owner only). Secrets never appear in a repr, a log line or a status: ``redact`` them.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import quote

import msgspec

from schemas.codec import Limits

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# The PostgreSQL roles: the migration owner (DDL, program versions), the workers' writer,
# the read-only role of the finance API and the query commands, and the auditor.
PgRole = Literal["owner", "writer", "reader", "auditor"]
PG_ROLES: tuple[PgRole, ...] = get_args(PgRole)
# Their names on the local stack (a deployment names its own login roles in the DSNs).
LOCAL_PG_ROLES: Mapping[PgRole, str] = {r: f"incentives_{r}" for r in PG_ROLES}
# The Kafka principals: upstream systems, finance tools, the ledger workers, the auditors'
# tools, and the administrator that creates topics and ACLs.
Principal = Literal["upstream", "finance", "worker", "auditor", "admin"]
PRINCIPALS: tuple[Principal, ...] = get_args(Principal)


class Settings(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # Where the local stack keeps its jars, data folders, logs and pid files.
    stack_dir: str = str(PROJECT_ROOT / ".stack")
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    kafka_heap_mb: int = 768
    # Empty means "the local stack's broker": 127.0.0.1:<kafka_port>.
    kafka_bootstrap: str = ""
    pg_port: int = 55432
    pg_database: str = "incentives"
    # Empty means the newest /usr/lib/postgresql/<v>/bin, else pg_ctl's folder on PATH.
    pg_bin_dir: str = ""
    # One DSN per role; empty means the local stack's role on 127.0.0.1:<pg_port>/<db>,
    # with the password from secrets_file.
    pg_owner_dsn: str = ""
    pg_writer_dsn: str = ""
    pg_reader_dsn: str = ""
    pg_auditor_dsn: str = ""
    # The local stack's generated passwords; empty means <stack_dir>/secrets.toml.
    secrets_file: str = ""
    # How clients authenticate to Kafka: SASL/SCRAM, over TLS in production (SASL_SSL,
    # checked against kafka_ssl_cafile, or the system's CAs when empty).
    kafka_security_protocol: Literal["SASL_PLAINTEXT", "SASL_SSL"] = "SASL_PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_ssl_cafile: str = ""
    # One user and password per principal; an empty password means the local stack's.
    kafka_upstream_user: str = "upstream"
    kafka_upstream_password: str = ""
    kafka_finance_user: str = "finance"
    kafka_finance_password: str = ""
    kafka_worker_user: str = "worker"
    kafka_worker_password: str = ""
    kafka_auditor_user: str = "auditor"
    kafka_auditor_password: str = ""
    kafka_admin_user: str = "admin"
    kafka_admin_password: str = ""
    # Physical topic name = topic_prefix + logical stream name (sales, surveys, ...).
    topic_prefix: str = "incentives."
    topic_partitions: int = 6
    consumer_group: str = "incentives-ledger"
    start_timeout_s: int = 90
    # What a receiver accepts (see schemas.codec.Limits, built by ``limits()``).
    max_message_bytes: int = 1_000_000
    future_tolerance_s: int = 300
    max_depth: int = 32
    # The earliest occurred_at accepted, RFC 3339 with an offset. Empty: ten years before
    # the oldest program's effective_from (the worker; with no program, and for `incentives
    # publish`, ten years before the clock). Older events are dead-lettered as too_old.
    earliest_occurred_at: str = ""
    # A worker's batch: at most this many messages, or what arrived within this time.
    batch_size_max: int = 1000
    batch_within_ms: int = 200
    # A failed batch (processors.writer.isolation): attempts after a transient failure (PostgreSQL
    # away), with a jittered backoff doubling up to retry_backoff_max_ms, before the worker
    # stops; attempts after a deadlock or serialization failure; and the most messages in a
    # row of one partition dead-lettered as processing_failed before the worker stops.
    batch_attempts_max: Annotated[int, msgspec.Meta(ge=1)] = 10
    conflict_attempts_max: Annotated[int, msgspec.Meta(ge=1)] = 50
    retry_backoff_max_ms: Annotated[int, msgspec.Meta(ge=0)] = 10_000
    poison_run_max: Annotated[int, msgspec.Meta(ge=1)] = 5
    # The timer (processors.worker.clock), driven by event time: a month closes by itself once
    # event time on every partition has passed its end plus this grace (false: only by a
    # ClosePeriod command), and the clock is advanced in steps of this many seconds (0: never
    # by itself), posting the holds that ended and the points that expired.
    auto_close: bool = True
    close_grace_s: Annotated[int, msgspec.Meta(ge=0)] = 172_800
    timer_interval_s: Annotated[int, msgspec.Meta(ge=0)] = 86_400
    # A partition with no message consumed for this long (wall clock) and none waiting in
    # Kafka stops holding event time back (0: never), so that with fewer partners than
    # partitions months still close by themselves. See processors.worker.clock on late events.
    idle_partition_s: Annotated[int, msgspec.Meta(ge=0)] = 3_600
    # A worker's GET /metrics and GET /health (processors.worker.endpoint). Every worker on one
    # machine needs its own port; 0 picks a free one, which the worker logs.
    metrics_host: str = "127.0.0.1"
    metrics_port: Annotated[int, msgspec.Meta(ge=0, le=65_535)] = 19_400
    # Log lines: "text" for a terminal, "json" (one object per line) for a log collector.
    log_format: Literal["text", "json"] = "text"

    # The finance API (`incentives api`): where it listens; port 0 picks a free one, which
    # it logs. Use 0.0.0.0 in a container.
    api_host: str = "127.0.0.1"
    api_port: Annotated[int, msgspec.Meta(ge=0, le=65_535)] = 19_500

    @property
    def bootstrap(self) -> str:
        return self.kafka_bootstrap or f"127.0.0.1:{self.kafka_port}"

    def __repr__(self) -> str:
        values = {f.name: getattr(self, f.name) for f in msgspec.structs.fields(self)}
        shown = (f"{k}={redact(v) if _secret(k) else v!r}" for k, v in values.items())
        return f"Settings({', '.join(shown)})"

    @property
    def secrets_path(self) -> Path:
        return Path(self.secrets_file or Path(self.stack_dir) / "secrets.toml")

    def pg_dsn(self, role: PgRole) -> str:
        """The DSN through which ``role`` connects: its setting, else the local stack's."""
        configured: str = getattr(self, f"pg_{role}_dsn")
        if configured:
            return configured
        user = LOCAL_PG_ROLES[role]
        password = self.local_secret("postgres", user, f"INCENTIVES_PG_{role.upper()}_DSN")
        return self.local_dsn(user, password)

    def local_dsn(self, user: str, password: str, database: str | None = None) -> str:
        """A DSN of the local stack's server."""
        return (
            f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:"
            f"{self.pg_port}/{quote(database or self.pg_database, safe='')}"
        )

    def kafka_user(self, principal: Principal) -> str:
        user: str = getattr(self, f"kafka_{principal}_user")
        return user

    def kafka_password(self, principal: Principal) -> str:
        configured: str = getattr(self, f"kafka_{principal}_password")
        if configured:
            return configured
        setting = f"INCENTIVES_KAFKA_{principal.upper()}_PASSWORD"
        return self.local_secret("kafka", principal, setting)

    def kafka_auth(self, principal: Principal) -> dict[str, Any]:
        """aiokafka's keyword arguments that authenticate a client as ``principal``."""
        auth: dict[str, Any] = {
            "security_protocol": self.kafka_security_protocol,
            "sasl_mechanism": self.kafka_sasl_mechanism,
            "sasl_plain_username": self.kafka_user(principal),
            "sasl_plain_password": self.kafka_password(principal),
        }
        if self.kafka_security_protocol == "SASL_SSL":
            import ssl

            auth["ssl_context"] = ssl.create_default_context(cafile=self.kafka_ssl_cafile or None)
        return auth

    def local_secret(self, section: str, name: str, setting: str) -> str:
        """A password of the local stack (``stack up`` generated it); SettingsError names
        the setting to use instead when there is none."""
        found = read_secrets(self.secrets_path).get(section, {}).get(name)
        if not found:
            raise SettingsError(
                f"no password for {section} {name!r}: set {setting}, or start the local stack"
                f" (`incentives stack up`), which keeps its passwords in {self.secrets_path}"
            )
        return found

    def topic(self, stream: str) -> str:
        return self.topic_prefix + stream

    def limits(self) -> Limits:
        """The receiver's bounds; ``msgspec.convert`` checks them (a size of 0 is an error)."""
        try:
            return msgspec.convert(
                {
                    "max_message_bytes": self.max_message_bytes,
                    "future_tolerance_s": self.future_tolerance_s,
                    "max_depth": self.max_depth,
                    "earliest_occurred_at": self.earliest_occurred_at or None,
                },
                Limits,
            )
        except msgspec.ValidationError as exc:
            raise SettingsError(f"settings: {exc}") from exc


class SettingsError(Exception):
    """A settings file or variable could not be used; the message names which and why."""


def _secret(field: str) -> bool:
    return field.endswith(("_password", "_dsn"))


_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


def redact(value: str) -> str:
    """A setting fit to print: a password as ``***``, a DSN with its password as ``***``."""
    if "://" in value:
        return _URL_PASSWORD.sub(r"\1***@", value)
    return "***" if value else ""


def read_secrets(path: Path) -> dict[str, dict[str, str]]:
    """The local stack's secrets file (TOML, one table per service); empty when absent.
    A file that others may read is refused: it holds every role's password."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return {}
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SettingsError(
            f"secrets file {path} may be read by others (mode {stat.filemode(mode)}):"
            f" `chmod 600 {path}`"
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"secrets file {path}: {exc}") from exc
    return {k: {n: str(v) for n, v in t.items()} for k, t in data.items() if isinstance(t, dict)}


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    env = os.environ if environ is None else environ
    if env.get("INCENTIVES_PG_DSN"):
        raise SettingsError(
            "INCENTIVES_PG_DSN is no longer read: every process connects as its own role."
            " Set INCENTIVES_PG_OWNER_DSN (init, programs publish), INCENTIVES_PG_WRITER_DSN"
            " (worker), INCENTIVES_PG_READER_DSN (queries), INCENTIVES_PG_AUDITOR_DSN (audit)"
        )
    values: dict[str, Any] = {}
    path = env.get("INCENTIVES_SETTINGS")
    if path:
        try:
            values.update(tomllib.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"settings file {path}: {exc}") from exc
    for field in msgspec.structs.fields(Settings):
        raw = env.get(f"INCENTIVES_{field.name.upper()}")
        if raw is not None:
            values[field.name] = raw
    values.update(overrides)
    try:
        # strict=False lets "19092" from the environment become the int field it names.
        return msgspec.convert(values, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"settings: {exc}") from exc
