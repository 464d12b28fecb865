"""PostgreSQL from the machine's server binaries, in a data folder of the project.

PostgreSQL refuses to run as root, and sessions and CI run as root, so when we are root
the server binaries run as the unprivileged `postgres` user and the data folder is owned
by it. Every connection authenticates with a password (scram-sha-256), the superuser's
too, and each process connects as its own role: see `stack.pg_access`. Production points
each role's DSN setting at a managed server.
"""

from __future__ import annotations

import asyncio
import glob
import hashlib
import os
import pwd
import shutil
import stat
import subprocess
from pathlib import Path

from schemas.settings import LOCAL_PG_ROLES, Settings, SettingsError

from . import pg_access, secrets
from .common import StackError, port_open, run, wait_until

SERVER_USER = "postgres"


class PgPaths:
    def __init__(self, settings: Settings) -> None:
        self.root = _pg_root(Path(settings.stack_dir))
        self.data = self.root / "data"
        self.run = self.root / "run"
        self.log = self.root / "postgres.log"
        self._settings = settings

    @property
    def bin(self) -> Path:
        return bin_dir(self._settings)


def _pg_root(stack_dir: Path) -> Path:
    """`<stack_dir>/pg`, unless the server user could not reach it.

    As root we hand the data folder to `postgres`, which must be able to search every
    parent folder. A checkout under a private folder (mode 0700, as `mktemp -d` makes)
    does not allow that; then the data lives in a folder named after the project's path
    under /var/tmp instead, the same one every time, and `stack status` shows where.
    """
    local = stack_dir / "pg"
    if os.geteuid() != 0:
        return local
    for parent in stack_dir.resolve().parents:
        if parent.exists() and not parent.stat().st_mode & stat.S_IXOTH:
            digest = hashlib.sha256(str(stack_dir.resolve()).encode()).hexdigest()[:12]
            return Path("/var/tmp") / f"incentives-pg-{digest}"
    return local


def bin_dir(settings: Settings) -> Path:
    """The PostgreSQL server binaries: the configured folder, else the newest installed."""
    if settings.pg_bin_dir:
        folder = Path(settings.pg_bin_dir)
        if not (folder / "pg_ctl").exists():
            raise StackError(
                f"pg_bin_dir {folder} has no pg_ctl: point INCENTIVES_PG_BIN_DIR at the folder "
                "holding PostgreSQL's server binaries (initdb, pg_ctl)."
            )
        return folder
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    raise StackError(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found in /usr/lib/postgresql/*/bin "
        "nor on PATH. Install them (Debian: apt-get install postgresql-15)."
    )


def _server_account() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise StackError(
            "running as root, and PostgreSQL refuses root: the unprivileged user "
            f"`{SERVER_USER}` is needed to own and run the server (apt-get install "
            "postgresql-15 creates it, or `useradd --system postgres`)."
        ) from None


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    _server_account()
    return ["runuser", "-u", SERVER_USER, "--", *cmd]


def _prepare_folder(paths: PgPaths) -> None:
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.run.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return
    user = _server_account()
    for path in (paths.root, paths.run, *([paths.data] if paths.data.exists() else [])):
        os.chown(path, user.pw_uid, user.pw_gid)
    # The socket's folder is the server user's alone, like the socket (unix_socket_permissions).
    os.chmod(paths.run, 0o700)


def init_cluster(paths: PgPaths, superuser_password: str) -> bool:
    """initdb with the superuser's password; False if the cluster exists already."""
    if (paths.data / "PG_VERSION").exists():
        return False
    if paths.data.exists() and any(paths.data.iterdir()):
        raise StackError(
            f"PostgreSQL's data folder {paths.data} has files but no PG_VERSION: it is not a "
            "cluster. Remove it (`incentives stack reset postgres`) and start again."
        )
    # The password goes in a file only the server user reads, never on a command line.
    pwfile = paths.root / "initdb.pw"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(superuser_password + "\n")
    if os.geteuid() == 0:
        user = _server_account()
        os.chown(pwfile, user.pw_uid, user.pw_gid)
    try:
        run(
            _as_server_user(
                [
                    str(paths.bin / "initdb"), "-D", str(paths.data), "-U", secrets.SUPERUSER,
                    "--auth=scram-sha-256", f"--pwfile={pwfile}", "--encoding=UTF8",
                    "--no-locale",
                ]
            ),
            what="initialising the PostgreSQL cluster",
        )  # fmt: skip
    finally:
        pwfile.unlink(missing_ok=True)
    return True


def _install_hba(paths: PgPaths) -> None:
    hba = paths.data / "pg_hba.conf"
    hba.write_text(pg_access.HBA)
    os.chmod(hba, 0o600)
    if os.geteuid() == 0:
        user = _server_account()
        os.chown(hba, user.pw_uid, user.pw_gid)


def _secure_offline(paths: PgPaths, superuser_password: str) -> None:
    """A stopped cluster whose superuser password we do not hold (made before passwords,
    or the secrets file was lost): set it in single-user mode, install our pg_hba.conf."""
    pg_access.set_superuser_password_offline(
        paths.bin / "postgres", paths.data, _as_server_user([]), superuser_password
    )
    _install_hba(paths)


def up(settings: Settings) -> str:
    paths = PgPaths(settings)
    superuser_password = secrets.ensure(settings)["postgres"][secrets.SUPERUSER]
    if _running(paths) and pg_access.hba_is_ours(paths.data):
        if _wait_superuser(settings, timeout_s=30, log=paths.log) == "refused":
            _stop(paths)
            _secure_offline(paths, superuser_password)
            _start(settings, paths)
            _wait_superuser(settings, timeout_s=settings.start_timeout_s, log=paths.log)
        asyncio.run(create_database(settings))
        return f"PostgreSQL already running on 127.0.0.1:{settings.pg_port}"
    if _running(paths):
        _stop(paths)  # a cluster from before passwords: secured below, then started again
    if port_open(settings.pg_port):
        raise StackError(
            f"port {settings.pg_port} on 127.0.0.1 is in use by another process, so PostgreSQL "
            "cannot listen there. Stop it or choose another port with INCENTIVES_PG_PORT."
        )
    _prepare_folder(paths)
    if init_cluster(paths, superuser_password):
        _install_hba(paths)
    elif not pg_access.hba_is_ours(paths.data):
        _secure_offline(paths, superuser_password)
    _start(settings, paths)
    if _wait_superuser(settings, timeout_s=settings.start_timeout_s, log=paths.log) == "refused":
        _stop(paths)
        _secure_offline(paths, superuser_password)
        _start(settings, paths)
        _wait_superuser(settings, timeout_s=settings.start_timeout_s, log=paths.log)
    asyncio.run(create_database(settings))
    return f"PostgreSQL started on 127.0.0.1:{settings.pg_port}"


def _start(settings: Settings, paths: PgPaths) -> None:
    options = (
        f"-p {settings.pg_port} -c listen_addresses=127.0.0.1 "
        f"-c unix_socket_directories={paths.run} -c max_connections=200 "
        f"{pg_access.SERVER_OPTIONS}"
    )
    proc = subprocess.run(
        _as_server_user(
            [
                str(paths.bin / "pg_ctl"), "-D", str(paths.data), "-l", str(paths.log),
                "-o", options, "-w", "-t", str(settings.start_timeout_s), "start",
            ]
        ),
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise StackError(
            f"PostgreSQL did not start (pg_ctl exit {proc.returncode}): "
            f"{(proc.stdout + proc.stderr).strip()}\nsee its log {paths.log}"
        )


def _wait_superuser(settings: Settings, *, timeout_s: float, log: Path) -> str:
    """Wait until the server answers the superuser: "ok", or "refused" (a wrong password)."""
    answers: list[str] = []

    def ready() -> bool:
        answers.append(asyncio.run(_superuser_answer(settings)))
        return answers[-1] != "down"

    wait_until(ready, timeout_s=timeout_s, what="PostgreSQL", log=log)
    return answers[-1]


def _stop(paths: PgPaths) -> None:
    run(
        _as_server_user(
            [str(paths.bin / "pg_ctl"), "-D", str(paths.data), "-m", "fast", "-w", "stop"]
        ),
        what="stopping PostgreSQL",
    )


def _running(paths: PgPaths) -> bool:
    if not (paths.data / "postmaster.pid").exists():
        return False
    proc = subprocess.run(
        _as_server_user([str(paths.bin / "pg_ctl"), "-D", str(paths.data), "status"]),
        capture_output=True,
        check=False,
    )
    return proc.returncode == 0


def admin_dsn(settings: Settings, database: str) -> str:
    """The superuser's DSN: for setting the stack up and for the test harness only."""
    password = settings.local_secret("postgres", secrets.SUPERUSER, "a running local stack")
    return settings.local_dsn(secrets.SUPERUSER, password, database)


async def _superuser_answer(settings: Settings) -> str:
    import asyncpg

    try:
        conn = await asyncpg.connect(admin_dsn(settings, "postgres"), timeout=3)
    except asyncpg.InvalidPasswordError:
        return "refused"
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return "down"
    await conn.close()
    return "ok"


async def create_database(settings: Settings) -> None:
    """The login roles with the secrets file's passwords, the project's database owned by
    the migration owner, and its schema brought up to date by the owner."""
    import asyncpg

    from ledger.migrate import migrate

    passwords = secrets.ensure(settings)["postgres"]
    conn = await asyncpg.connect(admin_dsn(settings, "postgres"))
    try:
        await pg_access.provision_roles(conn, passwords)
        await pg_access.provision_database(conn, settings.pg_database)
    finally:
        await conn.close()
    conn = await asyncpg.connect(admin_dsn(settings, settings.pg_database))
    try:
        await pg_access.transfer_ownership(conn)
    finally:
        await conn.close()
    conn = await asyncpg.connect(settings.pg_dsn("owner"))
    try:
        await migrate(conn)
    finally:
        await conn.close()


def down(settings: Settings) -> str:
    paths = PgPaths(settings)
    if not _running(paths):
        return "PostgreSQL not running"
    _stop(paths)
    return "PostgreSQL stopped"


def status(settings: Settings) -> str:
    paths = PgPaths(settings)
    version = asyncio.run(server_version(settings))
    state = f"answering, server_version {version}" if version else "not answering"
    roles = ", ".join(LOCAL_PG_ROLES.values())
    return (
        f"PostgreSQL on 127.0.0.1:{settings.pg_port}: {state}; data {paths.data}; log {paths.log};"
        f" roles {roles} (scram-sha-256, passwords in {settings.secrets_path})"
    )


async def server_version(settings: Settings) -> str | None:
    import asyncpg

    try:
        conn = await asyncpg.connect(settings.pg_dsn("reader"), timeout=3)
    except (TimeoutError, OSError, asyncpg.PostgresError, SettingsError):
        return None
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()
