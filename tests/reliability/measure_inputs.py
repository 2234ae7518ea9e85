"""Run by test_hostile_inputs in its own process: analyse each file with the service's pipeline and report,
per file, the answer, the seconds taken and the peak resident memory while it was analysed (Linux: the
peak is reset before each file through /proc/self/clear_refs)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from worker.errors import MediaError
from worker.pipeline import Pipeline
from worker.settings import WorkerSettings


def peak_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    import torch

    torch.set_num_threads(1)
    pipeline = Pipeline(WorkerSettings())
    pipeline.load()
    for name in sys.argv[1:]:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak to the current size
        started = time.perf_counter()
        try:
            answer = pipeline.analyze(Path(name)).verdict.label
        except MediaError as exc:
            answer = exc.code.value
        seconds = time.perf_counter() - started
        print(json.dumps({"path": name, "answer": answer, "seconds": seconds, "peak_rss": peak_rss_bytes()}))


if __name__ == "__main__":
    main()
