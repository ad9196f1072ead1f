"""A real S3-compatible server for the tests: moto in server mode on a free localhost port.

Import the fixtures into a test module (``from s3_server import moto_server, s3  # noqa: F401``).
``moto_server`` (one per test module) serves HTTP on 127.0.0.1 and is stopped after the module;
``s3`` (per test) creates a fresh bucket and puts dummy credentials in the environment. The secret
key is a distinctive string so tests can prove it is written nowhere (rows, logs, reports).
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

import pytest

ACCESS_KEY = "AKIAROARTEST0000KEY"
SECRET_KEY = "roar-test-secret-7f3c9a1e5b"   # grep target: must never appear in anything written
REGION = "us-east-1"


def credential_env() -> dict[str, str]:
    """Dummy credentials plus a fixed region; AWS_EC2_METADATA_DISABLED keeps the AWS SDK from
    probing the EC2 metadata service (seconds of timeouts on a machine that is not EC2)."""
    return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true"}


@dataclass
class S3Bucket:
    endpoint: str          # http://127.0.0.1:PORT
    bucket: str

    def uri(self, prefix: str = "") -> str:
        return f"s3://{self.bucket}/{prefix}".rstrip("/")

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)

    def objects(self, prefix: str = "") -> dict[str, bytes]:
        """Every object under prefix (key -> content), read back through boto3, not through our code."""
        client, out = self.client(), {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                out[item["Key"]] = client.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
        return out


@pytest.fixture(scope="module")
def moto_server():
    """The endpoint URL of a moto S3 server on a free port; stopped when the module's tests end."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(moto_server, monkeypatch) -> S3Bucket:
    """A fresh bucket on the moto server; credentials in the environment, the endpoint not (tests
    that want AWS_ENDPOINT_URL set it themselves, so the spec's storage section is tested alone)."""
    for key, value in credential_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    bucket = S3Bucket(endpoint=moto_server, bucket=f"roar-{uuid.uuid4().hex[:12]}")
    bucket.client().create_bucket(Bucket=bucket.bucket)
    return bucket
