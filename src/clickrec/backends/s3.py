"""What the S3 lake and the S3 model store share: the URL, the client, its errors.

Any S3-compatible store works (``s3.endpoint_url``). Credentials come from boto3's own
chain (AWS_* variables, ``~/.aws``, an instance or pod role), never from clickrec's config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from clickrec.config import S3Settings
from clickrec.core.errors import StoreUnavailable

CLIENT_ERRORS = (BotoCoreError, ClientError)
"""What a call to S3 raises when it fails: the network, the credentials, the answer."""


@dataclass(frozen=True)
class S3Url:
    """``s3://bucket/prefix``: a bucket and a key prefix ("" for the whole bucket)."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> S3Url:
        if not url.startswith("s3://"):
            raise ValueError(f"not an s3:// URL: {url!r}")
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not bucket:
            raise ValueError(f"no bucket in {url!r} (write s3://bucket/prefix)")
        return cls(bucket, prefix.strip("/"))

    def key(self, *parts: str) -> str:
        """The key of ``parts`` under the prefix."""
        return "/".join(part for part in (self.prefix, *parts) if part)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def open_client(settings: S3Settings) -> Any:
    """A thread-safe S3 client for ``settings``; nothing is sent yet."""
    config = Config(
        s3={"addressing_style": settings.addressing_style},
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=10,
        read_timeout=60,
    )
    session = boto3.session.Session()
    return session.client(
        "s3", endpoint_url=settings.endpoint_url, region_name=settings.region, config=config
    )


def check_bucket(client: Any, url: S3Url, role: str) -> None:
    """Fail at start, in one line, when the bucket cannot be reached (no credentials, no
    bucket, no permission, no network) rather than at the first write."""
    try:
        client.head_bucket(Bucket=url.bucket)
    except CLIENT_ERRORS as exc:
        raise StoreUnavailable(f"cannot open the {role} at {url}: {describe(exc)}") from exc


def status(exc: Exception) -> int | None:
    """The HTTP status of a failed call; None when no answer came."""
    if isinstance(exc, ClientError):
        code = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return int(code) if code is not None else None
    return None


def describe(exc: Exception) -> str:
    """One line: the service's error code and message, or what stopped the call."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code") or status(exc)
        return f"{code}: {error.get('Message') or 'no message'}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
