"""33 hostile or unusual inputs through a real worker: each ends as a verdict or a `failed` job with a
stable error code, within the task's time limit and with bounded memory, the worker goes on to the next,
and `dfw scan` gives the same answers as the service."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from storage.db import session_factory
from storage.schema import Job, Verdict
from tests.conftest import REPO, run_cli
from tests.e2e.conftest import enqueue
from tests.reliability.conftest import WorkerProcess, reliability_env
from tests.reliability.corpus import build_corpus
from worker.errors import ErrorCode

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

STABLE_CODES = {code.value for code in ErrorCode} - {"internal", "timeout"}
RSS_BOUND = 2 * 1024**3  # the bound for an 8K clip; these inputs must stay far below it
SOFT_LIMIT_S = 60


def service_answers(factory, keys: list[str]) -> dict[str, tuple[str, float]]:  # type: ignore[no-untyped-def]
    """key -> (verdict label or error code, seconds from start to finish) for final jobs."""
    with factory() as session:
        rows = session.execute(
            select(Job, Verdict.label)
            .outerjoin(Verdict, Verdict.job_id == Job.id)
            .where(Job.key.in_(keys), Job.status.in_(("done", "failed")))
        ).all()
    answers = {}
    for job, label in rows:
        seconds = (job.finished_at - (job.started_at or job.created_at)).total_seconds()
        answers[job.key] = (label if job.status == "done" else job.error_code, seconds)
    return answers


# Corrupted H.264 decodes to slightly different pixels from run to run: FFmpeg conceals the damaged
# macroblocks, and with frame threads what it conceals them from depends on timing (every sampling method;
# measured with an earlier dfwnet: 0.9106 to 0.9168 for the same bit-flipped file in 15 `dfw scan` runs; the
# intact clip gave the same score to the last digit every time). A score that close to the threshold can be
# labelled either way, so for these files the service, `dfw scan` and the measuring process must agree on
# the kind of answer only.
CONCEALED = {"bitflip.mp4"}


def kind(answer: str) -> str:
    return "verdict" if answer in {"fake", "real", "uncertain"} else answer


def test_hostile_inputs(
    postgres_url, redis_url, queues, s3_endpoint, s3_client, bucket, models_dir, dev_dir, tmp_path
):
    cases = build_corpus(tmp_path / "corpus", dev_dir)
    assert len(cases) >= 30
    for case in cases:
        s3_client.upload_file(str(tmp_path / "corpus" / case.name), bucket, case.key)
    env = reliability_env(
        database_url=postgres_url,
        broker_url=redis_url,
        s3_endpoint=s3_endpoint,
        models_dir=models_dir,
        work=tmp_path / "downloads",
        queue=queues["detect"],
        DFW_SOFT_TIME_LIMIT_S=str(SOFT_LIMIT_S),
        DFW_TIME_LIMIT_S=str(SOFT_LIMIT_S + 30),
    )
    factory = session_factory(postgres_url)
    keys = [case.key for case in cases]
    worker = WorkerProcess(env, queues["detect"], tmp_path / "worker.log")
    worker.start()
    try:
        enqueue(env, *[f"s3://{bucket}/{key}" for key in keys])
        deadline = time.monotonic() + 600
        while len(service_answers(factory, keys)) < len(keys) and time.monotonic() < deadline:
            time.sleep(1)
    finally:
        worker.stop()
    service = service_answers(factory, keys)
    assert set(service) == set(keys), (
        f"unfinished: {set(keys) - set(service)}\n{worker.log.read_text()[-4000:]}"
    )

    scanned = run_cli("scan", "--json", str(tmp_path / "corpus"), env=env)
    assert scanned.returncode == 0, scanned.stderr
    scan = {
        Path(line["path"]).name: line.get("label") or line["error"]["code"]
        for line in map(json.loads, scanned.stdout.splitlines())
    }
    measured = subprocess.run(
        [
            sys.executable,
            str(REPO / "tests/reliability/measure_inputs.py"),
            *[str(tmp_path / "corpus" / c.name) for c in cases],
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    per_file = {Path(m["path"]).name: m for m in map(json.loads, measured.stdout.splitlines())}

    for case in cases:
        answer, seconds = service[case.key]
        assert answer in STABLE_CODES | {"fake", "real", "uncertain", "no_face"}, (case, answer)
        assert seconds < SOFT_LIMIT_S, (case, seconds)
        if case.expect == "verdict":
            assert answer in {"fake", "real", "uncertain", "no_face"}, (case, answer)
        elif case.expect is not None:
            assert answer == case.expect, (case, answer)
        if case.name in CONCEALED:
            # the same kind of answer (a verdict, or the same error code), not necessarily the same label
            assert kind(scan[case.name]) == kind(answer), (case, scan[case.name], answer)
            assert kind(per_file[case.name]["answer"]) == kind(answer)
        else:
            assert scan[case.name] == answer, (case, scan[case.name], answer)
            assert per_file[case.name]["answer"] == answer
    worst = max(per_file.values(), key=lambda m: m["peak_rss"])
    slowest = max(service.values(), key=lambda v: v[1])
    print(
        "hostile-input figures:",
        json.dumps(
            {
                "cases": len(cases),
                "worst_peak_rss_mb": round(worst["peak_rss"] / 2**20),
                "worst_input": worst["path"],
                "longest_service_s": round(slowest[1], 2),
                "longest_pipeline_s": round(max(m["seconds"] for m in per_file.values()), 2),
            }
        ),
    )
    assert worst["peak_rss"] < RSS_BOUND
