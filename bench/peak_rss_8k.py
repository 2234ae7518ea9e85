"""Peak RSS of `dfw scan` on an 8K clip (issue 6, part 5d; goal <= 2 GB). Not a test.

Makes a 7680x4320 H.264 clip with PyAV (a dev photo with faces, scaled up, panning over a textured
background; cached in --work), then runs `dfw scan --json` on it in a child process, once per setting of
`DFW_SAMPLING__DECODE_AHEAD` (2 = the default background decoder, 0 = decoding on the analysing thread),
and once on a small dev video for the floor (interpreter, torch, models). The child's peak RSS is
`ru_maxrss` from `os.wait4` for that child alone. Prints the numbers and writes JSON.

    python bench/peak_rss_8k.py [--seconds 2] [--frames 16] [--out bench-peak-rss-8k.json]

`--repo DIR` runs another checkout's `dfw` (e.g. an export of an older commit) for a before/after number.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import av.video.stream
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.devset import bench_parser  # noqa: E402

FACE_PHOTO = "real/deepface_photos/deepface_couple.jpg"  # two faces
WIDTH, HEIGHT, FPS = 7680, 4320, 24
GOAL_BYTES = 2 * 1024**3


def background(height: int, width: int) -> np.ndarray:
    """A gradient with coarse noise: cheap to encode, not flat."""
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 48, (height // 64 + 1, width // 64 + 1, 3), dtype=np.uint8)
    noise = np.kron(blocks, np.ones((64, 64, 1), np.uint8))[:height, :width]
    ramp = np.linspace(40, 180, width, dtype=np.float32)[None, :, None]
    return np.clip(ramp + noise, 0, 255).astype(np.uint8)


def make_8k_clip(path: Path, photo: Path, seconds: float) -> Path:
    """7680x4320 H.264 (x264 ultrafast), the photo 4800 px wide panning 8 px a frame; cached by name."""
    if path.is_file():
        return path
    scene = background(HEIGHT, WIDTH + 8 * round(seconds * FPS))
    picture = Image.open(photo).convert("RGB")
    side = 4800
    picture = picture.resize((side, round(side * picture.height / picture.width)), Image.Resampling.LANCZOS)
    pasted = np.asarray(picture)[: HEIGHT - 200]
    top, left = (HEIGHT - pasted.shape[0]) // 2, 1200
    scene[top : top + pasted.shape[0], left : left + pasted.shape[1]] = pasted
    partial = path.with_suffix(".part.mp4")
    with av.open(str(partial), mode="w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        assert isinstance(stream, av.video.stream.VideoStream)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "26"}
        for index in range(round(seconds * FPS)):
            x = 8 * index
            image = np.ascontiguousarray(scene[:, x : x + WIDTH])
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image)))
        container.mux(stream.encode(None))
    partial.rename(path)
    return path


def scan_peak(repo: Path, target: Path, env: dict[str, str]) -> dict[str, Any]:
    """`dfw scan --json target` in a child process: its answer, wall time and peak RSS (bytes)."""
    command = [sys.executable, "-m", "tasks.cli", "scan", "--json", str(target)]
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as errors:
        child = subprocess.Popen(
            command,
            cwd=repo,
            env={**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1", **env},
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        assert child.stdout is not None
        output = child.stdout.read()  # until the child exits; then reap it here, for its own rusage
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        errors.seek(0)
        last_error = errors.read().strip().splitlines()[-1:]
    lines = [line for line in output.splitlines() if line.startswith("{")]
    answer = json.loads(lines[-1]) if lines else {"error": last_error}
    return {
        "peak_rss_bytes": usage.ru_maxrss * 1024,  # Linux reports KiB
        "seconds": time.perf_counter() - start,
        "exit_code": child.returncode,
        "label": answer.get("label"),
        "score": answer.get("score"),
        "coverage": answer.get("coverage"),
        "error": answer.get("error"),
    }


def main() -> None:
    parser = bench_parser(__doc__, "bench-peak-rss-8k.json")
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout whose `dfw scan` is measured")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "dfw-bench-8k")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--frames", type=int, default=16)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    dev = args.shared / "data" / "dev"
    start = time.perf_counter()
    clip = make_8k_clip(args.work / f"8k-{args.seconds:g}s.mp4", dev / FACE_PHOTO, args.seconds)
    made_s = time.perf_counter() - start
    print(f"clip {clip.name}: {WIDTH}x{HEIGHT}, {clip.stat().st_size / 1e6:.1f} MB (made in {made_s:.0f} s)")
    env = {
        "DFW_MODEL_DIR": str(args.shared / "models"),
        "DFW_MODEL_FETCH": "false",
        "DFW_DEVICE": "cpu",
        "DFW_SAMPLING__FRAMES_PER_VIDEO": str(args.frames),
        "DFW_DETECTORS": args.detectors,
    }
    runs = {
        "floor (small video)": scan_peak(args.repo, dev / "real/inthewild_video/itw_RealReagan.mp4", env),
        "8k decode_ahead=2": scan_peak(args.repo, clip, {**env, "DFW_SAMPLING__DECODE_AHEAD": "2"}),
        "8k decode_ahead=0": scan_peak(args.repo, clip, {**env, "DFW_SAMPLING__DECODE_AHEAD": "0"}),
    }
    frame_mb = WIDTH * HEIGHT * 3 / 1e6
    all_mb = args.frames * frame_mb
    print(f"one 8K RGB frame: {frame_mb:.0f} MB; {args.frames} of them: {all_mb / 1e3:.2f} GB")
    print(f"{'run':<24}{'peak RSS':>12}{'seconds':>9}  answer")
    for name, run in runs.items():
        answer = run["error"] or f"{run['label']} {run['score']} {run['coverage']}"
        print(f"{name:<24}{run['peak_rss_bytes'] / 1024**3:>10.2f} GB{run['seconds']:>9.1f}  {answer}")
    worst = max(r["peak_rss_bytes"] for n, r in runs.items() if n.startswith("8k"))
    print(f"8K peak {worst / 1024**3:.2f} GB (goal <= 2 GB: {'met' if worst <= GOAL_BYTES else 'NOT met'})")
    payload = {"clip": {"width": WIDTH, "height": HEIGHT, "seconds": args.seconds, "fps": FPS}, "runs": runs}
    args.out.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
