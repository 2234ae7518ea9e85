"""Queue overhead through real Redis and Postgres with a no-op detect task (bench/queue_app.py).

Creates a scratch database (migrated with storage.migrate.upgrade_database) and a unique Redis queue,
starts 1 and then 2 Celery worker processes (concurrency 1 and prefetch 1 each, as `dfw worker --gpus`
runs them), and measures: enqueue-to-start latency p50/p95 for jobs sent at a pace below capacity, and
jobs/minute for a burst (first send to last finish). Each job row is created in Postgres before its
message is sent, like `dfw enqueue` + the detect task. Goals: p50 <= 20 ms, >= 1,000 jobs/min per process.
Drops the database and queue at the end. Prints the numbers and writes JSON.

    python bench/queue_overhead.py [--paced 100] [--burst 400] [--out bench-queue-overhead.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from storage.db import session_factory, transaction  # noqa: E402
from storage.jobs import find_or_create_job  # noqa: E402
from storage.migrate import upgrade_database  # noqa: E402
from storage.results import upsert_media  # noqa: E402
from storage.schema import Job  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def create_jobs(factory: sa.orm.sessionmaker, count: int, tag: str) -> list[int]:
    with transaction(factory) as session:
        media = upsert_media(
            session,
            uuid.uuid4().hex * 2,
            {"kind": "image", "format": "jpeg", "size_bytes": 1, "width": 8, "height": 8},
        )
        return [
            find_or_create_job(
                session, media_id=media, bucket="b", key=f"{tag}-{i}", pipeline_version=f"{tag}-{i}"
            ).id
            for i in range(count)
        ]


def wait_done(factory: sa.orm.sessionmaker, ids: list[int], timeout: float) -> list[dict[str, float]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with factory() as session:
            rows = session.execute(
                sa.select(Job.timings, Job.finished_at).where(Job.id.in_(ids), Job.status == "done")
            ).all()
        if len(rows) == len(ids):
            return [{**r.timings, "finished": r.finished_at.timestamp()} for r in rows]
        time.sleep(0.2)
    raise TimeoutError(f"{len(rows)} of {len(ids)} jobs done")


def run(
    processes: int, factory: sa.orm.sessionmaker, env: dict[str, str], paced: int, burst: int
) -> dict[str, float]:
    from bench.queue_app import noop_detect

    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "bench.queue_app",
                "worker",
                "--pool=prefork",
                "--concurrency=1",
                "--prefetch-multiplier=1",
                f"--queues={env['BENCH_QUEUE']}",
                "--loglevel=warning",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                f"--hostname=bench{i}-{uuid.uuid4().hex[:6]}@%h",
            ],
            env=env,
            cwd=REPO,
        )
        for i in range(processes)
    ]
    try:
        warm = create_jobs(factory, 2 * processes, f"warm{processes}")
        for job in warm:
            noop_detect.delay(job, time.time())
        wait_done(factory, warm, 120)
        ids = create_jobs(factory, paced, f"paced{processes}")
        for job in ids:
            noop_detect.delay(job, time.time())
            time.sleep(0.05)
        latencies = [r["latency_s"] * 1000 for r in wait_done(factory, ids, 120)]
        ids = create_jobs(factory, burst, f"burst{processes}")
        start = time.time()
        for job in ids:
            noop_detect.delay(job, time.time())
        rows = wait_done(factory, ids, 300)
        elapsed = max(r["finished"] for r in rows) - start
        return {
            "processes": processes,
            "latency_p50_ms": percentile(latencies, 0.5),
            "latency_p95_ms": percentile(latencies, 0.95),
            "jobs_per_min": burst / elapsed * 60,
            "jobs_per_min_per_process": burst / elapsed * 60 / processes,
        }
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("DFW_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--paced", type=int, default=100)
    parser.add_argument("--burst", type=int, default=400)
    parser.add_argument("--out", type=Path, default=Path("bench-queue-overhead.json"))
    args = parser.parse_args()
    name = f"bench_queue_{uuid.uuid4().hex[:8]}"
    queue = f"bench-noop-{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(args.postgres, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(args.postgres).set(database=name).render_as_string(hide_password=False)
    env = {**os.environ, "BENCH_BROKER": args.broker, "BENCH_QUEUE": queue, "BENCH_DATABASE": url}
    os.environ.update({k: env[k] for k in ("BENCH_BROKER", "BENCH_QUEUE", "BENCH_DATABASE")})
    try:
        upgrade_database(url)
        factory = session_factory(url)
        results = [run(n, factory, env, args.paced, args.burst) for n in (1, 2)]
        factory.kw["bind"].dispose()
    finally:
        import redis

        redis.Redis.from_url(args.broker).delete(queue, *[f"{queue}\x06\x16{i}" for i in range(10)])
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    print(
        f"no-op detect task via Redis + Postgres; {args.paced} paced jobs (50 ms apart), "
        f"{args.burst} burst jobs"
    )
    print(f"{'processes':>10}{'p50 ms':>9}{'p95 ms':>9}{'jobs/min':>10}{'per process':>13}")
    for r in results:
        print(f"{r['processes']:>10}{r['latency_p50_ms']:>9.1f}{r['latency_p95_ms']:>9.1f}{r['jobs_per_min']:>10.0f}"
              f"{r['jobs_per_min_per_process']:>13.0f}")  # fmt: skip
    scaling = results[1]["jobs_per_min"] / results[0]["jobs_per_min"]
    print(
        f"2 processes / 1 process throughput: {scaling:.2f}x (goals: p50 <= 20 ms, >= 1000 jobs/min/process)"
    )
    args.out.write_text(json.dumps({"runs": results, "scaling_2_vs_1": scaling}, indent=2) + "\n")


if __name__ == "__main__":
    main()
