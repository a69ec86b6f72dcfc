"""boto3's Personalize clients, unmodified, against a real `clickrec serve` over real HTTP."""

from __future__ import annotations

import datetime as dt
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.auth
import httpx
import pytest
import sqlalchemy as sa
from botocore import UNSIGNED
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from clickrec.backends.registry import open_catalog
from clickrec.backends.sql_catalog import SQLCatalog
from clickrec.config import load_settings

pytestmark = pytest.mark.integration
CLI = [sys.executable, "-m", "clickrec.cli"]
ARN = "arn:aws:personalize:us-east-1:000000000000"
CAMPAIGN = f"{ARN}:campaign/news"
ITEMS_DATASET = f"{ARN}:dataset/news/ITEMS"
USERS_DATASET = f"{ARN}:dataset/news/USERS"
SPORT_ONLY = f"{ARN}:filter/sport-only"
NOW = time.time()


@dataclass(frozen=True)
class Creds:
    key: str
    access_key_id: str
    secret: str


@dataclass(frozen=True)
class Server:
    url: str
    home: Path
    admin: dict[str, str]
    ingest: Creds
    read: Creds

    def client(self, service: str, creds: Creds, **config: Any) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name="eu-west-1",
            aws_access_key_id=creds.access_key_id,
            aws_secret_access_key=creds.secret,
            config=Config(retries={"max_attempts": 1}, **config),
        )


def _cli(home: Path, *args: str) -> str:
    done = subprocess.run(
        [*CLI, *args, "--home", str(home)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _creds(output: str) -> Creds:
    lines = output.splitlines()
    fields = dict(line.split(" = ", 1) for line in lines if " = " in line)
    key = next(line for line in lines if line.startswith("ck_"))
    return Creds(key, fields["aws_access_key_id"], fields["aws_secret_access_key"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("boto3") / "home"
    admin = next(line for line in _cli(home, "init").splitlines() if line.startswith("ck_"))
    ingest = _creds(_cli(home, "keys", "create", "--scope", "ingest"))
    read = _creds(_cli(home, "keys", "create", "--scope", "read"))
    port = _free_port()
    proc = subprocess.Popen(
        [*CLI, "serve", "--home", str(home), "--port", str(port), "--train-interval", "60"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        headers = {"Authorization": f"Bearer {admin}"}
        expression = 'INCLUDE ItemID WHERE Items.CATEGORIES IN ("sport")'
        r = httpx.put(
            f"{url}/v1/filters/sport-only", json={"expression": expression}, headers=headers
        )
        assert r.status_code == 200, r.text
        yield Server(url, home, headers, ingest, read)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = exc.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def _items(prefix: str) -> list[dict[str, str]]:
    """Six posts: even ones in sport (and news), odd ones in politics."""
    return [
        {
            "itemId": f"{prefix}{i}",
            "properties": json.dumps(
                {
                    "category": "sport|news" if i % 2 == 0 else "politics",
                    "title": f"Post {i}",
                    "creationTimestamp": int(NOW) - 3600 * i,
                    "AUTHOR": "ana",
                    "numberOfWords": 100 * (i + 1),
                }
            ),
        }
        for i in range(6)
    ]


def test_boto3_writes_then_reads_recommendations_and_rankings(server: Server) -> None:
    events = server.client("personalize-events", server.ingest)
    runtime = server.client("personalize-runtime", server.read)
    p = "flow-"
    events.put_items(datasetArn=ITEMS_DATASET, items=_items(p))
    events.put_users(
        datasetArn=USERS_DATASET,
        users=[{"userId": "ana", "properties": json.dumps({"membershipStatus": "gold"})}],
    )
    for i in range(6):  # everything trends, p5 the most
        for k in range(i + 1):
            events.put_events(
                trackingId="tracker-1",
                sessionId=f"s-{i}-{k}",
                eventList=[
                    {"eventType": "read", "itemId": f"{p}{i}", "sentAt": dt.datetime.now(dt.UTC)}
                ],
            )
    events.put_events(
        trackingId="tracker-1",
        userId="ana",
        sessionId="ana-1",
        eventList=[
            {"eventType": "read", "itemId": f"{p}5", "sentAt": NOW - 60, "eventId": "ana-e1"},
            {
                "eventType": "read",
                "itemId": f"{p}4",
                "sentAt": NOW - 30,
                "properties": json.dumps({"scrollDepth": 0.8}),
            },
        ],
    )

    # The catalog and profile as clickrec stores them.
    item = httpx.get(f"{server.url}/v1/items/{p}0", headers=server.admin).json()
    assert item["categories"] == ["sport", "news"]
    assert item["title"] == "Post 0" and item["author"] == "ana"
    assert item["published_at"] == int(NOW)
    assert item["attributes"] == {"number_of_words": 100}
    user = httpx.get(f"{server.url}/v1/users/ana", headers=server.admin).json()
    assert user["attributes"] == {"membership_status": "gold"}
    assert [h["item_id"] for h in user["history"]][:2] == [f"{p}4", f"{p}5"]

    answer = runtime.get_recommendations(campaignArn=CAMPAIGN, userId="ana", numResults=10)
    shown = [i["itemId"] for i in answer["itemList"]]
    assert shown and not {f"{p}4", f"{p}5"} & set(shown)  # what ana read is gone
    assert answer["recommendationId"]
    assert all(isinstance(i["score"], float) and i["reason"] for i in answer["itemList"])

    sport = runtime.get_recommendations(
        recommenderArn=f"{ARN}:recommender/top-picks",
        userId="ana",
        filterArn=SPORT_ONLY,
        metadataColumns={"ITEMS": ["CATEGORY", "TITLE", "CREATION_TIMESTAMP"]},
    )
    assert {i["itemId"] for i in sport["itemList"]} == {f"{p}0", f"{p}2"}  # p4 read
    for entry in sport["itemList"]:
        n = int(entry["itemId"].removeprefix(p))
        assert entry["metadata"] == {
            "CATEGORY": "sport|news",
            "TITLE": f"Post {n}",
            "CREATION_TIMESTAMP": str(int(NOW) - 3600 * n),
        }

    ranking = runtime.get_personalized_ranking(
        campaignArn=CAMPAIGN, userId="ana", inputList=[f"{p}5", f"{p}1", f"{p}3"]
    )
    ranked = ranking["personalizedRanking"]
    assert {r["itemId"] for r in ranked} == {f"{p}5", f"{p}1", f"{p}3"}
    assert ranked[-1]["itemId"] == f"{p}5" and ranked[-1]["reason"] == ["already read"]
    assert ranking["recommendationId"]


def test_a_wrong_secret_is_an_invalid_signature(server: Server) -> None:
    last = "y" if server.read.secret.endswith("x") else "x"  # always another secret
    bad = Creds("", server.read.access_key_id, server.read.secret[:-1] + last)
    runtime = server.client("personalize-runtime", bad)
    with pytest.raises(ClientError) as exc:
        runtime.get_recommendations(campaignArn=CAMPAIGN, userId="ana")
    assert _code(exc) == ("InvalidSignatureException", 403)


def test_an_unknown_access_key_is_unrecognized(server: Server) -> None:
    runtime = server.client("personalize-runtime", Creds("", "CK000000000000", "x" * 40))
    with pytest.raises(ClientError) as exc:
        runtime.get_recommendations(campaignArn=CAMPAIGN, userId="ana")
    assert _code(exc) == ("UnrecognizedClientException", 403)


def test_an_unsigned_request_gets_aws_error_shape(server: Server) -> None:
    r = httpx.post(f"{server.url}/recommendations", json={"userId": "ana"})
    assert r.status_code == 403
    assert r.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    assert r.json() == {
        "__type": "MissingAuthenticationTokenException",
        "message": "Missing Authentication Token",
    }
    bearer = {"Authorization": f"Bearer {server.read.key}"}  # a clickrec key is no signature
    r = httpx.post(f"{server.url}/recommendations", json={"userId": "ana"}, headers=bearer)
    assert (r.status_code, r.json()["__type"]) == (403, "IncompleteSignatureException")
    unsigned = server.client("personalize-runtime", server.read, signature_version=UNSIGNED)
    with pytest.raises(ClientError) as exc:
        unsigned.get_recommendations(campaignArn=CAMPAIGN, userId="ana")
    assert _code(exc) == ("MissingAuthenticationTokenException", 403)


def test_a_stale_signature_is_refused(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(minutes=16)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: stale)
    runtime = server.client("personalize-runtime", server.read)
    with pytest.raises(ClientError) as exc:
        runtime.get_recommendations(campaignArn=CAMPAIGN, userId="ana")
    assert _code(exc) == ("InvalidSignatureException", 403)
    assert "Signature expired" in str(exc.value)


def test_each_key_keeps_to_its_scope(server: Server) -> None:
    runtime = server.client("personalize-runtime", server.ingest)
    with pytest.raises(ClientError) as exc:
        runtime.get_recommendations(campaignArn=CAMPAIGN, userId="ana")
    assert _code(exc) == ("AccessDeniedException", 403)
    events = server.client("personalize-events", server.read)
    with pytest.raises(ClientError) as exc:
        events.put_events(
            trackingId="t",
            sessionId="s",
            eventList=[{"eventType": "read", "itemId": "x", "sentAt": NOW}],
        )
    assert _code(exc) == ("AccessDeniedException", 403)


def _signed_post(
    server: Server, path: str, body: dict[str, Any], sent: bytes | None = None
) -> httpx.Response:
    """A request botocore's own signer signs, for bodies its client would refuse to send
    (``sent`` replaces the signed body on the wire)."""
    request = AWSRequest("POST", f"{server.url}{path}", data=json.dumps(body).encode())
    creds = Credentials(server.ingest.access_key_id, server.ingest.secret)
    botocore.auth.SigV4Auth(creds, "personalize", "us-east-1").add_auth(request)
    content = request.body if sent is None else sent
    return httpx.post(request.url, content=content, headers=dict(request.headers.items()))


def test_a_changed_body_breaks_the_signature(server: Server) -> None:
    event = {"eventType": "read", "itemId": "a", "sentAt": NOW}
    body = {"trackingId": "t", "sessionId": "tamper", "eventList": [event]}
    tampered = json.dumps({**body, "sessionId": "evil"}).encode()
    r = _signed_post(server, "/events", body, sent=tampered)
    assert (r.status_code, r.json()["__type"]) == (403, "InvalidSignatureException")
    assert _signed_post(server, "/events", body).status_code == 200


def test_bad_input_is_invalid_input_and_nothing_is_written(server: Server) -> None:
    events = server.client("personalize-events", server.ingest)
    eleven = [{"eventType": "read", "itemId": f"bad-{i}", "sentAt": NOW} for i in range(11)]
    with pytest.raises(ClientError) as exc:  # botocore checks no maximum: the server does
        events.put_events(trackingId="t", sessionId="bad", eventList=eleven)
    assert _code(exc) == ("InvalidInputException", 400)
    assert "eventList" in str(exc.value)

    no_item = [{"eventType": "read", "sentAt": NOW}, {"eventType": "read", "sentAt": NOW}]
    with pytest.raises(ClientError) as exc:
        events.put_events(trackingId="t", sessionId="bad", eventList=no_item)
    assert _code(exc) == ("InvalidInputException", 400)
    assert "eventList.0.itemId" in str(exc.value) and "eventList.1.itemId" in str(exc.value)

    with pytest.raises(ClientError) as exc:
        events.put_items(
            datasetArn=ITEMS_DATASET, items=[{"itemId": "bad-item", "properties": "{oops"}]
        )
    assert _code(exc) == ("InvalidInputException", 400)
    assert httpx.get(f"{server.url}/v1/items/bad-item", headers=server.admin).status_code == 404

    r = _signed_post(server, "/events", {"trackingId": "t", "sessionId": "s"})
    assert (r.status_code, r.headers["x-amzn-ErrorType"]) == (400, "InvalidInputException")
    assert "eventList" in r.json()["message"]
    r = _signed_post(server, "/events", {"trackingId": "t", "sessionId": "s", "eventList": []})
    assert r.json()["__type"] == "InvalidInputException"

    runtime = server.client("personalize-runtime", server.read)
    with pytest.raises(ClientError) as exc:
        runtime.get_recommendations(
            campaignArn=CAMPAIGN, userId="ana", filterArn=f"{ARN}:filter/no-such-filter"
        )
    assert _code(exc) == ("ResourceNotFoundException", 404)


def test_a_key_made_before_sigv4_is_told_to_make_a_new_one(server: Server) -> None:
    old = _creds(_cli(server.home, "keys", "create", "--scope", "read"))
    catalog = open_catalog(load_settings(server.home, environ={}))
    try:
        key_id = old.key.split("_")[1]
        stored = catalog.get_key(key_id)
        assert stored is not None and stored["sigv4_secret"].startswith("sealed:")
        assert old.secret not in stored["sigv4_secret"]
        with catalog.engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE api_keys SET sigv4_secret = NULL WHERE key_id = :k"), {"k": key_id}
            )
    finally:
        catalog.close()
    runtime = server.client("personalize-runtime", old)
    with pytest.raises(ClientError) as exc:
        runtime.get_recommendations(campaignArn=CAMPAIGN, userId="ana")
    assert _code(exc) == ("UnrecognizedClientException", 403)
    assert "create a new key" in str(exc.value)


def test_an_old_catalog_gains_the_sigv4_column(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE api_keys (key_id VARCHAR(32) PRIMARY KEY, name VARCHAR(128) NOT "
                "NULL, scope VARCHAR(16) NOT NULL, salt VARCHAR(64) NOT NULL, secret_hash "
                "VARCHAR(128) NOT NULL, created_at FLOAT NOT NULL, revoked_at FLOAT)"
            )
        )
        conn.execute(sa.text("INSERT INTO api_keys VALUES ('k1', 'n', 'read', 's', 'h', 1, NULL)"))
    engine.dispose()
    for _ in range(2):  # idempotent
        catalog = SQLCatalog(url)
        record = catalog.get_key("k1")
        catalog.close()
        assert record is not None and record["sigv4_secret"] is None


def test_one_answer_per_reader_whichever_door_asks(server: Server, tmp_path: Path) -> None:
    """The HTTP API, boto3, a batch job on the server and `clickrec batch recommend` (its own
    process, its online state rebuilt from the log) give one list for the same reader,
    filter and moment: the same scorer, the same notion of now."""
    p = "one-"
    events = server.client("personalize-events", server.ingest)
    events.put_items(datasetArn=ITEMS_DATASET, items=_items(p))
    for i in range(6):
        for k in range(i + 1):
            events.put_events(
                trackingId="t",
                sessionId=f"one-{i}-{k}",
                eventList=[{"eventType": "read", "itemId": f"{p}{i}", "sentAt": NOW - 600 + i}],
            )
    events.put_events(
        trackingId="t",
        userId="one-reader",
        sessionId="one-reader-s",
        eventList=[{"eventType": "read", "itemId": f"{p}4", "sentAt": NOW - 10}],
    )
    read = {"Authorization": f"Bearer {server.read.key}"}
    params = {"user_id": "one-reader", "num_results": 10, "filter": "sport-only"}
    http = httpx.get(f"{server.url}/v1/recommendations", params=params, headers=read).json()
    runtime = server.client("personalize-runtime", server.read)
    aws = runtime.get_recommendations(
        campaignArn=CAMPAIGN, userId="one-reader", numResults=10, filterArn=SPORT_ONLY
    )
    line = {"user_id": "one-reader", "num_results": 10, "filter": "sport-only"}
    job = httpx.post(
        f"{server.url}/v1/batch-jobs",
        json={"kind": "recommendations", "lines": [line]},
        headers=read,
    ).json()
    for _ in range(100):
        view = httpx.get(f"{server.url}/v1/batch-jobs/{job['id']}", headers=read).json()
        if view["state"] == "succeeded":
            break
        time.sleep(0.1)
    output = httpx.get(f"{server.url}/v1/batch-jobs/{job['id']}/output", headers=read).text
    on_server = json.loads(output.splitlines()[0])
    (tmp_path / "in.jsonl").write_text(json.dumps(line) + "\n")
    _cli(
        server.home,
        "batch",
        "recommend",
        "--input",
        str(tmp_path / "in.jsonl"),
        "--output",
        str(tmp_path / "out.jsonl"),
    )
    offline = json.loads((tmp_path / "out.jsonl").read_text().splitlines()[0])

    def listed(answer: list[dict[str, Any]], key: str) -> list[tuple[str, float]]:
        return [(i[key], round(float(i["score"]), 4)) for i in answer]

    expected = listed(http["items"], "item_id")
    assert expected and all(item[-1] in "024" for item, _ in expected)  # sport posts only
    assert f"{p}4" not in {item for item, _ in expected}  # read: never shown again
    assert listed(aws["itemList"], "itemId") == expected
    assert listed(on_server["items"], "item_id") == expected
    assert listed(offline["items"], "item_id") == expected
