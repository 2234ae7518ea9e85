"""`dfw worker --gpus 0,1`: one pinned Celery worker process per GPU, supervised by the command.

Each child is `python -m tasks.cli worker` (without --gpus) started with `CUDA_VISIBLE_DEVICES=<id>` in
its environment, so the variable is set before the interpreter starts and long before torch is imported;
inside the child the GPU is `cuda:0`. Each child runs one prefork process (concurrency 1, prefetch 1)
that loads its models once at start. The parent forwards SIGTERM / SIGINT to every child (Celery's warm
shutdown), stops the others when one fails, and exits with the first non-zero exit status.
"""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import FrameType


@dataclass(frozen=True)
class ChildCommand:
    gpu: str
    argv: list[str]
    env: dict[str, str]  # the whole environment of the child
    changed: dict[str, str]  # what differs from the parent's environment

    def shell(self) -> str:
        """The command as a shell line, e.g. for --dry-run."""
        return shlex.join([f"{k}={v}" for k, v in sorted(self.changed.items())] + self.argv)


def parse_gpus(text: str) -> list[str]:
    """'0,1' -> ['0', '1']; GPU indices or UUIDs (GPU-...), no duplicates. Raises ValueError."""
    gpus = [part.strip() for part in text.split(",") if part.strip()]
    if not gpus:
        raise ValueError("--gpus needs at least one GPU id, e.g. --gpus 0,1")
    bad = [g for g in gpus if not re.fullmatch(r"\d+|(GPU|MIG)-[0-9A-Za-z-]+", g)]
    if bad:
        raise ValueError(f"--gpus: {', '.join(bad)} is not a GPU index or UUID")
    if len(set(gpus)) != len(gpus):
        raise ValueError("--gpus lists a GPU twice")
    return gpus


def child_hostname(gpu: str, hostname: str | None) -> str:
    """A distinct Celery node name per GPU: gpu0@%h, or NAME-gpu0@HOST from --hostname NAME@HOST."""
    tag = f"gpu{gpu}" if gpu.isdigit() else gpu
    if not hostname:
        return f"{tag}@%h"
    name, _, host = hostname.partition("@")
    return f"{name}-{tag}@{host or '%h'}"


def child_commands(
    gpus: Sequence[str],
    queues: str,
    loglevel: str,
    hostname: str | None,
    beat: bool,
    base_env: Mapping[str, str],
    python: str = sys.executable,
) -> list[ChildCommand]:
    """The argv and environment of each GPU's worker process (the periodic reaper runs in the first only)."""
    commands = []
    for position, gpu in enumerate(gpus):
        argv = [
            python,
            "-m",
            "tasks.cli",
            "worker",
            f"--queues={queues}",
            "--concurrency=1",
            f"--loglevel={loglevel}",
            f"--hostname={child_hostname(gpu, hostname)}",
        ]
        if beat and position == 0:
            argv.append("--beat")
        # only one GPU is visible in the child, as cuda:0; "cuda" falls back to cpu with a warning
        changed = {"CUDA_VISIBLE_DEVICES": gpu, "DFW_DEVICE": "cuda"}
        commands.append(ChildCommand(gpu, argv, {**base_env, **changed}, changed))
    return commands


def exit_status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode  # killed by signal N -> 128 + N


def supervise(commands: Sequence[ChildCommand], poll_s: float = 0.2, stop_timeout_s: float = 60.0) -> int:
    """Start every child, forward SIGTERM/SIGINT, return when all have exited (first failure's status)."""
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    status = 0
    try:
        for command in commands:
            # own process group: a terminal's Ctrl-C reaches the children once, through forward()
            children.append(subprocess.Popen(command.argv, env=command.env, process_group=0))
        deadline: float | None = None
        while [child.poll() for child in children].count(None):  # poll every child, no short circuit
            failed = [c for c in children if c.returncode not in (None, 0)]
            if failed and not status:
                status = exit_status(failed[0].returncode)
            if (failed or stopping) and deadline is None:
                deadline = time.monotonic() + stop_timeout_s
                forward(signal.SIGTERM, None)
            if deadline is not None and time.monotonic() > deadline:
                for child in children:
                    if child.poll() is None:
                        child.kill()
            time.sleep(poll_s)
        failed = [c for c in children if c.returncode != 0]
        if failed and not status:
            status = exit_status(failed[0].returncode)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    return status
