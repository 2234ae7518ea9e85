"""Model store: the manifest of known weight files, a local cache, sha256 checks and fetching.

A file already in the cache (`DFW_MODEL_DIR`) with the right sha256 is used as is, offline. A missing
file is fetched from its sources in order (https://, s3://bucket/key, hf://org/repo@revision/file, or a
local path) into a temporary file, hash-checked, then moved into place. Third-party weights are never
committed; the project's own trained weights ship inside the package (`worker/weights/`), which the store
reads as a second, read-only cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from worker.errors import ModelUnavailable

logger = logging.getLogger(__name__)

CHUNK = 1024 * 1024
PACKAGED_DIR = Path(__file__).parent / "weights"  # weights this project trained and ships


@dataclass(frozen=True)
class ModelFile:
    name: str
    sha256: str
    size: int | None  # None when the publisher does not state it; the sha256 is always checked
    license: str
    sources: tuple[str, ...]
    description: str = ""


MANIFEST: dict[str, ModelFile] = {
    entry.name: entry
    for entry in (
        ModelFile(
            name="face_detection_yunet_2023mar.onnx",
            sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
            size=232589,
            license="MIT",
            sources=(
                "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/"
                "face_detection_yunet_2023mar.onnx",
            ),
            description="YuNet face detector (boxes + 5 landmarks) for cv2.FaceDetectorYN",
        ),
        ModelFile(
            name="Meso4_DF.h5",
            sha256="036ed30d04ffd9c7506f825b97c86aa64915f5818931da96817b169aad790af5",
            size=156128,
            license="Apache-2.0",
            sources=("https://github.com/DariusAf/MesoNet/raw/master/weights/Meso4_DF.h5",),
            description="MesoNet Meso4 trained on face swaps (Keras weights; output P(real))",
        ),
        ModelFile(
            name="dfwnet-v1.safetensors",
            sha256="428c9c18d81cf7ac8c32d6de31a1ac5acf1f431cee579ad126a3125e1aaadf69",
            size=650228,
            license="Apache-2.0 (this project's weights; trained on research-only data, see the README)",
            sources=(),  # shipped in the package (worker/weights); `dfw train` reproduces it (README)
            description="dfwnet, the project's own CPU face detector (dfw train dfwnet --split dev-v1)",
        ),
        ModelFile(
            name="dfwmeso-v1.safetensors",
            sha256="d88a626bf9b31f50c6b17ab7a6a79ace699e903fb5f5e6457f52b67080c32ce2",
            size=114660,
            license=(
                "Apache-2.0 (this project's fine-tune of MesoNet's Apache-2.0 Meso4_DF weights; trained on "
                "research-only data, see the README)"
            ),
            sources=(),  # shipped in the package (worker/weights); `dfw train` reproduces it (README)
            description="dfwmeso, Meso4 fine-tuned by this project (dfw train dfwmeso --split dev-v1)",
        ),
        ModelFile(
            name="Meso4_F2F.h5",
            sha256="bcfda015d217b9f8d6557693edbdf9f4e79cfd22672541968dd0e2954462b5d7",
            size=156128,
            license="Apache-2.0",
            sources=("https://github.com/DariusAf/MesoNet/raw/master/weights/Meso4_F2F.h5",),
            description="MesoNet Meso4 trained on Face2Face (Keras weights; output P(real))",
        ),
        ModelFile(
            name="scrfd_500m_bnkps.onnx",
            sha256="6c6ba7956684796d7d582bfa1ab95dfe01dd280159f6bff1e23c1bc32bcc8431",
            size=2529618,
            license="InsightFace models: non-commercial research only",
            sources=(
                "https://github.com/ShiqiYu/libfacedetection.train/raw/204b0c9/onnx/scrfd_500m_bnkps.onnx",
            ),
            description="SCRFD-500M face detector with keypoints (insightface format)",
        ),
        ModelFile(
            name="univfd_fc_weights.pth",
            sha256="477100745713bcc957beb2b40859536859b6483fd6301b3b9293151b194c7847",
            size=4083,
            license="MIT",
            sources=(
                "https://github.com/WisconsinAIVision/UniversalFakeDetect/raw/main/"
                "pretrained_weights/fc_weights.pth",
            ),
            description="UnivFD linear head on CLIP ViT-L/14 image features",
        ),
        ModelFile(
            name="ViT-L-14.pt",
            # OpenAI publishes each CLIP archive under a URL that embeds the file's sha256.
            sha256="b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836",
            size=None,
            license="MIT (OpenAI CLIP)",
            sources=(
                "https://openaipublic.azureedge.net/clip/models/"
                "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
            ),
            description="OpenAI CLIP ViT-L/14 (TorchScript archive), backbone of the CLIP detectors",
        ),
        ModelFile(
            name="repdfd_ffpp_deepfakes.pth",
            sha256="53e57d9f5e7c75113d0a1040822de5002c4605e59f35b2959601483d1b19f17d",
            size=3381900,
            license="MIT",
            sources=("https://github.com/KQL11/RepDFD/raw/main/checkpoints/Deepfakes_best.pth",),
            description="RepDFD reprogramming parameters (CLIP ViT-L/14), FF++ Deepfakes",
        ),
    )
}


def hash_tree(path: Path) -> str:
    """sha256 of a file, or of a directory's files (names and contents, sorted)."""
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(item.relative_to(path)).encode())
        digest.update(sha256_file(item).encode())
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheStatus:
    entry: ModelFile
    path: Path
    present: bool
    verified: bool
    detail: str


LOCAL_MANIFEST_SUFFIX = ".manifest.json"


def read_local_manifests(directory: Path) -> dict[str, ModelFile]:
    """Entries `dfw train` writes next to weights (`NAME.manifest.json`): trained adapters load by name."""
    entries: dict[str, ModelFile] = {}
    if not directory.is_dir():
        return entries
    for path in sorted(directory.glob(f"*{LOCAL_MANIFEST_SUFFIX}")):
        try:
            data = json.loads(path.read_text())
            entry = ModelFile(
                name=data["name"],
                sha256=data["sha256"],
                size=int(data["size"]),
                license=data.get("license", "unknown"),
                sources=tuple(data.get("sources", ())),
                description=data.get("description", ""),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("ignoring unreadable model manifest %s: %s", path, exc)
            continue
        entries[entry.name] = entry
    return entries


def write_local_manifest(weights: Path, description: str, license: str) -> ModelFile:
    """Describe a weight file this project produced, next to it, for the model store."""
    entry = ModelFile(weights.name, sha256_file(weights), weights.stat().st_size, license, (), description)
    payload = {
        "name": entry.name,
        "sha256": entry.sha256,
        "size": entry.size,
        "license": entry.license,
        "sources": list(entry.sources),
        "description": entry.description,
    }
    (weights.parent / f"{weights.name}{LOCAL_MANIFEST_SUFFIX}").write_text(
        json.dumps(payload, indent=2) + "\n"
    )
    return entry


class ModelStore:
    """Finds weight files in a cache directory, verifies them, and fetches what is missing.

    A reference is a manifest name (built-in, or from a `NAME.manifest.json` in the cache directory) or the
    path of an operator-provided local file or directory, which is used as is and hashed for lineage.
    """

    def __init__(
        self, cache_dir: Path, allow_fetch: bool = True, manifest: dict[str, ModelFile] | None = None
    ):
        self.cache_dir = Path(cache_dir).expanduser()
        self.allow_fetch = allow_fetch
        base = MANIFEST if manifest is None else manifest
        self.manifest = {**read_local_manifests(self.cache_dir), **base}
        self._verified: dict[str, Path] = {}
        self._local_hashes: dict[Path, str] = {}

    @staticmethod
    def is_local_ref(ref: str) -> bool:
        return "/" in ref or ref.startswith((".", "~"))

    def resolve(self, ref: str) -> Path:
        """The local path for a manifest name or an operator's path. Raises ModelUnavailable."""
        if ref in self.manifest or not self.is_local_ref(ref):
            return self.path(ref)
        path = Path(ref).expanduser()
        if not path.exists():
            raise ModelUnavailable(ref, f"no file or directory at {path}")
        return path

    def sha256_of(self, ref: str) -> str:
        """The sha256 kept in lineage: the manifest's, or the hash of a local file or directory."""
        if ref in self.manifest:
            return self.manifest[ref].sha256
        path = self.resolve(ref)
        if path not in self._local_hashes:
            self._local_hashes[path] = hash_tree(path)
        return self._local_hashes[path]

    def entry(self, name: str) -> ModelFile:
        try:
            return self.manifest[name]
        except KeyError:
            raise ModelUnavailable(name, "not in the model manifest") from None

    def status(self, name: str) -> CacheStatus:
        entry = self.entry(name)
        path = self.cache_dir / name
        if not path.is_file() and (PACKAGED_DIR / name).is_file():
            path = PACKAGED_DIR / name  # shipped with the package; a cached copy takes precedence
        if not path.is_file():
            return CacheStatus(entry, path, False, False, "not in cache")
        actual = sha256_file(path)
        if actual != entry.sha256:
            return CacheStatus(entry, path, True, False, f"sha256 mismatch: {actual[:12]}…")
        return CacheStatus(entry, path, True, True, "ok" if path.parent != PACKAGED_DIR else "ok (shipped)")

    def statuses(self) -> Iterator[CacheStatus]:
        for name in sorted(self.manifest):
            yield self.status(name)

    def path(self, name: str) -> Path:
        """The verified local path of a weight file, fetching it first if allowed. Raises ModelUnavailable."""
        if name in self._verified:
            return self._verified[name]
        status = self.status(name)
        if status.verified:
            self._verified[name] = status.path
            return status.path
        if not self.allow_fetch:
            raise ModelUnavailable(name, f"{status.detail} at {status.path} and fetching is disabled")
        return self.fetch(name)

    def fetch(self, name: str) -> Path:
        entry = self.entry(name)
        target = self.cache_dir / name
        errors: list[str] = []
        for source in entry.sources:
            try:
                self._download(source, target, entry)
            except Exception as exc:  # every source gets its chance; the reasons are reported together
                errors.append(f"{source}: {exc}")
                logger.warning("model %s: source %s failed: %s", name, source, exc)
                continue
            self._verified[name] = target
            logger.info("model %s fetched from %s", name, source)
            return target
        reason = "; ".join(errors) if errors else "no sources"
        raise ModelUnavailable(name, f"not in cache at {target} and every source failed ({reason})")

    def _download(self, source: str, target: Path, entry: ModelFile) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(prefix=f".{entry.name}.", dir=self.cache_dir)
        temp = Path(temp_name)
        try:
            with os.fdopen(handle, "wb") as out:
                copy_source(source, out)
            actual = sha256_file(temp)
            if actual != entry.sha256:
                raise ValueError(f"sha256 {actual} does not match the manifest")
            temp.replace(target)
        finally:
            temp.unlink(missing_ok=True)


def copy_source(source: str, out: object) -> None:
    """Stream one source URL into an open binary file."""
    from typing import BinaryIO, cast

    sink = cast(BinaryIO, out)
    if source.startswith(("https://", "http://")):
        with urllib.request.urlopen(source, timeout=60) as response:
            shutil.copyfileobj(response, sink, CHUNK)
    elif source.startswith("s3://"):
        import boto3

        bucket, _, key = source[len("s3://") :].partition("/")
        boto3.client("s3").download_fileobj(bucket, key, sink)
    elif source.startswith("hf://"):
        copy_hf_source(source, sink)
    else:
        path = Path(source.removeprefix("file://")).expanduser()
        with path.open("rb") as handle:
            shutil.copyfileobj(handle, sink, CHUNK)


def copy_hf_source(source: str, sink: object) -> None:
    """hf://org/repo@revision/path/in/repo, through huggingface_hub (honours HF_HUB_OFFLINE and its cache)."""
    from typing import BinaryIO, cast

    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:
        raise RuntimeError("hf:// sources need the huggingface_hub package") from exc
    spec = source[len("hf://") :]
    org, _, rest = spec.partition("/")
    repo_rev, _, filename = rest.partition("/")
    repo, _, revision = repo_rev.partition("@")
    local = hf_hub_download(f"{org}/{repo}", filename, revision=revision or None)
    with open(local, "rb") as handle:
        shutil.copyfileobj(handle, cast(BinaryIO, sink), CHUNK)
