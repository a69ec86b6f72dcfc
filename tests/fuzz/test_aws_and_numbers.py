"""Fuzzing what schemathesis does not reach: the AWS-compatible routes (signed with SigV4,
not in the OpenAPI schema) and numbers past every integer type in query and path parameters.

Every answer must be a 4xx or a 2xx, never a 5xx; an AWS error must carry its ``__type``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from clickrec.api.app import create_app
from clickrec.engine import Engine
from clickrec.keys import NewKey

from ._support import fetch_openapi, fuzz_settings, make_engine, seed

pytestmark = pytest.mark.slow
ARN = "arn:aws:personalize:us-east-1:000000000000"
AWS_ROUTES = ["/events", "/items", "/users", "/recommendations", "/personalize-ranking"]
OVERFLOWING = [str(2**63), str(2**64), "9" * 30, "-" + "9" * 30, "1e400", "nan", "inf", "0x10"]


class Target:
    def __init__(self, engine: Engine, client: TestClient) -> None:
        self.engine = engine
        self.client = client
        self.admin = engine.keys.create_key("admin", "fuzz", engine.clock.now())
        self.bearer = {"Authorization": f"Bearer {self.admin.key}"}

    def signed(self, path: str, body: bytes) -> Any:
        request = AWSRequest("POST", f"http://testserver{path}", data=body)
        key: NewKey = self.admin
        creds = Credentials(key.aws_access_key_id, key.aws_secret_access_key)
        botocore.auth.SigV4Auth(creds, "personalize", "us-east-1").add_auth(request)
        return self.client.post(path, content=body, headers=dict(request.headers.items()))


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    engine = make_engine(tmp_path_factory.mktemp("aws-fuzz") / "home")
    settings = engine.settings.limits
    for name in ("per_address_rps", "admin_rps"):
        setattr(settings, name, 1e9)
    with TestClient(create_app(engine), raise_server_exceptions=False) as client:
        out = Target(engine, client)
        seed(client, out.bearer)
        yield out
    engine.close()


def _clean_refusal(response: Any) -> None:
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code >= 400:
        assert isinstance(response.json().get("__type"), str), response.text


json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=20),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
properties = st.one_of(
    st.text(max_size=30),
    st.dictionaries(
        st.sampled_from(
            ["category", "genres", "tags", "title", "creationTimestamp", "x", "AUTHOR"]
        ),
        json_value | st.lists(json_value, min_size=1, max_size=3),
        max_size=4,
    ).map(json.dumps),
)
ident = st.text(min_size=0, max_size=12) | st.sampled_from(["p1", "u1", "s1", ""])
event = st.fixed_dictionaries(
    {"eventType": ident, "itemId": ident, "sentAt": st.one_of(st.floats(), st.integers(), ident)},
    optional={
        "eventValue": json_value,
        "properties": properties,
        "impression": st.lists(ident, max_size=3),
        "eventId": ident,
        "recommendationId": ident,
    },
)
bodies = {
    "/events": st.fixed_dictionaries(
        {"trackingId": ident, "sessionId": ident, "eventList": st.lists(event, max_size=3)},
        optional={"userId": ident},
    ),
    "/items": st.fixed_dictionaries(
        {
            "datasetArn": st.just(f"{ARN}:dataset/d/ITEMS") | ident,
            "items": st.lists(
                st.fixed_dictionaries({"itemId": ident}, optional={"properties": properties}),
                max_size=3,
            ),
        }
    ),
    "/users": st.fixed_dictionaries(
        {
            "datasetArn": st.just(f"{ARN}:dataset/d/USERS") | ident,
            "users": st.lists(
                st.fixed_dictionaries({"userId": ident}, optional={"properties": properties}),
                max_size=3,
            ),
        }
    ),
    "/recommendations": st.fixed_dictionaries(
        {"campaignArn": st.just(f"{ARN}:campaign/c") | ident},
        optional={
            "userId": ident,
            "itemId": ident,
            "numResults": st.integers(min_value=-(2**70), max_value=2**70),
            "context": st.dictionaries(ident, json_value, max_size=3),
            "filterArn": st.just(f"{ARN}:filter/f") | ident,
            "filterValues": st.dictionaries(ident, json_value, max_size=2),
            "metadataColumns": st.dictionaries(
                st.sampled_from(["ITEMS", "USERS"]), st.lists(ident, max_size=3), max_size=1
            ),
            "promotions": st.lists(
                st.fixed_dictionaries(
                    {
                        "name": ident,
                        "percentPromotedItems": st.integers(-5, 2**70),
                        "filterArn": ident,
                    }
                ),
                max_size=2,
            ),
        },
    ),
    "/personalize-ranking": st.fixed_dictionaries(
        {
            "campaignArn": st.just(f"{ARN}:campaign/c") | ident,
            "userId": ident,
            "inputList": st.lists(ident, max_size=4),
        },
        optional={"context": st.dictionaries(ident, json_value, max_size=3)},
    ),
}


@pytest.mark.parametrize("path", AWS_ROUTES)
def test_aws_routes_never_answer_5xx(target: Target, path: str) -> None:
    @fuzz_settings(60)
    @given(body=bodies[path])
    def run(body: dict[str, Any]) -> None:
        _clean_refusal(target.signed(path, json.dumps(body).encode()))

    run()


@pytest.mark.parametrize("path", AWS_ROUTES)
@given(raw=st.binary(max_size=200))
@fuzz_settings(30)
def test_aws_routes_refuse_any_bytes_cleanly(target: Target, path: str, raw: bytes) -> None:
    _clean_refusal(target.signed(path, raw))


def _integer_parameters() -> list[tuple[str, str, str, str]]:
    """(method, path, where, name) of every integer query or path parameter in the schema."""
    found = []
    for path, operations in fetch_openapi()["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                kinds = {schema.get("type")} | {s.get("type") for s in schema.get("anyOf", [])}
                if "integer" in kinds or "number" in kinds:
                    found.append((method.upper(), path, parameter["in"], parameter["name"]))
    return found


INTEGER_PARAMETERS = _integer_parameters()


def test_the_schema_has_numeric_parameters_to_fuzz() -> None:
    names = {(path, name) for _, path, _, name in INTEGER_PARAMETERS}
    assert ("/v1/audit-log", "before") in names and ("/v1/dead-letters/{seq}", "seq") in names


@pytest.mark.parametrize(
    ("method", "path", "where", "name"),
    INTEGER_PARAMETERS,
    ids=[f"{m} {p} {n}" for m, p, _, n in INTEGER_PARAMETERS],
)
def test_numbers_past_every_integer_type_are_a_4xx(
    target: Target, method: str, path: str, where: str, name: str
) -> None:
    for value in OVERFLOWING:
        url = path
        params = {}
        if where == "path":
            url = path.replace("{" + name + "}", value)
        else:
            params[name] = value
        for other in ("{user_id}", "{item_id}", "{run_id}", "{name}", "{job_id}", "{erasure_id}"):
            url = url.replace(other, "x")
        response = target.client.request(method, url, params=params, headers=target.bearer)
        assert response.status_code < 500, (value, response.status_code, response.text)
        # and the connection goes on serving
        assert target.client.get("/healthz").status_code == 200
