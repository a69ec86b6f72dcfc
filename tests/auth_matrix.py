"""The auth matrix: every route the API serves × every kind of credential, and the answer
each call must get. Run in-process by tests/integration/test_auth_matrix.py and against a
real server by bench/attack.py (a test helper, not part of the package: it needs botocore).

A permitted call may answer anything but a 5xx, 401, 403 or 429 (most routes get an empty
JSON object, so a 422 is usual). A refused call must be 401 (no valid key) or 403 (a key
without the scope, or a tracker key away from its origin); the AWS-compatible routes refuse
everything with 403, as AWS does. Anything else fails the row: above all a 2xx, a bypass.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

PUBLIC = "public"
SIGV4 = "sigv4:"  # the prefix of what an AWS-compatible route needs: "sigv4:ingest"
# What each key scope may do, written from the README (not read from clickrec.keys), so
# that the matrix checks the code against the intent. "events" is POST /v1/events.
GRANTS: Mapping[str, frozenset[str]] = {
    "admin": frozenset({"admin", "ingest", "read", "events"}),
    "ingest": frozenset({"ingest", "events"}),
    "read": frozenset({"read"}),
    "tracker": frozenset({"events"}),
}
# What every route the app serves needs. A route served but missing here fails the test (a
# new route cannot slip through untested); bench/attack.py calls a route the server's
# schema lists but this table lacks as admin-only, and fails the run.
NEEDS: Mapping[tuple[str, str], str] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/dashboard"): PUBLIC,  # the page's own script asks for an admin key
    ("GET", "/tracker.js"): PUBLIC,  # the page tracker; holds no data (api/site.py)
    ("GET", "/dashboard/{name}"): PUBLIC,
    # The API reference (api/docs.py): public on purpose, the schema holds no data.
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/{name}"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/metrics"): "admin",
    ("GET", "/v1/openapi.json"): "read",
    ("GET", "/v1/dashboard/data"): "admin",
    ("POST", "/v1/events"): "events",
    ("PUT", "/v1/items"): "ingest",
    ("GET", "/v1/items/{item_id}/similar"): "read",
    ("GET", "/v1/items/{item_id}"): "read",
    ("DELETE", "/v1/items/{item_id}"): "ingest",
    ("PUT", "/v1/users"): "ingest",
    ("GET", "/v1/users/{user_id}"): "read",
    ("DELETE", "/v1/users/{user_id}"): "admin",
    ("GET", "/v1/erasures"): "admin",
    ("GET", "/v1/erasures/{erasure_id}"): "admin",
    ("GET", "/v1/recommendations"): "read",
    ("GET", "/v1/trending"): "read",
    ("POST", "/v1/rankings"): "read",
    ("PUT", "/v1/filters/{name}"): "admin",
    ("GET", "/v1/filters"): "read",
    ("GET", "/v1/filters/{name}"): "read",
    ("DELETE", "/v1/filters/{name}"): "admin",
    ("POST", "/v1/training-runs"): "admin",
    ("GET", "/v1/training-runs"): "admin",
    ("GET", "/v1/training-runs/{run_id}"): "admin",
    ("GET", "/v1/models"): "admin",
    ("POST", "/v1/batch-jobs"): "read",
    ("GET", "/v1/batch-jobs/{job_id}"): "read",
    ("GET", "/v1/batch-jobs/{job_id}/output"): "read",
    ("DELETE", "/v1/batch-jobs/{job_id}"): "read",  # only its own key's jobs (not checked here)
    ("GET", "/v1/dead-letters"): "admin",
    ("GET", "/v1/dead-letters/{seq}"): "admin",
    ("POST", "/v1/dead-letters/replay"): "admin",
    ("POST", "/v1/dead-letters/purge"): "admin",
    ("GET", "/v1/audit-log"): "admin",
    # Amazon Personalize's API (api/aws.py): PutEvents, PutItems, PutUsers,
    # GetRecommendations, GetPersonalizedRanking; SigV4 only.
    ("POST", "/events"): SIGV4 + "ingest",
    ("POST", "/items"): SIGV4 + "ingest",
    ("POST", "/users"): SIGV4 + "ingest",
    ("POST", "/recommendations"): SIGV4 + "read",
    ("POST", "/personalize-ranking"): SIGV4 + "read",
}
# Bodies a permitted call accepts (so that a refused call let through answers 2xx, a plain
# bypass, not a 422); every other route with a body gets an empty JSON object.
_ARN = "arn:aws:personalize:us-east-1:000000000000"
_EVENT = {"session_id": "matrix-session", "item_id": "matrix-item", "event_type": "read"}
BODIES: Mapping[tuple[str, str], Any] = {
    ("POST", "/v1/events"): {"events": [_EVENT]},
    ("PUT", "/v1/items"): {"items": [{"item_id": "matrix-item"}]},
    ("PUT", "/v1/users"): {"users": [{"user_id": "matrix-user"}]},
    ("POST", "/v1/rankings"): {"user_id": "matrix-user", "item_ids": ["matrix-item"]},
    ("POST", "/events"): {
        "trackingId": "matrix",
        "sessionId": "matrix-session",
        "eventList": [{"eventType": "read", "itemId": "matrix-item", "sentAt": 1_700_000_000}],
    },
    ("POST", "/items"): {
        "datasetArn": f"{_ARN}:dataset/matrix/ITEMS",
        "items": [{"itemId": "matrix-item"}],
    },
    ("POST", "/users"): {
        "datasetArn": f"{_ARN}:dataset/matrix/USERS",
        "users": [{"userId": "matrix-user"}],
    },
    ("POST", "/recommendations"): {
        "campaignArn": f"{_ARN}:campaign/matrix",
        "userId": "matrix-user",
    },
    ("POST", "/personalize-ranking"): {
        "campaignArn": f"{_ARN}:campaign/matrix",
        "userId": "matrix-user",
        "inputList": ["matrix-item"],
    },
}
# Path parameters: plausible values, by route where the name alone is not enough.
PATH_VALUES = {"seq": "1"}
ROUTE_PATH_VALUES = {"/dashboard/{name}": {"name": "app.js"}, "/docs/{name}": {"name": "docs.js"}}
TRACKER_ORIGIN = "https://matrix.example.com"
FOREIGN_ORIGIN = "https://attacker.example.net"
REGION = "us-east-1"
METHODS = ("GET", "PUT", "POST", "DELETE", "PATCH")
_WITH_BODY = ("PUT", "POST", "PATCH")


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # the template, as in the OpenAPI schema: /v1/items/{item_id}
    needs: str  # PUBLIC, a grant ("read"), or SIGV4 + a grant

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"

    def url_path(self) -> str:
        """The path with its parameters filled in."""
        values = ROUTE_PATH_VALUES.get(self.path, {})
        return re.sub(
            r"\{(\w+)\}",
            lambda m: values.get(m[1]) or PATH_VALUES.get(m[1]) or f"matrix-{m[1]}",
            self.path,
        )

    def body(self) -> bytes:
        """What the matrix sends: the route's sample body, ``{}``, or nothing (a GET)."""
        if self.method not in _WITH_BODY:
            return b""
        return json.dumps(BODIES.get((self.method, self.path), {})).encode()


def template(path: str) -> str:
    """A framework route's path as the schema writes it: {item_id:path} is {item_id}."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


def schema_routes(schema: Mapping[str, Any]) -> set[tuple[str, str]]:
    """(method, path) of every operation in an OpenAPI schema."""
    return {
        (method.upper(), path)
        for path, operations in schema.get("paths", {}).items()
        for method in operations
        if method.upper() in METHODS
    }


def plan(listed: Iterable[tuple[str, str]]) -> tuple[list[Route], list[str]]:
    """The routes to call: the table's and every ``listed`` one (a schema's); and the
    problems: each listed route the table lacks (called as admin-only, the safe guess)."""
    listed = set(listed)
    unknown = sorted(listed - NEEDS.keys())
    routes = [Route(m, p, n) for (m, p), n in NEEDS.items()]
    routes += [Route(m, p, "admin") for m, p in unknown]
    problems = [f"{m} {p} is served but not in auth_matrix.NEEDS" for m, p in unknown]
    return routes, problems


# -- credentials ------------------------------------------------------------------------------
Headers = dict[str, str | bytes]
Sign = Callable[[str, str, bytes], tuple[Headers, bytes]]


@dataclass(frozen=True)
class Key:
    """A key as made: the bearer token and its AWS credentials."""

    token: str
    access_key_id: str
    secret_access_key: str

    @property
    def key_id(self) -> str:
        return self.token.split("_", 2)[1]


@dataclass(frozen=True)
class Keys:
    """The keys a run needs. ``revoked`` and ``expired`` are admin keys (a 2xx with them is
    a plain bypass); ``expires_at`` (epoch seconds) is when ``expired`` stops working, which
    ``run`` waits for; ``tracker`` works from TRACKER_ORIGIN."""

    ingest: Key
    read: Key
    admin: Key
    tracker: Key
    revoked: Key
    expired: Key
    expires_at: float


@dataclass(frozen=True)
class Credential:
    """One way of calling: ``scope`` is what the server must grant (None: must refuse)."""

    name: str
    about: str
    scheme: str  # "none", "bearer" or "sigv4"
    sign: Sign = field(repr=False)
    scope: str | None = None
    own_origin: bool = False  # a tracker key sent from one of its origins


def _headers(headers: Headers) -> Sign:
    def sign(method: str, url: str, body: bytes) -> tuple[Headers, bytes]:
        return dict(headers), body

    return sign


def _bearer(token: str | bytes, origin: str | None = None) -> Sign:
    value = b"Bearer " + token if isinstance(token, bytes) else "Bearer " + token
    headers: Headers = {"Authorization": value}
    if origin is not None:
        headers["Origin"] = origin
    return _headers(headers)


class _SigV4At(SigV4Auth):
    """botocore's signer, at a chosen time (``at``) instead of now."""

    def __init__(self, credentials: Credentials, service: str, at: datetime | None) -> None:
        super().__init__(credentials, service, REGION)
        self.at = at

    def add_auth(self, request: AWSRequest) -> None:
        if self.at is None:
            super().add_auth(request)
            return
        request.context["timestamp"] = self.at.strftime("%Y%m%dT%H%M%SZ")
        self._modify_request_before_signing(request)
        canonical = self.canonical_request(request)
        signature = self.signature(self.string_to_sign(request, canonical), request)
        self._inject_signature_to_request(request, signature)


def _sigv4(
    access_key_id: str,
    secret: str,
    service: str = "personalize",
    age: timedelta | None = None,
    tamper: bool = False,
    unsigned: bool = False,
    mangle: Callable[[str], str] | None = None,
) -> Sign:
    """SigV4 as botocore signs it, with one defect at most: another service in the scope,
    a date ``age`` old (negative: in the future), the body changed after signing, the
    Authorization header gone, or that header rewritten by ``mangle``."""

    def sign(method: str, url: str, body: bytes) -> tuple[Headers, bytes]:
        request = AWSRequest(method, url, data=body, headers={"Content-Type": "application/json"})
        at = datetime.now(UTC).replace(tzinfo=None) - age if age is not None else None
        _SigV4At(Credentials(access_key_id, secret), service, at).add_auth(request)
        headers: Headers = dict(request.headers.items())
        if unsigned:
            del headers["Authorization"]
        if mangle is not None:
            headers["Authorization"] = mangle(headers["Authorization"])
        # Still valid JSON, so a server that skipped the body hash would answer as usual.
        return headers, body + b"\n" if tamper else body

    return sign


def _other_day(authorization: str) -> str:
    """The Credential scope's date moved a day back (the signature is left as it was)."""
    day = re.search(r"Credential=[^/]+/(\d{8})/", authorization)
    assert day, authorization
    earlier = datetime.strptime(day.group(1), "%Y%m%d") - timedelta(days=1)
    return authorization.replace(f"/{day.group(1)}/", f"/{earlier:%Y%m%d}/", 1)


def _host_unsigned(authorization: str) -> str:
    """SignedHeaders without ``host`` (AWS requires it: a signature could be replayed to
    another host)."""
    signed = re.search(r"SignedHeaders=([^,]+)", authorization)
    assert signed and "host" in signed.group(1).split(";"), authorization
    kept = ";".join(h for h in signed.group(1).split(";") if h != "host")
    return authorization.replace(signed.group(0), f"SignedHeaders={kept}", 1)


def credentials(keys: Keys) -> list[Credential]:
    """Every kind of credential the matrix tries, in the order of the table's columns."""
    wrong = secrets.token_urlsafe(24)
    unknown = "CK" + secrets.token_hex(6).upper()
    admin, tracker = keys.admin, keys.tracker
    creds = [
        Credential("none", "no Authorization header", "none", _headers({})),
        Credential("x", "Authorization: Bearer x", "bearer", _bearer("x")),
        Credential("ck_a_b", "Authorization: Bearer ck_a_b", "bearer", _bearer("ck_a_b")),
        Credential(
            "utf8",
            "a bearer key with non-ASCII bytes (UTF-8)",
            "bearer",
            _bearer("ck_ключ_秘密".encode()),
        ),
        Credential(
            "long",
            "a bearer key of 8,000 characters",
            "bearer",
            _bearer("ck_" + "a" * 7994 + "_b"),
        ),
        Credential(
            "badsec",
            "the admin key's id with a wrong secret",
            "bearer",
            _bearer(f"ck_{admin.key_id}_{wrong}"),
        ),
        Credential("revoked", "a revoked admin key", "bearer", _bearer(keys.revoked.token)),
        Credential("expired", "an expired admin key", "bearer", _bearer(keys.expired.token)),
    ]
    for scope in ("ingest", "read", "admin"):
        key: Key = getattr(keys, scope)
        creds.append(Credential(scope, f"a valid {scope} key", "bearer", _bearer(key.token), scope))
    creds += [
        Credential(
            "trk",
            f"a tracker key from its origin ({TRACKER_ORIGIN})",
            "bearer",
            _bearer(tracker.token, TRACKER_ORIGIN),
            "tracker",
            own_origin=True,
        ),
        Credential(
            "trk-frgn",
            f"a tracker key from a foreign origin ({FOREIGN_ORIGIN})",
            "bearer",
            _bearer(tracker.token, FOREIGN_ORIGIN),
            "tracker",
        ),
        Credential(
            "trk-none",
            "a tracker key with no Origin header",
            "bearer",
            _bearer(tracker.token),
            "tracker",
        ),
        Credential(
            "s-unsign",
            "SigV4 headers (admin) without the Authorization header",
            "sigv4",
            _sigv4(admin.access_key_id, admin.secret_access_key, unsigned=True),
        ),
        Credential(
            "s-badsec",
            "SigV4 with the admin key's access key id and a wrong secret",
            "sigv4",
            _sigv4(admin.access_key_id, wrong),
        ),
        Credential(
            "s-unknwn",
            f"SigV4 with an unknown access key id ({unknown})",
            "sigv4",
            _sigv4(unknown, wrong),
        ),
        Credential(
            "s-revokd",
            "SigV4 with a revoked admin key's credentials",
            "sigv4",
            _sigv4(keys.revoked.access_key_id, keys.revoked.secret_access_key),
        ),
        Credential(
            "s-expird",
            "SigV4 with an expired admin key's credentials",
            "sigv4",
            _sigv4(keys.expired.access_key_id, keys.expired.secret_access_key),
        ),
        Credential(
            "s-stale",
            "SigV4 (admin) dated 20 minutes ago",
            "sigv4",
            _sigv4(admin.access_key_id, admin.secret_access_key, age=timedelta(minutes=20)),
        ),
        Credential(
            "s-future",
            "SigV4 (admin) dated 20 minutes ahead",
            "sigv4",
            _sigv4(admin.access_key_id, admin.secret_access_key, age=timedelta(minutes=-20)),
        ),
        Credential(
            "s-scope",
            "SigV4 (admin) whose credential scope names another day than X-Amz-Date",
            "sigv4",
            _sigv4(admin.access_key_id, admin.secret_access_key, mangle=_other_day),
        ),
        Credential(
            "s-host",
            "SigV4 (admin) that does not sign the Host header",
            "sigv4",
            _sigv4(admin.access_key_id, admin.secret_access_key, mangle=_host_unsigned),
        ),
        Credential(
            "s-svc",
            "SigV4 (admin) scoped to service s3",
            "sigv4",
            _sigv4(admin.access_key_id, admin.secret_access_key, service="s3"),
        ),
        Credential(
            "s-body",
            "SigV4 (admin) with the body changed after signing",
            "sigv4",
            _sigv4(admin.access_key_id, admin.secret_access_key, tamper=True),
        ),
    ]
    for scope, name in (
        ("ingest", "s-ingest"),
        ("read", "s-read"),
        ("admin", "s-admin"),
        ("tracker", "s-trk"),
    ):
        key = getattr(keys, scope)
        creds.append(
            Credential(
                name,
                f"SigV4 with a valid {scope} key's credentials",
                "sigv4",
                _sigv4(key.access_key_id, key.secret_access_key),
                scope,
            )
        )
    return creds


# -- expectations -----------------------------------------------------------------------------
def expect(route: Route, cred: Credential) -> int | None:
    """None when ``cred`` may call ``route``; else the status its refusal must have."""
    if route.needs == PUBLIC:
        return None
    if route.needs.startswith(SIGV4):
        grant = route.needs.removeprefix(SIGV4)
        allowed = cred.scheme == "sigv4" and grant in GRANTS.get(cred.scope or "", ())
        return None if allowed else 403
    if cred.scheme != "bearer" or cred.scope is None:
        return 401
    allowed = route.needs in GRANTS[cred.scope] and (cred.scope != "tracker" or cred.own_origin)
    return None if allowed else 403


def judge(expected: int | None, status: int) -> str | None:
    """What is wrong with answering ``status`` to a call ``expect`` judged; None if nothing."""
    if 200 <= status < 300 and expected is not None:
        return "UNEXPECTED 2xx: a refused call got through"
    if status >= 500:
        return "server error"
    if expected is None:
        if status in (401, 403):
            return "a permitted call was refused"
        if status == 429:
            return "rate limited: the matrix could not check this call"
        return None
    if status != expected:
        return f"refused with {status}, not {expected}"
    return None


# -- running --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    route: Route
    credential: Credential
    status: int
    expected: int | None  # None: permitted
    problem: str | None

    def describe(self) -> str:
        want = "any non-refusal" if self.expected is None else str(self.expected)
        return (
            f"{self.route.method} {self.route.url_path()} with {self.credential.about} "
            f"[{self.credential.name}]: expected {want}, got {self.status} ({self.problem})"
        )


def run(
    client: httpx.Client,
    routes: Sequence[Route],
    creds: Sequence[Credential],
    keys: Keys,
    retries_429: int = 0,
) -> list[Outcome]:
    """Call every route with every credential, in one pass, after ``keys.expired`` has
    expired. ``retries_429`` retries a rate-limited call after its Retry-After (a server
    with its limits on); the test lifts the limits instead."""
    time.sleep(max(0.0, keys.expires_at - time.time() + 0.1))
    base = str(client.base_url).rstrip("/")
    out = []
    for route in routes:
        path = route.url_path()
        body = route.body()
        for cred in creds:
            headers, sent = cred.sign(route.method, base + path, body)
            if body:
                headers.setdefault("Content-Type", "application/json")
            raw = [
                (k.encode(), v if isinstance(v, bytes) else v.encode()) for k, v in headers.items()
            ]
            for attempt in range(retries_429 + 1):
                response = client.request(route.method, path, content=sent, headers=raw)
                if response.status_code != 429 or attempt == retries_429:
                    break
                time.sleep(float(response.headers.get("retry-after", "1")))
            expected = expect(route, cred)
            status = response.status_code
            out.append(Outcome(route, cred, status, expected, judge(expected, status)))
    return out


# -- reporting ------------------------------------------------------------------------------
def table(outcomes: Sequence[Outcome], scheme: str | None = None) -> str:
    """Routes × credentials (those of ``scheme``, or all), each cell the status, with a
    ``!`` before a failing one."""
    cols = list(
        dict.fromkeys(
            o.credential.name
            for o in outcomes
            if scheme is None or o.credential.scheme in (scheme, "none")
        )
    )
    rows: dict[str, dict[str, str]] = {}
    for o in outcomes:
        if o.credential.name in cols:
            cell = f"{'!' if o.problem else ''}{o.status}"
            rows.setdefault(o.route.label, {})[o.credential.name] = cell
    width = max(len(label) for label in rows)
    widths = [max(len(c), 4) for c in cols]
    lines = [" ".join([" " * width, *(c.rjust(w) for c, w in zip(cols, widths, strict=True))])]
    for label, cells in rows.items():
        values = (cells.get(c, "").rjust(w) for c, w in zip(cols, widths, strict=True))
        lines.append(" ".join([label.ljust(width), *values]))
    return "\n".join(lines)


def legend(creds: Sequence[Credential]) -> str:
    width = max(len(c.name) for c in creds)
    return "\n".join(f"{c.name.ljust(width)}  {c.about}" for c in creds)


def summary(outcomes: Sequence[Outcome], routes: int, creds: int) -> str:
    permitted = [o for o in outcomes if o.expected is None]
    refused = [o for o in outcomes if o.expected is not None]
    failed = [o for o in outcomes if o.problem]
    lines = [
        f"{routes} routes × {creds} credentials = {len(outcomes)} calls: "
        f"{len(permitted)} permitted, {len(refused)} to be refused; {len(failed)} failed",
    ]
    lines += [f"FAIL {o.describe()}" for o in failed]
    return "\n".join(lines)
