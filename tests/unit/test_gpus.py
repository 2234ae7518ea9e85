"""`dfw worker --gpus`: each child's argv and environment, the dry run, and the supervisor (no GPU needed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tasks.gpus import ChildCommand, child_commands, child_hostname, parse_gpus, supervise
from tests.conftest import REPO, run_cli


def test_parse_gpus() -> None:
    assert parse_gpus("0,1") == ["0", "1"]
    assert parse_gpus(" 3 , GPU-8e2f-aa ") == ["3", "GPU-8e2f-aa"]
    for bad in ("", "0,0", "cuda:0", "0;1"):
        with pytest.raises(ValueError):
            parse_gpus(bad)


def test_each_child_is_pinned_to_one_gpu() -> None:
    base = {"PATH": "/bin", "DFW_BATCH_SIZE": "16", "CUDA_VISIBLE_DEVICES": "0,1,2,3"}
    commands = child_commands(["0", "1"], "detect", "info", None, True, base, python="py")
    assert [c.env["CUDA_VISIBLE_DEVICES"] for c in commands] == ["0", "1"]
    for command in commands:
        assert command.env["DFW_BATCH_SIZE"] == "16" and command.env["PATH"] == "/bin"
        assert command.env["DFW_DEVICE"] == "cuda"
        assert command.argv[:4] == ["py", "-m", "tasks.cli", "worker"]
        assert "--concurrency=1" in command.argv and "--queues=detect" in command.argv
        assert not any(a.startswith("--gpus") for a in command.argv)  # children do not recurse
    hostnames = [a for c in commands for a in c.argv if a.startswith("--hostname=")]
    assert hostnames == ["--hostname=gpu0@%h", "--hostname=gpu1@%h"]
    assert ["--beat" in c.argv for c in commands] == [True, False]  # one reaper per deployment
    assert base["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"  # the parent's environment is not modified


def test_hostnames_are_distinct_with_a_given_name() -> None:
    assert child_hostname("1", "box@node7") == "box-gpu1@node7"
    assert child_hostname("0", "box") == "box-gpu0@%h"


def test_dry_run_shows_one_command_per_gpu() -> None:
    done = run_cli("worker", "--gpus", "0,1", "--dry-run", env={})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("CUDA_VISIBLE_DEVICES=0 ") and "--hostname=gpu0@%h" in lines[0]
    assert lines[1].startswith("CUDA_VISIBLE_DEVICES=1 ") and "--hostname=gpu1@%h" in lines[1]
    assert all("tasks.cli worker" in line and "--concurrency=1" in line for line in lines)


def test_dry_run_without_gpus_is_one_cpu_worker() -> None:
    done = run_cli("worker", "--queues", "explain", "--dry-run", env={})
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert "CUDA_VISIBLE_DEVICES" not in line and "--queues=explain" in line
    assert "--prefetch-multiplier=1" in line
    bad = run_cli("worker", "--gpus", "0", "--concurrency", "2", "--dry-run", env={})
    assert bad.returncode == 2


def fake_child(gpu: str, code: str, tmp_path: Path) -> ChildCommand:
    script = textwrap.dedent(code)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": gpu, "OUT": str(tmp_path / f"gpu{gpu}")}
    return ChildCommand(gpu, [sys.executable, "-c", script], env, {"CUDA_VISIBLE_DEVICES": gpu})


SLEEPER = """
    import os, signal, sys, time
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # warm shutdown: exit 0
    open(os.environ["OUT"], "w").write(os.environ["CUDA_VISIBLE_DEVICES"])
    time.sleep(60)
"""


def test_supervisor_stops_the_others_when_one_fails(tmp_path: Path) -> None:
    failing = fake_child("1", "import time; time.sleep(0.5); raise SystemExit(7)", tmp_path)
    start = time.monotonic()
    status = supervise([fake_child("0", SLEEPER, tmp_path), failing], poll_s=0.05)
    assert status == 7 and time.monotonic() - start < 20
    assert (tmp_path / "gpu0").read_text() == "0"


def test_supervisor_forwards_sigterm(tmp_path: Path) -> None:
    code = f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from tasks.gpus import ChildCommand, supervise
        import os
        script = {textwrap.dedent(SLEEPER)!r}
        kids = [ChildCommand(g, [sys.executable, "-c", script],
                {{**os.environ, "CUDA_VISIBLE_DEVICES": g, "OUT": {str(tmp_path)!r} + "/gpu" + g}}, {{}})
                for g in ("0", "1")]
        raise SystemExit(supervise(kids, poll_s=0.05))
    """
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)])
    deadline = time.monotonic() + 20
    while not ((tmp_path / "gpu0").exists() and (tmp_path / "gpu1").exists()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    parent.send_signal(signal.SIGTERM)
    threading.Timer(20, parent.kill).start()
    assert parent.wait() == 0  # the children shut down warm, so the command exits 0
    assert (tmp_path / "gpu1").read_text() == "1"
