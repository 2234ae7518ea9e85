"""The model store: cache hits offline, hash checks, fetching from local and s3:// sources."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from worker.errors import ModelUnavailable
from worker.models import MANIFEST, PACKAGED_DIR, ModelFile, ModelStore, sha256_file


def entry_for(data: bytes, *sources: str, name: str = "weights.bin") -> ModelFile:
    return ModelFile(name, hashlib.sha256(data).hexdigest(), len(data), "test", tuple(sources))


def test_shared_weights_match_the_manifest(models_dir: Path) -> None:
    store = ModelStore(models_dir, allow_fetch=False)
    for name in ("face_detection_yunet_2023mar.onnx", "Meso4_DF.h5", "Meso4_F2F.h5"):
        status = store.status(name)
        assert status.verified, status.detail
        assert store.path(name) == models_dir / name
        assert status.entry.size == (models_dir / name).stat().st_size


def test_missing_file_without_fetch_is_unavailable_and_names_the_file(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, allow_fetch=False)
    with pytest.raises(ModelUnavailable) as caught:
        store.path("Meso4_DF.h5")
    assert caught.value.name == "Meso4_DF.h5" and "not in cache" in caught.value.reason


def test_unknown_name_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable):
        ModelStore(tmp_path).path("nope.bin")


def test_fetch_from_a_local_source_then_use_offline(tmp_path: Path) -> None:
    data = b"weights" * 100
    source = tmp_path / "mirror.bin"
    source.write_bytes(data)
    cache = tmp_path / "cache"
    entry = entry_for(data, "https://127.0.0.1:9/unreachable.bin", str(source))
    store = ModelStore(cache, allow_fetch=True, manifest={entry.name: entry})
    assert store.path(entry.name).read_bytes() == data  # first source fails, the second is used
    source.unlink()
    offline = ModelStore(cache, allow_fetch=False, manifest={entry.name: entry})
    assert offline.path(entry.name).read_bytes() == data
    assert [p.name for p in cache.iterdir()] == [entry.name]  # no temporary files left behind


def test_wrong_hash_is_refused_and_not_cached(tmp_path: Path) -> None:
    source = tmp_path / "tampered.bin"
    source.write_bytes(b"tampered")
    entry = entry_for(b"original", str(source))
    store = ModelStore(tmp_path / "cache", allow_fetch=True, manifest={entry.name: entry})
    with pytest.raises(ModelUnavailable) as caught:
        store.path(entry.name)
    assert "sha256" in caught.value.reason
    assert not (tmp_path / "cache" / entry.name).exists()


def test_corrupt_cached_file_is_reported(tmp_path: Path, models_dir: Path) -> None:
    shutil.copy(models_dir / "Meso4_DF.h5", tmp_path / "Meso4_DF.h5")
    with (tmp_path / "Meso4_DF.h5").open("r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00\x01\x02")
    status = ModelStore(tmp_path, allow_fetch=False).status("Meso4_DF.h5")
    assert status.present and not status.verified and "mismatch" in status.detail


@pytest.mark.integration
def test_fetch_from_s3_source(tmp_path: Path, s3_client, bucket, s3_endpoint, monkeypatch) -> None:
    data = b"s3 weights"
    s3_client.put_object(Bucket=bucket, Key="models/w.bin", Body=data)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    entry = entry_for(data, f"s3://{bucket}/models/w.bin")
    store = ModelStore(tmp_path, allow_fetch=True, manifest={entry.name: entry})
    assert sha256_file(store.path(entry.name)) == entry.sha256


def test_manifest_entries_are_well_formed() -> None:
    for name, entry in MANIFEST.items():
        # every file can be fetched from somewhere, or ships inside the package (the project's own weights)
        assert name == entry.name and len(entry.sha256) == 64
        assert entry.sources or (PACKAGED_DIR / name).is_file(), name
        assert entry.size is None or entry.size > 0


def test_models_list_table_says_where_a_file_comes_from(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    env = {"DFW_MODEL_DIR": str(tmp_path / "empty"), "DFW_MODEL_FETCH": "false"}
    done = run_cli("models", "list", env=env)
    assert done.returncode == 0, done.stderr
    rows = {line.split("│")[1].strip(): line for line in done.stdout.splitlines() if line.count("│") > 3}
    for shipped in ("dfwmeso-v1.safetensors", "dfwnet-v1.safetensors"):
        assert "ok (shipped)" in rows[shipped]
    assert "not in cache" in rows["Meso4_DF.h5"]
