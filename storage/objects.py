"""Object stores: S3 through boto3 (streamed, size-capped, hashed on the way) and a local directory.

Errors carry a stable code and say whether a retry can help: a missing or forbidden object is permanent;
throttling, 5xx and network trouble are transient.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from storage.settings import StorageSettings

logger = logging.getLogger(__name__)

CHUNK = 1024 * 1024
MISSING_CODES = {"NoSuchKey", "NoSuchBucket", "404", "NotFound"}
FORBIDDEN_CODES = {"AccessDenied", "403", "Forbidden", "AllAccessDisabled", "InvalidObjectState"}


class ObjectError(Exception):
    def __init__(self, code: str, message: str, permanent: bool) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.permanent = permanent


@dataclass(frozen=True)
class ObjectMeta:
    size: int
    etag: str | None


@dataclass(frozen=True)
class Fetched:
    path: Path
    sha256: str
    size: int
    etag: str | None


class ObjectStore(Protocol):
    def head(self, bucket: str, key: str) -> ObjectMeta: ...

    def fetch(self, bucket: str, key: str, directory: Path, max_bytes: int) -> Fetched: ...


def s3_client(settings: StorageSettings) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=settings.s3_connect_timeout_s,
        read_timeout=settings.s3_read_timeout_s,
        retries={"total_max_attempts": settings.s3_max_attempts, "mode": "adaptive"},
    )
    return boto3.client(
        "s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region, config=config
    )


class S3Objects:
    def __init__(self, client: Any) -> None:
        self.client = client

    def head(self, bucket: str, key: str) -> ObjectMeta:
        try:
            response = self.client.head_object(Bucket=bucket, Key=key)
        except Exception as exc:
            raise classify_s3_error(exc, bucket, key) from exc
        return ObjectMeta(int(response["ContentLength"]), response.get("ETag"))

    def fetch(self, bucket: str, key: str, directory: Path, max_bytes: int) -> Fetched:
        """Stream the object into a new temporary file, refusing it once it passes `max_bytes`."""
        meta = self.head(bucket, key)
        if meta.size > max_bytes:
            raise ObjectError("too_large", f"object is {meta.size} bytes; the limit is {max_bytes}", True)
        try:
            response = (
                self.client.get_object(Bucket=bucket, Key=key, IfMatch=meta.etag)
                if meta.etag
                else (self.client.get_object(Bucket=bucket, Key=key))
            )
        except Exception as exc:
            raise classify_s3_error(exc, bucket, key) from exc
        try:
            path, digest, size = write_capped(iter_body(response["Body"]), directory, max_bytes)
        except ObjectError:
            raise
        except Exception as exc:
            raise ObjectError("object_read", f"reading s3://{bucket}/{key} failed: {exc}", False) from exc
        return Fetched(path, digest, size, meta.etag)


def iter_body(body: Any) -> Any:
    try:
        while chunk := body.read(CHUNK):
            yield chunk
    finally:
        body.close()


class LocalObjects:
    """A directory whose sub-folders are buckets: for development and single-host deployments."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, bucket: str, key: str) -> Path:
        path = (self.root / bucket / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ObjectError("object_forbidden", f"key {key!r} leaves the object root", True)
        return path

    def head(self, bucket: str, key: str) -> ObjectMeta:
        path = self._path(bucket, key)
        if not path.is_file():
            raise ObjectError("object_missing", f"{bucket}/{key} does not exist", True)
        stat = path.stat()
        return ObjectMeta(stat.st_size, f"{stat.st_mtime_ns}-{stat.st_size}")

    def fetch(self, bucket: str, key: str, directory: Path, max_bytes: int) -> Fetched:
        meta = self.head(bucket, key)
        if meta.size > max_bytes:
            raise ObjectError("too_large", f"object is {meta.size} bytes; the limit is {max_bytes}", True)
        with self._path(bucket, key).open("rb") as handle:
            path, digest, size = write_capped(iter(lambda: handle.read(CHUNK), b""), directory, max_bytes)
        return Fetched(path, digest, size, meta.etag)


def write_capped(chunks: Any, directory: Path, max_bytes: int) -> tuple[Path, str, int]:
    """Write byte chunks to a new file in `directory`, hashing them; the file is removed on any error."""
    handle, name = tempfile.mkstemp(prefix="dfw-", suffix=".media", dir=directory)
    path = Path(name)
    digest = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(handle, "wb") as out:
            for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise ObjectError(
                        "too_large", f"object passed the {max_bytes}-byte limit while streaming", True
                    )
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path, digest.hexdigest(), size


def classify_s3_error(exc: Exception, bucket: str, key: str) -> ObjectError:
    from botocore.exceptions import ClientError

    where = f"s3://{bucket}/{key}"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in MISSING_CODES or status == 404:
            return ObjectError("object_missing", f"{where} does not exist", True)
        if code in FORBIDDEN_CODES or status == 403:
            return ObjectError("object_forbidden", f"access to {where} is denied", True)
        if code in {"PreconditionFailed", "412"} or status == 412:
            return ObjectError("object_changed", f"{where} changed while it was read", False)
        return ObjectError("object_store", f"{where}: {code or status}: {error.get('Message', '')}", False)
    return ObjectError("object_store", f"{where}: {type(exc).__name__}: {exc}", False)
