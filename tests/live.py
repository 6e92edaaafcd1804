"""Real product processes (the web server, qcluster) for tests, working on the test database."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Collection
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parents[1]
# bin/serve's web server, one process.
WEB = [
    *(sys.executable, "-m", "uvicorn", "techanal.asgi:application", "--host", "127.0.0.1", "--port", "{port}"),
    *("--loop", "uvloop", "--http", "techanal.http_server:ApiHttpToolsProtocol", "--ws", "websockets-sansio"),
    *("--lifespan", "off", "--timeout-graceful-shutdown", "5", "--no-access-log"),
]
QCLUSTER = [sys.executable, "manage.py", "qcluster"]


def database_url() -> str:
    """The test database, as a URL a child process can open."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def ensure_reaper_schedule() -> None:
    """Migration 0004's schedule, which a transactional test's flush removes: restore it."""
    from django_q.models import Schedule

    Schedule.objects.update_or_create(
        name="techanal: reap training jobs",
        defaults={"func": "models_mgmt.tasks.training_jobs_reap", "schedule_type": "I", "minutes": 1, "repeats": -1},
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveProcesses:
    """Starts commands in their own process groups (so workers die with them) and logs to a file."""

    def __init__(self, artifacts: Path, log: Path, **env: str):
        self.artifacts = artifacts
        self.log_path = log
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": database_url(),
            "ARTIFACTS_DIR": str(artifacts),
            "ENV_FILE": "/nonexistent",
        }
        self.env.pop("REDIS_URL", None)
        self.env.update(env)
        self.processes: list[subprocess.Popen] = []
        self.log = log.open("ab")

    def start(self, command: list[str], **format_args: object) -> subprocess.Popen:
        process = subprocess.Popen(
            [part.format(**format_args) for part in command],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def web(self, port: int | None = None) -> int:
        """Start the web server on a free port (or on `port`, e.g. to restart it where clients reconnect)."""
        port = port or free_port()
        self.start(WEB, port=port)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                return port
            time.sleep(0.2)
        raise RuntimeError(f"the web server did not listen on {port}:\n{self.output()[-3000:]}")

    def qcluster(self) -> subprocess.Popen:
        if self.env["DATABASE_URL"] == database_url():  # a private database keeps its migrated schedule
            ensure_reaper_schedule()
        return self.start(QCLUSTER)

    def kill(self, process: subprocess.Popen) -> None:
        """SIGKILL one started command's whole process group (a crash: no cleanup runs) and reap it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        self.processes.remove(process)

    def stop(self) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        self.processes.clear()
        self.log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_for(predicate: Callable[[], object], timeout: float, what: str, log: Callable[[], str] = str) -> object:
    """Poll until `predicate` returns something truthy; on timeout fail with the processes' log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{log()[-4000:]}")


def job_finished(job_id: int) -> Callable[[], object]:
    """A `wait_for` predicate: the job once it is in a terminal state."""
    from models_mgmt.choices import TERMINAL_JOB_STATUSES
    from models_mgmt.models import TrainingJob

    def check() -> object:
        job = TrainingJob.objects.get(pk=job_id)
        return job if job.status in TERMINAL_JOB_STATUSES else None

    return check


def processes_naming(path: str | Path, *also: bytes, exclude: Collection[int] = ()) -> list[int]:
    """The pids of every process on this machine, but this one and `exclude`, whose command line
    names `path` (and each of `also`): what a run launched on a work dir (torchrun, its ranks) left."""
    needles = [str(path).encode(), *also]
    skip = {os.getpid(), *exclude}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # it ended while we looked
            continue
        if all(needle in cmdline for needle in needles):
            found.append(int(entry.name))
    return found


def wait_until_gone(path: str | Path, *also: bytes, exclude: Collection[int] = (), timeout: float = 60) -> list[int]:
    """Poll `processes_naming` until none is left (a process may take a moment to be reaped after its
    launcher returned); the ones still there after `timeout` seconds, so a test asserts `== []`."""
    deadline = time.monotonic() + timeout
    while (left := processes_naming(path, *also, exclude=exclude)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def dead_pid() -> int:
    """The pid of a process that has ended (and been waited for): no process has it now."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def django_in_a_process(code: str, *, settings_module: str, drop: Collection[str] = (), **env: str):
    """Run `code` after django.setup() in a fresh interpreter with this environment (the variables in
    `drop` removed, no .env file read): what a process started that way sees."""
    clean = {k: v for k, v in os.environ.items() if k not in drop}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); " + code],
        cwd=Path(__file__).resolve().parents[1],
        env={**clean, "DJANGO_SETTINGS_MODULE": settings_module, "ENV_FILE": "/nonexistent/.env", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
