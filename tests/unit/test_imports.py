"""Heavy libraries load inside detector load(), never at import time."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_packages_import_without_torch() -> None:
    code = (
        "import sys, worker, tasks, storage, worker.pipeline, worker.settings, tasks.app, tasks.detect, "
        "tasks.cli, tasks.scan, storage.queries\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'open_clip', 'insightface', 'h5py', 'decord') "
        "if m in sys.modules)\n"
        "print(','.join(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout.strip() == ""
