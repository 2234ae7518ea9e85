"""`dfw db`, `dfw results`, `dfw flagged`, `dfw models` as operators run them, on the real Postgres."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from storage.db import session_factory, transaction
from storage.jobs import claim_job, find_or_create_job, finish_job
from storage.migrate import current_revision
from storage.results import replace_results, upsert_media
from storage.schema import Base
from tests.conftest import run_cli
from tests.integration.test_storage import INFO, results

pytestmark = pytest.mark.integration


def dfw(*args: str, database_url: str, models: Path | None = None) -> subprocess.CompletedProcess:
    env = {"DFW_DATABASE_URL": database_url}
    if models:
        env["DFW_MODEL_DIR"] = str(models)
    return run_cli(*args, env=env, timeout=120)


@pytest.fixture
def empty_database() -> str:
    admin_url = os.environ.get("DFW_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    name = f"dfw_mig_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_db_upgrade_creates_the_schema_the_models_describe(empty_database: str) -> None:
    assert "empty" in dfw("db", "current", database_url=empty_database).stdout
    done = dfw("db", "upgrade", database_url=empty_database)
    assert done.returncode == 0, done.stderr
    assert current_revision(empty_database) is not None
    engine = sa.create_engine(empty_database, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        diff = compare_metadata(
            MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata
        )
    engine.dispose()
    assert diff == []
    again = dfw("db", "upgrade", database_url=empty_database)  # idempotent
    assert again.returncode == 0


def test_results_and_flagged(postgres_url: str) -> None:
    factory = session_factory(postgres_url)
    digest = uuid.uuid4().hex * 2
    with transaction(factory) as session:
        media_id = upsert_media(session, digest, INFO)
        job = find_or_create_job(
            session, media_id=media_id, bucket="uploads", key="cli.jpg", pipeline_version="1.cli"
        )
        claim_job(session, job.id, "w", 60, 5)
        replace_results(session, job.id, **results(0.93, "fake"))
        finish_job(session, job.id, {}, "image")
    by_sha = dfw("results", digest, "--json", "--faces", database_url=postgres_url)
    assert by_sha.returncode == 0, by_sha.stderr
    (row,) = json.loads(by_sha.stdout)
    assert row["job_id"] == job.id and row["verdict"]["label"] == "fake" and len(row["faces"]) == 1
    table = dfw("results", str(job.id), database_url=postgres_url)
    assert table.returncode == 0 and "cli.jpg" in table.stdout and "fake" in table.stdout
    flagged = dfw("flagged", "--since", "1h", "--json", "--limit", "1000", database_url=postgres_url)
    assert job.id in [item["job_id"] for item in json.loads(flagged.stdout)]
    assert dfw("results", "12345678901", database_url=postgres_url).returncode == 1
    assert dfw("results", "what", database_url=postgres_url).returncode == 2
    assert dfw("flagged", "--since", "yesterday-ish", database_url=postgres_url).returncode == 2


def test_models_list_and_verify(models_dir: Path, postgres_url: str) -> None:
    listed = dfw("models", "list", "--json", database_url=postgres_url, models=models_dir)
    assert listed.returncode == 0, listed.stderr
    models = {m["name"]: m for m in json.loads(listed.stdout)["models"]}
    assert models["Meso4_DF.h5"]["verified"] and "meso4" in models["Meso4_DF.h5"]["used_by"]
    assert models["face_detection_yunet_2023mar.onnx"]["verified"]
    # the project's own weights are not in the cache: they ship inside the package
    for name in ("dfwnet", "dfwmeso"):
        assert models[f"{name}-v1.safetensors"]["verified"]
        assert name in models[f"{name}-v1.safetensors"]["used_by"]
    detectors = {d["detector"]: d for d in json.loads(listed.stdout)["detectors"]}
    assert detectors["dfwmeso"]["status"] == "available" and detectors["dfwmeso"]["enabled"]  # the default
    assert detectors["dfwmeso"]["version"].startswith("dfwmeso/1@")
    assert detectors["dfwnet"]["status"] == "available" and not detectors["dfwnet"]["enabled"]
    assert detectors["meso4"]["status"] == "available" and not detectors["meso4"]["enabled"]
    assert detectors["meso4"]["version"].startswith("meso4/1@")
    assert detectors["clip_linear"]["status"] == "unavailable"
    assert any("ViT-L-14.pt" in line for line in detectors["clip_linear"]["missing"])
    assert detectors["hf_classifier"]["status"] == "not configured"
    assert dfw("models", "verify", database_url=postgres_url, models=models_dir).returncode == 0
