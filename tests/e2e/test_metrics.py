"""End to end: `dfw worker --metrics-port N` serves every pool process's metrics over HTTP; after one good and
one bad object the job counter, the stage histograms and the queue depth gauge moved."""

from __future__ import annotations

import urllib.request

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port
from tests.e2e.conftest import enqueue, running_worker, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

IMAGE = "real/deepface_photos/deepface_img15.jpg"  # content no other service test analyses


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of http://127.0.0.1:PORT/metrics by (name, sorted labels); {} while it is not up."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_endpoint_after_jobs(service_env, s3_client, bucket, dev_dir, queues, redis_url, tmp_path):
    port = free_port()
    env = {**service_env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    s3_client.upload_file(str(dev_dir / IMAGE), bucket, "uploads/photo.jpg")
    s3_client.put_object(Bucket=bucket, Key="uploads/notes.jpg", Body=b"this is not an image\n" * 50)
    # a message nobody consumes here: the explain queue's depth must show it
    client = redis.Redis.from_url(redis_url)
    client.lpush(queues["explain"], b"{}")
    client.close()

    extra = ("--metrics-port", str(port))
    with running_worker(env, queues["detect"], tmp_path / "worker.log", extra) as log:
        wait_for(lambda: bool(scrape(port)), 120, log, "the metrics endpoint")
        enqueue(service_env, f"s3://{bucket}/uploads/photo.jpg", f"s3://{bucket}/uploads/notes.jpg")

        def both_counted() -> bool:
            samples = scrape(port)
            done = value(samples, "dfw_jobs_total", status="done", code="")
            failed = value(samples, "dfw_jobs_total", status="failed", code="not_media")
            return done >= 1 and failed >= 1

        wait_for(both_counted, 240, log, "a done and a failed job in dfw_jobs_total")
        samples = scrape(port)

    for stage in ("download", "probe", "decode", "faces", "detector:dfwmeso", "aggregate", "persist"):
        assert value(samples, "dfw_stage_seconds_count", stage=stage) >= 1, stage
        assert value(samples, "dfw_stage_seconds_sum", stage=stage) > 0, stage
    assert value(samples, "dfw_stage_seconds_bucket", stage="download", le="+Inf") >= 2
    assert value(samples, "dfw_queue_depth", queue=queues["detect"]) == 0
    assert value(samples, "dfw_queue_depth", queue=queues["explain"]) >= 1  # + an explanation if flagged
    assert not any(name == "dfw_gpu_memory_bytes" for name, _ in samples)  # CPU only: no GPU gauge
    assert (tmp_path / "metrics").is_dir() and any((tmp_path / "metrics").glob("*.db"))
