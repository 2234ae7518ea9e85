"""S3 fetches through boto3 against a real S3 endpoint on loopback (moto's server)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from storage.objects import LocalObjects, ObjectError, S3Objects, s3_client
from storage.settings import StorageSettings

pytestmark = pytest.mark.integration


@pytest.fixture
def objects(s3_endpoint: str) -> S3Objects:
    return S3Objects(
        s3_client(StorageSettings(s3_endpoint_url=s3_endpoint, s3_region="us-east-1", s3_max_attempts=1))
    )


def test_fetch_streams_hashes_and_removes_nothing_it_keeps(
    objects, s3_client, bucket, tmp_path: Path
) -> None:
    body = bytes(range(256)) * 5000
    s3_client.put_object(Bucket=bucket, Key="dir/ünïcode name.bin", Body=body)
    fetched = objects.fetch(bucket, "dir/ünïcode name.bin", tmp_path, max_bytes=10**7)
    assert fetched.path.read_bytes() == body
    assert fetched.sha256 == hashlib.sha256(body).hexdigest() and fetched.size == len(body)
    assert fetched.etag


def test_size_cap_refuses_before_download(objects, s3_client, bucket, tmp_path: Path) -> None:
    s3_client.put_object(Bucket=bucket, Key="big.bin", Body=b"x" * 5000)
    with pytest.raises(ObjectError) as caught:
        objects.fetch(bucket, "big.bin", tmp_path, max_bytes=4999)
    assert caught.value.code == "too_large" and caught.value.permanent
    assert list(tmp_path.iterdir()) == []


def test_missing_key_and_bucket_are_permanent(objects, bucket, tmp_path: Path) -> None:
    for target_bucket in (bucket, "no-such-bucket-here"):
        with pytest.raises(ObjectError) as caught:
            objects.fetch(target_bucket, "nope.mp4", tmp_path, max_bytes=100)
        assert caught.value.code == "object_missing" and caught.value.permanent


def test_access_denied_is_permanent(objects, s3_client, bucket, tmp_path: Path) -> None:
    s3_client.put_object(Bucket=bucket, Key="private.jpg", Body=b"secret")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{bucket}/private.jpg"],
            }
        ],
    }
    s3_client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    try:
        objects.head(bucket, "private.jpg")
    except ObjectError as exc:
        assert exc.code == "object_forbidden" and exc.permanent
    else:
        pytest.skip("this moto server does not enforce bucket policies")


def test_unreachable_endpoint_is_transient(tmp_path: Path) -> None:
    from tests.conftest import free_port

    dead = S3Objects(
        s3_client(
            StorageSettings(
                s3_endpoint_url=f"http://127.0.0.1:{free_port()}",
                s3_region="us-east-1",
                s3_max_attempts=1,
                s3_connect_timeout_s=1,
            )
        )
    )
    with pytest.raises(ObjectError) as caught:
        dead.fetch("b", "k", tmp_path, 100)
    assert not caught.value.permanent


def test_local_objects_refuse_path_traversal(tmp_path: Path) -> None:
    (tmp_path / "root" / "b").mkdir(parents=True)
    (tmp_path / "secret").write_text("x")
    store = LocalObjects(tmp_path / "root")
    with pytest.raises(ObjectError) as caught:
        store.head("b", "../../secret")
    assert caught.value.code == "object_forbidden"
