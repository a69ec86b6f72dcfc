"""Findings of the adversarial review, each replayed as the attack it was: expired keys
over SigV4, what an expired key reveals, keys that never expire, 5xx answers to input, and
audit rows for data-plane calls."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from fastapi.testclient import TestClient

from clickrec.core.errors import InvalidInput
from clickrec.engine import Engine
from clickrec.keys import NewKey

pytestmark = pytest.mark.integration
ARN = "arn:aws:personalize:us-east-1:000000000000"
EVENT = {"eventType": "read", "itemId": "post-1", "sentAt": 0}


def _signed(client: TestClient, key: NewKey, path: str, body: dict[str, Any]) -> Any:
    """POST ``body`` to an AWS-compatible route, signed with the key's AWS credentials."""
    request = AWSRequest("POST", f"http://testserver{path}", data=json.dumps(body).encode())
    creds = Credentials(key.aws_access_key_id, key.aws_secret_access_key)
    botocore.auth.SigV4Auth(creds, "personalize", "us-east-1").add_auth(request)
    return client.post(path, content=request.body, headers=dict(request.headers.items()))


def _events_body() -> dict[str, Any]:
    return {"trackingId": "t", "sessionId": "s1", "eventList": [{**EVENT, "sentAt": time.time()}]}


def _expired(engine: Engine, scope: str) -> NewKey:
    """A key made 100 s ago that expired 50 s ago (no waiting for it to expire)."""
    now = engine.clock.now()
    return engine.keys.create_key(scope, None, now - 100, expires_at=now - 50)


def test_an_expired_key_is_refused_over_sigv4_like_over_bearer(
    engine: Engine, client: TestClient
) -> None:
    ingest, read = _expired(engine, "ingest"), _expired(engine, "read")
    sent = _signed(client, ingest, "/events", _events_body())
    assert sent.status_code == 403
    assert sent.json()["__type"] == "ExpiredTokenException"
    asked = _signed(client, read, "/recommendations", {"campaignArn": f"{ARN}:campaign/c"})
    assert (asked.status_code, asked.json()["__type"]) == (403, "ExpiredTokenException")
    bearer = client.get("/v1/trending", headers={"Authorization": f"Bearer {read.key}"})
    assert (bearer.status_code, bearer.json()["error"]) == (401, "this API key has expired")
    assert engine.log.last_seq() == 0  # nothing of the refused PutEvents was written


def test_a_live_key_still_works_over_sigv4(engine: Engine, client: TestClient) -> None:
    now = engine.clock.now()
    live = engine.keys.create_key("ingest", None, now, expires_at=now + 3600)
    assert _signed(client, live, "/events", _events_body()).status_code == 200


def test_expiry_is_told_only_to_whoever_holds_the_secret(
    engine: Engine, client: TestClient
) -> None:
    expired = _expired(engine, "read")
    guess = expired.key.rsplit("_", 1)[0] + "_" + "x" * 32
    answer = client.get("/v1/trending", headers={"Authorization": f"Bearer {guess}"})
    assert (answer.status_code, answer.json()["error"]) == (401, "invalid API key")
    forged = NewKey(expired.key, expired.principal, expired.aws_access_key_id, "wrong" * 8)
    signed = _signed(client, forged, "/events", _events_body())
    assert (signed.status_code, signed.json()["__type"]) == (403, "InvalidSignatureException")


def test_a_revoked_key_is_refused_over_sigv4(engine: Engine, client: TestClient) -> None:
    key = engine.keys.create_key("ingest", None, engine.clock.now())
    assert _signed(client, key, "/events", _events_body()).status_code == 200
    engine.catalog.revoke_key(key.principal.key_id, engine.clock.now())
    engine.keys._sigv4_cache.clear()  # as the 2 s cache would, on every server
    refused = _signed(client, key, "/events", _events_body())
    assert (refused.status_code, refused.json()["__type"]) == (403, "UnrecognizedClientException")


@pytest.mark.parametrize("days", ["nan", "inf", "0", "-1", "-inf"])
def test_keys_create_refuses_an_expiry_that_is_not_a_positive_number(
    engine: Engine, days: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "clickrec.cli", "keys", "create", "--scope", "read"]
        + ["--expires-days", days, "--home", str(engine.settings.home)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout
    assert "--expires-days must be a positive number" in done.stderr
    assert "ck_" not in done.stdout
    assert [k["scope"] for k in engine.catalog.list_keys()] == []


def test_a_key_cannot_be_made_to_never_expire_by_a_nan(engine: Engine) -> None:
    for expiry in (math.nan, math.inf):
        with pytest.raises(InvalidInput, match="finite"):
            engine.keys.create_key("read", None, engine.clock.now(), expires_at=expiry)


@pytest.mark.parametrize(
    "properties",
    ['{"category": [{"a": 1}]}', '{"tags": [[1]]}', '{"genres": [["x"], ["x"]]}'],
)
def test_put_items_with_nested_categories_is_a_400_naming_the_field(
    engine: Engine, client: TestClient, properties: str
) -> None:
    admin = engine.keys.create_key("admin", None, engine.clock.now())
    body = {
        "datasetArn": f"{ARN}:dataset/d/ITEMS",
        "items": [{"itemId": "a", "properties": properties}],
    }
    answer = _signed(client, admin, "/items", body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["__type"] == "InvalidInputException"
    assert "items.0" in answer.json()["message"]
    assert engine.catalog.get_item("a") is None


@pytest.mark.parametrize("before", ["99999999999999999999999", str(2**63), "-1", "1e3"])
def test_an_overflowing_audit_page_is_a_422_and_the_connection_lives_on(
    client: TestClient, keys: dict[str, dict[str, str]], before: str
) -> None:
    answer = client.get("/v1/audit-log", params={"before": before}, headers=keys["admin"])
    assert answer.status_code == 422 and "before" in answer.text
    assert client.get("/v1/audit-log", headers=keys["admin"]).status_code == 200


def test_sigv4_data_plane_calls_of_an_admin_key_are_not_audit_rows(
    engine: Engine, client: TestClient
) -> None:
    admin = engine.keys.create_key("admin", "ops", engine.clock.now())
    assert _signed(client, admin, "/events", _events_body()).status_code == 200
    asked = _signed(
        client, admin, "/recommendations", {"campaignArn": f"{ARN}:campaign/c", "userId": "u"}
    )
    assert asked.status_code in (200, 404, 503), asked.text
    items = {"datasetArn": f"{ARN}:dataset/d/ITEMS", "items": [{"itemId": "a"}]}
    assert _signed(client, admin, "/items", items).status_code == 200
    actions = [e["action"] for e in engine.catalog.audit_entries()]
    assert actions == ["POST /items"]  # a catalog change is audited; sending and reading are not


def test_the_home_and_its_files_are_private(engine: Engine, client: TestClient) -> None:
    """The in-process engine's home; tests/e2e checks the same after a full server run."""
    key = engine.keys.create_key("ingest", None, engine.clock.now())
    assert _signed(client, key, "/events", _events_body()).status_code == 200
    home: Path = engine.settings.home
    assert home.stat().st_mode & 0o777 == 0o700
    for path in home.rglob("*"):
        expected = 0o700 if path.is_dir() else 0o600
        assert path.stat().st_mode & 0o777 == expected, path
