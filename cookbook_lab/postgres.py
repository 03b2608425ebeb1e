"""The lab's own PostgreSQL 15 cluster for NetBox: own data dir under the state dir, 127.0.0.1 and a lab port.

Never touches the host's clusters: initdb runs as user postgres into the lab's directory and pg_ctl
drives only that directory. The superuser is NETBOX_ROLE, reached over TCP with a lab secret.
"""

from __future__ import annotations

from pathlib import Path

from cookbook_lab import topology
from cookbook_lab.common import Lab, LabError, read_pidfile

PACKAGES = ("postgresql-15",)
BIN = Path("/usr/lib/postgresql/15/bin")
ROLE = "netbox"
"""Superuser role created by initdb; NetBox connects as it."""
HOST = "127.0.0.1"

SETTINGS = {
    "listen_addresses": f"'{HOST}'",
    "port": str(topology.POSTGRES_PORT),
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "'64MB'",
    "max_connections": "50",
}
"""Appended to postgresql.conf: loopback only, and no durability (a lab database is rebuilt from its cache)."""


def base_dir(lab: Lab) -> Path:
    """Directory (owned by postgres) holding the data dir and the unix socket dir."""
    return lab.state_dir / "postgres"


def data_dir(lab: Lab) -> Path:
    """The cluster's data directory."""
    return base_dir(lab) / "data"


def password(lab: Lab) -> str:
    """Password of ROLE (a lab secret)."""
    return lab.secret("postgres_password", 24)


def client_env(lab: Lab) -> dict[str, str]:
    """Environment for libpq clients run as root: host, port, role and password (never on a command line)."""
    return {"PGHOST": HOST, "PGPORT": str(topology.POSTGRES_PORT), "PGUSER": ROLE, "PGPASSWORD": password(lab)}


def running(lab: Lab) -> bool:
    """Whether the lab postmaster (pid from postmaster.pid) runs."""
    return read_pidfile(data_dir(lab) / "postmaster.pid") is not None


def _as_postgres(*cmd: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd]


def init(lab: Lab, part: str) -> None:
    """initdb the lab data dir (once) with ROLE as superuser and loopback-only settings."""
    if (data_dir(lab) / "PG_VERSION").exists():
        return
    base = base_dir(lab)
    (base / "run").mkdir(parents=True, exist_ok=True)
    pwfile = base / "initdb.pw"
    pwfile.write_text(password(lab) + "\n")
    pwfile.chmod(0o600)
    lab.run(part, ["chown", "-R", "postgres:postgres", str(base)])
    base.chmod(0o700)
    try:
        lab.run(part, _as_postgres(str(BIN / "initdb"), "-D", str(data_dir(lab)), "-U", ROLE, f"--pwfile={pwfile}",
                                   "--auth-local=peer", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"))
    finally:
        pwfile.unlink(missing_ok=True)
    settings = "".join(f"{key} = {value}\n" for key, value in SETTINGS.items())
    with (data_dir(lab) / "postgresql.conf").open("a") as conf:
        conf.write(f"# cookbook-lab\n{settings}unix_socket_directories = '{base / 'run'}'\n")


def start(lab: Lab, part: str) -> None:
    """Start the lab postmaster unless it runs; wait until it accepts connections."""
    if running(lab):
        return
    logfile = lab.log_dir / "postgres.log"
    logfile.touch()
    lab.run(part, ["chown", "postgres:postgres", str(logfile)])
    lab.run(part, _as_postgres(str(BIN / "pg_ctl"), "-D", str(data_dir(lab)), "-l", str(logfile), "-w", "-t", "60",
                               "start"))


def stop(lab: Lab, part: str) -> None:
    """Stop the lab postmaster (fast shutdown) if it runs."""
    if running(lab):
        lab.run(part, _as_postgres(str(BIN / "pg_ctl"), "-D", str(data_dir(lab)), "-m", "fast", "-w", "-t", "60",
                                   "stop"))


def sql(lab: Lab, part: str, statement: str, database: str = "postgres") -> str:
    """Run SQL (fed on stdin, so no value appears in the log's command line) and return psql's unaligned output."""
    result = lab.run(part, [str(BIN / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", database],
                     env=client_env(lab), input_text=statement)
    return result.stdout.strip()


def dump(lab: Lab, part: str, database: str, target: Path) -> None:
    """pg_dump the database in custom format to target (written beside it first, then renamed)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    lab.run(part, [str(BIN / "pg_dump"), "-Fc", "-f", str(tmp), database], env=client_env(lab))
    tmp.replace(target)


def restore(lab: Lab, part: str, database: str, source: Path) -> None:
    """Create the database and restore a custom-format dump into it (two parallel jobs)."""
    if not source.exists():
        raise LabError(f"{part}: database dump {source} missing")
    sql(lab, part, f"CREATE DATABASE {database} OWNER {ROLE}")
    lab.run(part, [str(BIN / "pg_restore"), "-j", "2", "--no-owner", "-d", database, str(source)],
            env=client_env(lab))
