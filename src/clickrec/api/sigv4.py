"""AWS Signature Version 4, checked on the server: clickrec keys act as AWS credentials.

Only the ``Authorization`` header form is accepted (what boto3 sends); presigned URLs are
not. Any region is accepted in the credential scope, the service must be ``personalize``,
and the request must be dated within 15 minutes of the server's clock. The payload hash is
always computed from the body received, so a signature covers the body whatever an
``X-Amz-Content-SHA256`` header claims.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote

from clickrec.core.errors import Unauthorized
from clickrec.keys import KeyRing, Principal

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "personalize"
MAX_SKEW_SECONDS = 15 * 60
_AMZ_DATE = "%Y%m%dT%H%M%SZ"


class SignatureRefused(Unauthorized):
    """A request AWS would refuse before reading it; ``code`` is AWS's error code for it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _incomplete(message: str) -> SignatureRefused:
    return SignatureRefused("IncompleteSignatureException", message)


def _invalid(message: str) -> SignatureRefused:
    return SignatureRefused("InvalidSignatureException", message)


_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method."
)
_UNKNOWN_KEY = "The security token included in the request is invalid."


@dataclass(frozen=True)
class SignedRequest:
    """A request as it arrived: the path and query exactly as sent (still percent-encoded)."""

    method: str
    raw_path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k == name]
        return ",".join(values) if values else None


@dataclass(frozen=True)
class Authorization:
    access_key_id: str
    date: str
    region: str
    service: str
    terminator: str
    signed_headers: list[str]
    signature: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{self.terminator}"


def parse_authorization(header: str | None) -> Authorization:
    """The parts of an ``AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…``
    header; MissingAuthenticationToken or IncompleteSignature when it is not one."""
    if not header:
        raise SignatureRefused(
            "MissingAuthenticationTokenException", "Missing Authentication Token"
        )
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise _incomplete(f"Authorization header must use the {ALGORITHM} algorithm")
    fields = {}
    for part in rest.split(","):
        name, _, value = part.strip().partition("=")
        fields[name] = value
    missing = [n for n in ("Credential", "SignedHeaders", "Signature") if not fields.get(n)]
    if missing:
        needs = " ".join(f"Authorization header requires '{n}' parameter." for n in missing)
        raise _incomplete(needs)
    credential = fields["Credential"].split("/")
    if len(credential) != 5 or not all(credential):
        raise _incomplete("Credential must have the form <key id>/<date>/<region>/<service>/<end>")
    key_id, date, region, service, terminator = credential
    return Authorization(
        key_id,
        date,
        region,
        service,
        terminator,
        fields["SignedHeaders"].split(";"),
        fields["Signature"],
    )


def canonical_request(request: SignedRequest, signed_headers: list[str]) -> str:
    """SigV4's canonical request (for services other than S3: the path is encoded twice)."""
    path = quote(request.raw_path or "/", safe="/~")
    pairs = []
    for pair in request.query.split("&") if request.query else []:
        key, _, value = pair.partition("=")
        pairs.append((_encode(key), _encode(value)))
    query = "&".join(f"{k}={v}" for k, v in sorted(pairs))
    headers = "".join(
        f"{name}:{' '.join((request.header(name) or '').split())}\n" for name in signed_headers
    )
    payload = hashlib.sha256(request.body).hexdigest()
    return "\n".join([request.method, path, query, headers, ";".join(signed_headers), payload])


def _encode(part: str) -> str:
    return quote(unquote(part), safe="-_.~")


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def signature(secret: str, auth: Authorization, amz_date: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    to_sign = f"{ALGORITHM}\n{amz_date}\n{auth.scope}\n{digest}"
    key = signing_key(secret, auth.date, auth.region, auth.service)
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def _check_time(amz_date: str, now: float) -> None:
    try:
        signed_at = datetime.strptime(amz_date, _AMZ_DATE).replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise _incomplete(f"X-Amz-Date must look like 20240131T235959Z, not {amz_date!r}") from None

    def stamp(t: float) -> str:
        return datetime.fromtimestamp(t, UTC).strftime(_AMZ_DATE)

    if signed_at < now - MAX_SKEW_SECONDS:
        raise _invalid(
            f"Signature expired: {amz_date} is now earlier than "
            f"{stamp(now - MAX_SKEW_SECONDS)} ({stamp(now)} - 15 min.)"
        )
    if signed_at > now + MAX_SKEW_SECONDS:
        raise _invalid(
            f"Signature not yet current: {amz_date} is still later than "
            f"{stamp(now + MAX_SKEW_SECONDS)} ({stamp(now)} + 15 min.)"
        )


def verify(keys: KeyRing, request: SignedRequest, now: float) -> Principal:
    """The principal whose key signed ``request``; SignatureRefused (with AWS's code) if the
    signature is missing, malformed, stale, made with an unknown key, or wrong."""
    auth = parse_authorization(request.header("authorization"))
    amz_date = request.header("x-amz-date")
    if not amz_date:
        raise _incomplete("Authorization header requires existence of a 'X-Amz-Date' header.")
    if auth.terminator != "aws4_request":
        raise _invalid("Credential should be scoped with a valid terminator: 'aws4_request'.")
    if auth.service != SERVICE:
        raise _invalid(f"Credential should be scoped to correct service: '{SERVICE}'.")
    if auth.date != amz_date[:8]:
        raise _invalid(
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{auth.date}' != '{amz_date[:8]}', from '{amz_date}'."
        )
    for needed in ("host", "x-amz-date"):
        if needed not in auth.signed_headers:
            raise _invalid(f"'{needed}' must be a signed header.")
    _check_time(amz_date, now)
    credentials = keys.sigv4_credentials(auth.access_key_id)
    if credentials is None:
        raise SignatureRefused("UnrecognizedClientException", _UNKNOWN_KEY)
    if credentials.secret is None:
        raise SignatureRefused(
            "UnrecognizedClientException",
            f"Key {credentials.principal.key_id} has no SigV4 secret (it was made before "
            "SigV4 support, or the data keys cannot open it): create a new key with "
            "`clickrec keys create` and use the aws_access_key_id and aws_secret_access_key "
            "it prints.",
        )
    canonical = canonical_request(request, auth.signed_headers)
    expected = signature(credentials.secret, auth, amz_date, canonical)
    if not hmac.compare_digest(expected, auth.signature):
        raise _invalid(_MISMATCH)
    # Only a caller who proved it holds the secret learns that the key has expired.
    if credentials.revoked:
        raise SignatureRefused("UnrecognizedClientException", _UNKNOWN_KEY)
    if credentials.expires_at is not None and credentials.expires_at <= now:
        raise SignatureRefused(
            "ExpiredTokenException", "The security token included in the request is expired"
        )
    return credentials.principal
