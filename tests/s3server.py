"""A throwaway S3 endpoint for the tests of the s3:// lake and model store.

moto's server stands in for S3 because no real S3 (nor MinIO) is reachable here: it speaks
the S3 REST API over HTTP, conditional writes (``If-None-Match``/``If-Match``) included, so
the stores run through boto3 exactly as they would against AWS. It runs as a separate
process (``python -m moto.server``) on a free port of 127.0.0.1 and keeps its buckets in
memory. Where moto (``pip install 'moto[server]>=5.2.5'``) or boto3 is missing, the tests
that need it are skipped, unless CLICKREC_REQUIRE_S3 is set (then they fail).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

STARTUP_SECONDS = 30.0
CREDENTIALS = {
    # moto takes any credentials; boto3 finds these in its usual chain, as it would real ones.
    "AWS_ACCESS_KEY_ID": "clickrec-test",
    "AWS_SECRET_ACCESS_KEY": "-".join(("clickrec", "test", "only")),
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def unavailable() -> str | None:
    """Why no server can be started here; None when one can."""
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
    except ImportError as exc:
        missing = (exc.name or "moto").split(".")[0]
        return f"{missing} is not installed (pip install 'moto[server]>=5.2.5' boto3)"
    return None


def require_s3() -> None:
    """Skip the calling test when moto is missing; fail it instead with CLICKREC_REQUIRE_S3."""
    reason = unavailable()
    if reason is None:
        return
    if os.environ.get("CLICKREC_REQUIRE_S3"):
        pytest.fail(f"{reason}, and CLICKREC_REQUIRE_S3 is set")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class S3Server:
    """One moto server process and the folder that holds its log."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="clickrec-s3-"))
        self.port = _free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server and wait until it answers S3 calls."""
        self._log = open(self.root / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **CREDENTIALS},
        )
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline and self._process.poll() is None:
            try:
                with contextlib.closing(self.client()) as client:
                    client.list_buckets()
                return
            except Exception:  # noqa: BLE001 - not listening yet
                time.sleep(0.1)
        tail = (self.root / "server.log").read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"moto server did not start on port {self.port}:\n{tail}")

    def client(self) -> Any:
        """A boto3 S3 client of this server; close it (``contextlib.closing``)."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
            config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=30),
        )

    def create_bucket(self) -> str:
        """A new, empty bucket; its name."""
        name = f"clickrec-{uuid.uuid4().hex[:12]}"
        with contextlib.closing(self.client()) as client:
            client.create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        try:
            if self._process is not None:
                self._process.terminate()
                try:
                    self._process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait(timeout=30)
                self._process = None
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A moto S3 server for the whole run; skipped where moto is missing (a failure
    instead with CLICKREC_REQUIRE_S3=1)."""
    require_s3()
    instance = S3Server()
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Credentials for the server in this test's environment (where boto3 looks, and never
    in clickrec's config); returns the clickrec settings that point at the server."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    missing = str(s3_server.root / "no-such-aws-config")
    monkeypatch.setenv("AWS_CONFIG_FILE", missing)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", missing)
    return {"CLICKREC_S3__ENDPOINT_URL": s3_server.endpoint_url}


@pytest.fixture
def s3_bucket(s3_server: S3Server, s3_env: dict[str, str]) -> str:
    """A fresh, empty bucket on the server (credentials in the environment)."""
    return s3_server.create_bucket()
