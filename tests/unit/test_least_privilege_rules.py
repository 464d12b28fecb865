"""Least privilege, the pure parts: secrets kept out of sight, one DSN per role and one
credential per principal, SCRAM verifiers PostgreSQL accepts, and ACLs that give every
topic one writer (which is what lets the ledger record the principal behind a message)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from pathlib import Path

import pytest

from schemas.codec import Limits, RejectCode, Rejection, decode
from schemas.principals import PUBLISHER, publisher_of
from schemas.settings import Settings, SettingsError, load_settings, redact
from schemas.streams import CLOCK, stream_of
from stack import acls
from stack.secrets import ensure, scram_sha256_verifier

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def _stack(tmp_path: Path) -> Settings:
    settings = Settings(stack_dir=str(tmp_path), pg_port=5999, pg_database="ledger db")
    ensure(settings)
    return settings


def test_redact_hides_passwords_and_the_password_of_a_dsn() -> None:
    assert redact("postgresql://w:s3cret@db:5432/x") == "postgresql://w:***@db:5432/x"
    assert redact("postgresql://w@db/x") == "postgresql://w@db/x"
    assert redact("s3cret") == "***" and redact("") == ""


def test_settings_show_no_secret(tmp_path: Path) -> None:
    settings = Settings(pg_writer_dsn="postgresql://w:s3cret@db/x", kafka_worker_password="pw9")
    shown = repr(settings) + str(settings) + f"{settings}"
    assert "s3cret" not in shown and "pw9" not in shown
    assert "pg_writer_dsn='postgresql://w:***@db/x'" in shown
    assert "kafka_worker_user='worker'" in shown


def test_the_local_stack_gives_each_role_its_own_dsn(tmp_path: Path) -> None:
    settings = _stack(tmp_path)
    dsns = {role: settings.pg_dsn(role) for role in ("owner", "writer", "reader", "auditor")}
    assert dsns["writer"].startswith("postgresql://incentives_writer:")
    assert dsns["writer"].endswith("@127.0.0.1:5999/ledger%20db")
    assert len(set(dsns.values())) == 4
    assert oct(settings.secrets_path.stat().st_mode & 0o777) == "0o600"
    # A setting of its own wins; the stack's passwords stay where they are.
    own = Settings(stack_dir=str(tmp_path), pg_writer_dsn="postgresql://svc:pw@db/ledger")
    assert own.pg_dsn("writer") == "postgresql://svc:pw@db/ledger"
    assert ensure(settings) == ensure(settings)


def test_a_missing_password_names_the_setting_to_give(tmp_path: Path) -> None:
    settings = Settings(stack_dir=str(tmp_path))
    with pytest.raises(SettingsError, match="set INCENTIVES_PG_WRITER_DSN, or start the local"):
        settings.pg_dsn("writer")
    with pytest.raises(SettingsError, match="set INCENTIVES_KAFKA_FINANCE_PASSWORD"):
        settings.kafka_auth("finance")


def test_a_secrets_file_others_may_read_is_refused(tmp_path: Path) -> None:
    settings = _stack(tmp_path)
    settings.secrets_path.chmod(0o644)
    with pytest.raises(SettingsError, match=r"may be read by others .*`chmod 600 "):
        settings.pg_dsn("reader")


def test_the_single_dsn_of_before_is_refused_with_what_to_set() -> None:
    with pytest.raises(SettingsError, match="INCENTIVES_PG_DSN is no longer read.*WRITER_DSN"):
        load_settings({"INCENTIVES_PG_DSN": "postgresql://postgres@db/x"})


def test_kafka_credentials_are_per_principal_and_tls_in_production(tmp_path: Path) -> None:
    settings = _stack(tmp_path)
    worker, finance = settings.kafka_auth("worker"), settings.kafka_auth("finance")
    assert worker["security_protocol"] == "SASL_PLAINTEXT"
    assert worker["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (worker["sasl_plain_username"], finance["sasl_plain_username"]) == ("worker", "finance")
    assert worker["sasl_plain_password"] != finance["sasl_plain_password"]
    production = load_settings(
        {"INCENTIVES_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "INCENTIVES_KAFKA_WORKER_USER": "svc-w",
         "INCENTIVES_KAFKA_WORKER_PASSWORD": "pw"}
    )  # fmt: skip
    auth = production.kafka_auth("worker")
    assert auth["security_protocol"] == "SASL_SSL" and auth["ssl_context"] is not None
    assert auth["sasl_plain_username"] == "svc-w"


def test_the_scram_verifier_matches_rfc_7677() -> None:
    """RFC 7677's exchange (user "user", password "pencil"): the server signature computed
    from our stored ServerKey is the RFC's, so PostgreSQL can check the password."""
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    verifier = scram_sha256_verifier("pencil", salt=salt)
    method, rest = verifier.split("$", 1)
    iterations_salt, keys = rest.split("$")
    stored_key, server_key = (base64.b64decode(k) for k in keys.split(":"))
    assert (method, iterations_salt) == ("SCRAM-SHA-256", "4096:W22ZaJ0SNY7soEsUEjb6gQ==")
    nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    auth_message = (
        f"n=user,r=rOprNGfwEbeRWgbNEkqO,r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
        f"c=biws,r={nonce}"
    ).encode()
    signature = hmac.new(server_key, auth_message, hashlib.sha256).digest()
    assert base64.b64encode(signature).decode() == "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    client_proof = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    client_signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
    client_key = bytes(a ^ b for a, b in zip(client_proof, client_signature, strict=True))
    assert hashlib.sha256(client_key).digest() == stored_key


def test_every_topic_has_one_writer_and_only_finance_writes_commands() -> None:
    settings = Settings(kafka_finance_user="svc-finance")
    bindings = acls.bindings(settings)
    writes: dict[str, set[str]] = {}
    for b in bindings:
        if b.operation == acls.WRITE and b.pattern == acls.LITERAL:
            writes.setdefault(b.name, set()).add(b.principal)
    assert writes == {settings.topic(s): {f"User:{settings.kafka_user(p)}"}
                      for s, p in PUBLISHER.items()}  # fmt: skip
    assert writes["incentives.commands"] == {"User:svc-finance"}
    worker = {str(b) for b in bindings if b.principal == "User:worker"}
    assert "User:worker WRITE topic incentives.commands" not in worker
    assert "User:worker READ topic incentives.commands" in worker
    assert "User:worker READ group incentives-ledger*" in worker
    assert publisher_of("clock") == "worker" and publisher_of("commands") == "finance"


def test_the_clock_topic_carries_only_the_timers_commands() -> None:
    payout = (b'{"type": "RecordPayout", "event_id": "22b3c4d5-e6f7-4081-92a3-b4c5d6e7f878",'
              b' "occurred_at": "2026-04-10T09:00:00Z", "partner_id": "P-1", "amount": 5,'
              b' "currency": "EUR", "reference": "R-1"}')  # fmt: skip
    refused = decode(CLOCK, payout, now=NOW, limits=Limits())
    assert isinstance(refused, Rejection) and refused.code == RejectCode.UNKNOWN_TYPE
    assert "belongs on stream 'commands'" in refused.message
    close = (b'{"type": "ClosePeriod", "event_id": "11a2b3c4-d5e6-4f70-8192-a3b4c5d6e767",'
             b' "occurred_at": "2026-04-03T00:00:00Z", "partner_id": "*", "period": "2026-03"}')
    accepted = decode(CLOCK, close, now=NOW, limits=Limits())
    assert not isinstance(accepted, Rejection)
    # Finance sends them by hand on commands: that is still where their type belongs.
    assert stream_of(type(accepted)) == "commands"


def test_names_reach_sql_quoted() -> None:
    from stack.pg_access import identifier, literal

    assert identifier('ledger "main"') == '"ledger ""main"""'
    assert literal("it's") == "'it''s'"
