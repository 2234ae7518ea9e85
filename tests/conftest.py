"""Shared fixtures. Unit tests need no services; integration and e2e fixtures talk to the real Postgres,
Redis and an S3 endpoint (moto's server) over sockets on loopback."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_root() -> Path:
    """The shared folder next to the repository (weights and dev media); DFW_SHARED_DIR overrides."""
    return Path(os.environ.get("DFW_SHARED_DIR", REPO.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    root = shared_root()
    if not (root / "models").is_dir():
        pytest.fail(f"shared folder with models/ and data/dev/ not found at {root}; set DFW_SHARED_DIR")
    return root


@pytest.fixture(scope="session")
def models_dir(shared_dir: Path) -> Path:
    return shared_dir / "models"


@pytest.fixture(scope="session")
def dev_dir(shared_dir: Path) -> Path:
    return shared_dir / "data" / "dev"


@pytest.fixture(scope="session")
def dev_manifest(dev_dir: Path) -> list[dict[str, str]]:
    with (dev_dir / "manifest.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def worker_env(monkeypatch: pytest.MonkeyPatch, models_dir: Path) -> None:
    """Settings for in-process pipeline use: the shared weights as the read-only model cache."""
    monkeypatch.setenv("DFW_MODEL_DIR", str(models_dir))
    monkeypatch.setenv("DFW_MODEL_FETCH", "false")


def run_cli(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`dfw ARGS` in a new process, as operators run it, with `env` over this process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "tasks.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200", **env},
        cwd=REPO,
        timeout=timeout,
    )


@pytest.fixture(scope="session", autouse=True)
def torch_one_thread() -> Iterator[None]:
    """Model code runs on one thread in tests (two cores, shared with the services and workers)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database with the schema created by the Alembic migrations; dropped afterwards."""
    import sqlalchemy as sa

    from storage.migrate import upgrade_database

    admin_url = os.environ.get("DFW_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    name = f"dfw_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    upgrade_database(url)
    yield url
    from storage.db import get_engine

    get_engine(url).dispose()
    get_engine.cache_clear()
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ.get("DFW_TEST_REDIS", "redis://127.0.0.1:6379/15")


@pytest.fixture
def queues(redis_url: str) -> Iterator[dict[str, str]]:
    """Queues of this test's own, so that test runs sharing the Redis server never see each other's tasks."""
    import redis

    tag = uuid.uuid4().hex[:10]
    names = {name: f"{name}-test-{tag}" for name in ("detect", "explain", "webhooks")}
    yield names
    client = redis.Redis.from_url(redis_url)
    for name in names.values():
        for key in client.scan_iter(match=f"{name}*"):
            client.delete(key)
    client.close()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 endpoint on loopback (moto's threaded server); boto3 talks to it over HTTP."""
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_client(s3_endpoint: str):  # type: ignore[no-untyped-def]
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def bucket(s3_client) -> str:  # type: ignore[no-untyped-def]
    name = f"uploads-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=name)
    return name
