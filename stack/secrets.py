"""The local stack's passwords: generated once by `stack up`, kept in one file of its owner.

`<stack_dir>/secrets.toml` (mode 0600) holds a password per PostgreSQL role, the
superuser's among them (used by `stack up` to create the roles and by the test harness to
create databases, by nothing at run time), and per Kafka principal, the broker's own among
them. Settings read a process's password from here when its own setting is empty
(`schemas.settings`). A password is never printed: the servers get SCRAM verifiers
(`scram_sha256_verifier`) or files only their owner reads, never a command line.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from schemas.settings import LOCAL_PG_ROLES, PRINCIPALS, Settings, read_secrets

from .common import StackError

SUPERUSER = "postgres"
# The broker's own principal: the controller and inter-broker listeners, a super user.
BROKER = "broker"
PG_NAMES = (SUPERUSER, *LOCAL_PG_ROLES.values())
KAFKA_NAMES = (BROKER, *PRINCIPALS)
# Alphanumerics only: no quoting trouble in TOML, JAAS, URLs or SQL.
_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
_LENGTH = 32
SCRAM_ITERATIONS = 4096


def ensure(settings: Settings) -> dict[str, dict[str, str]]:
    """The stack's secrets, generating those missing; the file is (re)written 0600."""
    path = settings.secrets_path
    found = read_secrets(path)
    wanted = {"postgres": PG_NAMES, "kafka": KAFKA_NAMES}
    if all(n in found.get(s, {}) for s, names in wanted.items() for n in names):
        return found
    for section, names in wanted.items():
        table = found.setdefault(section, {})
        for name in names:
            table.setdefault(name, _password())
    _write(path, found)
    return found


def _password() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(_LENGTH))


def _write(path: Path, data: dict[str, dict[str, str]]) -> None:
    lines = [
        "# The local stack's passwords, written by `incentives stack up`; keep it 0600.",
        "# Each process reads only its own; `incentives stack reset` keeps this file.",
    ]
    for section, table in data.items():
        lines.append(f"\n[{section}]")
        lines += [f'{name} = "{value}"' for name, value in table.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


def write_env_file(path: Path) -> list[str]:
    """A .env of fresh passwords for docker-compose.yml (mode 0600, never overwritten);
    returns the variables written, not their values."""
    names = [f"INCENTIVES_KAFKA_{n.upper()}_PASSWORD" for n in KAFKA_NAMES]
    names += [f"INCENTIVES_PG_{r}_PASSWORD" for r in ("SUPERUSER", "OWNER", "WRITER", "READER",
                                                       "AUDITOR")]  # fmt: skip
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise StackError(f"{path} exists; its passwords may be in use: remove it first") from None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("# Passwords for docker-compose.yml, from `incentives stack env-file`.\n")
        out.writelines(f"{name}={_password()}\n" for name in names)
    return names


def scram_sha256_verifier(password: str, *, salt: bytes | None = None) -> str:
    """PostgreSQL's stored form of a SCRAM-SHA-256 password (RFC 5802, 7677), so that the
    server is given ``ALTER ROLE ... PASSWORD '<verifier>'`` and never the password."""
    salt = salt or secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, SCRAM_ITERATIONS)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${SCRAM_ITERATIONS}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"
