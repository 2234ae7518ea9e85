"""Stable error codes. Callers' scripts and the jobs table depend on these strings: never rename one."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    NOT_FOUND = "not_found"  # a local path that does not exist
    EMPTY = "empty"  # zero bytes
    NOT_MEDIA = "not_media"  # neither a decodable image nor a video container
    UNSUPPORTED = "unsupported"  # media, but a format or codec this service does not analyse
    CORRUPT = "corrupt"  # looks like media, cannot be decoded
    TOO_LARGE = "too_large"  # over max_bytes
    TOO_MANY_PIXELS = "too_many_pixels"  # width x height over max_pixels
    TOO_LONG = "too_long"  # duration or frame count over the caps
    NO_FRAMES = "no_frames"  # a video with no decodable frame
    OBJECT_MISSING = "object_missing"  # S3 NoSuchKey / NoSuchBucket
    OBJECT_FORBIDDEN = "object_forbidden"  # S3 AccessDenied
    MODEL_UNAVAILABLE = "model_unavailable"  # a configured detector's weights are absent
    TIMEOUT = "timeout"
    INTERNAL = "internal"


class MediaError(Exception):
    """A permanent failure to analyse one input: retrying cannot help."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message


class ModelUnavailable(Exception):
    """A weight file is absent from the cache and could not be fetched, or its hash is wrong."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"model {name!r} unavailable: {reason}")
        self.name = name
        self.reason = reason
