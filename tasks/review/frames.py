"""The frames a job's detectors saw: fetched again and re-sampled as the explain task does, served as JPEGs.

Sampling is deterministic (uniformly spaced frame indices for the recorded `frames_per_video`, with the
recorded decoder), so the frame indices stored with the scores name the same pictures again. Only the
frames a page shows are encoded, and they are kept for a few media so that a page's images cost one decode.
"""

from __future__ import annotations

import io
import logging
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from storage.objects import ObjectError, ObjectStore
from worker.media import Frame, probe_media, sample_frames
from worker.media.frames import replay_method
from worker.settings import MediaLimits, SamplingMethod

logger = logging.getLogger(__name__)

JPEG_QUALITY = 85


class FramesUnavailable(Exception):
    """The media cannot be shown: no stored object with its content is left, or it no longer decodes."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def pick_frames(frames: Sequence[dict[str, Any]], cap: int) -> list[dict[str, Any]]:
    """At most `cap` frames, uniformly spaced over the sampled ones, first and last included."""
    if len(frames) <= cap:
        return list(frames)
    if cap == 1:
        return [frames[0]]
    positions = sorted({round(i * (len(frames) - 1) / (cap - 1)) for i in range(cap)})
    return [frames[p] for p in positions]


@dataclass(frozen=True)
class MediaCopy:
    """Where the analysed content can be fetched again, and how the job sampled it."""

    sources: tuple[tuple[str, str], ...]  # (bucket, key): the job's own object first
    sha256: str
    frames_per_video: int
    method: SamplingMethod

    @classmethod
    def of_job(
        cls, job: Any, sha256: str, other_sources: Sequence[tuple[str, str]], default_frames: int
    ) -> MediaCopy:
        sampling = (job.lineage or {}).get("sampling", {})
        own = (job.bucket, job.key)
        return cls(
            sources=(own, *(s for s in other_sources if s != own)),
            sha256=sha256,
            frames_per_video=int(sampling.get("frames_per_video", default_frames)),
            method=replay_method(job.sampling_method),
        )


def decode_frames(objects: ObjectStore, copy: MediaCopy, limits: MediaLimits, tmp_dir: Path) -> list[Frame]:
    """Fetch the first source that still holds the analysed content, and sample it as the job did."""
    with tempfile.TemporaryDirectory(prefix="dfw-review-", dir=tmp_dir) as work:
        for bucket, key in copy.sources:
            try:
                fetched = objects.fetch(bucket, key, Path(work), limits.max_bytes)
            except ObjectError as exc:
                if not exc.permanent:
                    raise FramesUnavailable(str(exc), transient=True) from exc
                logger.info("s3://%s/%s cannot be read again: %s", bucket, key, exc)
                continue
            if fetched.sha256 != copy.sha256:
                logger.info("s3://%s/%s now holds other content; trying the next copy", bucket, key)
                fetched.path.unlink(missing_ok=True)
                continue
            try:
                info = probe_media(fetched.path, limits)
                sample = sample_frames(fetched.path, info, limits, copy.frames_per_video, method=copy.method)
                return list(sample.frames)
            except Exception as exc:  # the content decoded once; a failure now is worth saying, not a 500
                raise FramesUnavailable(f"the media does not decode again: {exc}") from exc
    raise FramesUnavailable("no stored object holds this content any more")


def encode_jpeg(image: np.ndarray, long_side: int) -> bytes:
    """An RGB frame as a JPEG, downscaled so its longer side is at most `long_side`."""
    picture = Image.fromarray(image)
    picture.thumbnail((long_side, long_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    picture.save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


class FrameCache:
    """JPEGs of the shown frames of the most recently viewed media (LRU), decoded once per media.

    A page's images arrive as parallel requests: the first decodes, the others wait for it on a per-job lock.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[int, dict[int, bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self._job_locks: dict[int, threading.Lock] = {}

    def _lookup(self, job_id: int) -> dict[int, bytes] | None:
        with self._lock:
            entry = self._entries.get(job_id)
            if entry is not None:
                self._entries.move_to_end(job_id)
            return entry

    def get(self, job_id: int, load: Callable[[], dict[int, bytes]]) -> dict[int, bytes]:
        entry = self._lookup(job_id)
        if entry is not None:
            return entry
        with self._lock:
            job_lock = self._job_locks.setdefault(job_id, threading.Lock())
        with job_lock:
            entry = self._lookup(job_id)
            if entry is None:
                entry = load()
                with self._lock:
                    self._entries[job_id] = entry
                    while len(self._entries) > self.capacity:
                        evicted, _ = self._entries.popitem(last=False)
                        self._job_locks.pop(evicted, None)
            return entry
