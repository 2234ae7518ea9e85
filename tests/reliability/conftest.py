"""Services of the reliability tests' own (a PostgreSQL and a Redis they may stop and start), and a worker
they may kill. Everything listens on loopback ports chosen at run time."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port

PG_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))


def as_postgres(*command: str) -> list[str]:
    """A PostgreSQL server command, run as the postgres user when the tests run as root (initdb refuses)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return list(command)


class PrivatePostgres:
    def __init__(self, root: Path) -> None:
        if not PG_BIN:
            pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql")
        self.bin = PG_BIN[-1]
        self.data = root / "pgdata"
        self.socket_dir = root / "pgsock"
        self.port = free_port()
        for path in (root, self.data, self.socket_dir):
            path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(root, "postgres")
            for path in (self.data, self.socket_dir):
                shutil.chown(path, "postgres")
        subprocess.run(
            as_postgres(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"),
            check=True,
            capture_output=True,
        )
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            as_postgres(
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "-l",
                str(self.data / "server.log"),
                "start",
            ),
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        subprocess.run(
            as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"),
            check=True,
            capture_output=True,
        )


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    from storage.migrate import upgrade_database

    # not under pytest's temp folder: that is private to root, and the server runs as the postgres user
    root = Path(tempfile.mkdtemp(prefix="dfw-pg-"))
    root.chmod(0o755)
    server = PrivatePostgres(root / "cluster")
    server.start()
    upgrade_database(server.url)
    yield server
    with contextlib.suppress(subprocess.CalledProcessError):
        server.stop()
    shutil.rmtree(root, ignore_errors=True)


class PrivateRedis:
    """A Redis with an append-only file (as a production broker must run), so a restart loses nothing."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.root),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if redis.Redis.from_url(self.url).ping():
                    return
            except redis.exceptions.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError("private redis did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)  # SIGTERM: Redis flushes the append-only file and exits
            self.process.wait(timeout=20)
            self.process = None


@pytest.fixture
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


class WorkerProcess:
    """`dfw worker` in its own process group, so that SIGKILL reaches the main process and its children."""

    def __init__(self, env: dict[str, str], queues: str, log: Path) -> None:
        self.env, self.queues, self.log = env, queues, log
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.claims_at_start = 0

    def start(self) -> None:
        self.starts += 1
        # jobs claimed before this start, so a test can wait for this start's first claim
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        self.claims_at_start = text.count(": claimed (attempt ")
        sink = self.log.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tasks.cli",
                "worker",
                "--queues",
                self.queues,
                "--concurrency",
                "1",
                "--hostname",
                f"rel-{os.getpid()}-{self.starts}@%h",
            ],
            env=self.env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
        )
        sink.close()

    def kill(self) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None


def reliability_env(
    *,
    database_url: str,
    broker_url: str,
    s3_endpoint: str,
    models_dir: Path,
    work: Path,
    queue: str,
    **extra: str,
) -> dict[str, str]:
    work.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "DFW_DATABASE_URL": database_url,
        "DFW_BROKER_URL": broker_url,
        "DFW_DETECT_QUEUE": queue,
        "DFW_EXPLAIN__POLICY": "none",
        "DFW_S3_ENDPOINT_URL": s3_endpoint,
        "DFW_S3_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "DFW_MODEL_DIR": str(models_dir),
        "DFW_MODEL_FETCH": "false",
        "DFW_TMP_DIR": str(work),
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        **extra,
    }
