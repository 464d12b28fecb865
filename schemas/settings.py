"""Settings for every process: one typed struct, read once by the entry points.

Values come, in rising priority, from the defaults below, an optional TOML settings file
(``INCENTIVES_SETTINGS=path``), and environment variables named ``INCENTIVES_<FIELD>``
in upper case (for example ``INCENTIVES_PG_DSN``). Nothing here is read at import time:
``load_settings`` is called by the CLI and the worker bootstraps and the result is passed down.

The defaults describe the local stack (``incentives stack up``): Kafka and PostgreSQL on
loopback on non-default ports, state under ``.stack/`` in the project. In production the
same code runs against external services by setting ``kafka_bootstrap`` and ``pg_dsn``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from schemas.codec import Limits

PROJECT_ROOT = Path(__file__).resolve().parent.parent


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
    # Empty means "the local stack's server": postgresql://postgres@127.0.0.1:<pg_port>/<db>.
    pg_dsn: str = ""
    # Physical topic name = topic_prefix + logical stream name (sales, surveys, ...).
    topic_prefix: str = "incentives."
    topic_partitions: int = 6
    consumer_group: str = "incentives-ledger"
    start_timeout_s: int = 90
    # What a receiver accepts (see schemas.codec.Limits, built by ``limits()``).
    max_message_bytes: int = 1_000_000
    future_tolerance_s: int = 300
    # A worker's batch: at most this many messages, or what arrived within this time.
    batch_size_max: int = 1000
    batch_within_ms: int = 200
    # The timer (processors.clock), driven by event time: a month closes by itself once
    # event time on every partition has passed its end plus this grace (false: only by a
    # ClosePeriod command), and the clock is advanced in steps of this many seconds (0: never
    # by itself), posting the holds that ended and the points that expired.
    auto_close: bool = True
    close_grace_s: Annotated[int, msgspec.Meta(ge=0)] = 172_800
    timer_interval_s: Annotated[int, msgspec.Meta(ge=0)] = 86_400
    # A worker's GET /metrics and GET /health (processors.operations). Every worker on one
    # machine needs its own port; 0 picks a free one, which the worker logs.
    metrics_host: str = "127.0.0.1"
    metrics_port: Annotated[int, msgspec.Meta(ge=0, le=65_535)] = 19_400
    # Log lines: "text" for a terminal, "json" (one object per line) for a log collector.
    log_format: Literal["text", "json"] = "text"

    # The finance API (`incentives api`): where it listens; port 0 picks a free one, which
    # it logs. Use 0.0.0.0 in a container.
    api_host: str = "127.0.0.1"
    api_port: Annotated[int, msgspec.Meta(ge=0, le=65_535)] = 19_500
    # The database the API and the query commands read, in read-only transactions. Empty
    # means pg_dsn; set it to a read-only role's DSN where the database has one.
    read_dsn: str = ""

    @property
    def bootstrap(self) -> str:
        return self.kafka_bootstrap or f"127.0.0.1:{self.kafka_port}"

    @property
    def dsn(self) -> str:
        return self.pg_dsn or f"postgresql://postgres@127.0.0.1:{self.pg_port}/{self.pg_database}"

    @property
    def reader_dsn(self) -> str:
        """The DSN of the read side (the finance API and the query commands)."""
        return self.read_dsn or self.dsn

    def topic(self, stream: str) -> str:
        return self.topic_prefix + stream

    def limits(self) -> Limits:
        """The receiver's bounds; ``msgspec.convert`` checks them (a size of 0 is an error)."""
        try:
            return msgspec.convert(
                {
                    "max_message_bytes": self.max_message_bytes,
                    "future_tolerance_s": self.future_tolerance_s,
                },
                Limits,
            )
        except msgspec.ValidationError as exc:
            raise SettingsError(f"settings: {exc}") from exc


class SettingsError(Exception):
    """A settings file or variable could not be used; the message names which and why."""


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    env = os.environ if environ is None else environ
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
