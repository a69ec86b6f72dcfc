"""GET /tracker.js: the page tracker as the engine serves it, and its size on the wire."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from clickrec.api import site

pytestmark = pytest.mark.integration
# The file a site may host instead of loading it from the engine: the one served.
TRACKER = (
    Path(__file__).parents[2] / "src" / "clickrec" / "api" / "static" / "tracker" / "tracker.js"
)
# What a browser downloads (gzip -9, comments included). docs/tracker.md states the size.
GZIP_BUDGET = 6 * 1024
PLAIN = {"Accept-Encoding": "identity"}


@pytest.fixture
def router_only() -> Iterator[TestClient]:
    """The route alone, without the app's middlewares."""
    app = FastAPI()
    app.include_router(site.router)
    with TestClient(app) as c:
        yield c


def test_the_engine_serves_the_tracker_without_a_key(client: TestClient) -> None:
    r = client.get("/tracker.js", headers=PLAIN)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/javascript; charset=utf-8"
    assert r.headers["x-content-type-options"] == "nosniff"  # so the type must be right
    assert r.content == TRACKER.read_bytes()
    assert "content-encoding" not in r.headers
    assert r.headers["etag"].startswith('"') and r.headers["etag"].endswith('"')


def test_it_is_gzipped_for_browsers_that_accept_it(client: TestClient) -> None:
    plain = client.get("/tracker.js", headers=PLAIN)
    zipped = client.get("/tracker.js", headers={"Accept-Encoding": "gzip, deflate, br"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.content == TRACKER.read_bytes()  # httpx decoded it
    assert int(zipped.headers["content-length"]) < len(TRACKER.read_bytes()) / 2
    assert zipped.headers["etag"] != plain.headers["etag"]  # two representations
    assert "accept-encoding" in zipped.headers["vary"].lower()
    refused = client.get("/tracker.js", headers={"Accept-Encoding": "gzip;q=0, identity"})
    assert "content-encoding" not in refused.headers


def test_a_browser_revalidates_it_by_its_etag(client: TestClient) -> None:
    first = client.get("/tracker.js", headers=PLAIN)
    again = client.get("/tracker.js", headers={**PLAIN, "If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == first.headers["etag"]
    weak = client.get(
        "/tracker.js", headers={**PLAIN, "If-None-Match": "W/" + first.headers["etag"]}
    )
    assert weak.status_code == 304
    other = client.get("/tracker.js", headers={**PLAIN, "If-None-Match": '"something-else"'})
    assert other.status_code == 200 and other.content == TRACKER.read_bytes()


def test_the_route_lets_browsers_keep_it_a_day(router_only: TestClient) -> None:
    r = router_only.get("/tracker.js")
    assert r.headers.get_list("cache-control") == [
        "public, max-age=86400, stale-while-revalidate=604800"
    ]
    assert (
        router_only.get("/tracker.js", headers={"If-None-Match": r.headers["etag"]}).status_code
        == 304
    )


def test_browsers_may_cache_it_through_the_whole_stack(client: TestClient) -> None:
    r = client.get("/tracker.js")
    assert r.headers.get_list("cache-control") == [site.CACHE_CONTROL]


def test_the_tracker_is_small(client: TestClient) -> None:
    size = len(gzip.compress(TRACKER.read_bytes(), 9))
    assert size < GZIP_BUDGET, f"tracker.js is {size} bytes gzipped, over {GZIP_BUDGET}"
    served = client.get("/tracker.js", headers={"Accept-Encoding": "gzip"})
    assert served.status_code == 200 and served.headers["content-encoding"] == "gzip"
    assert int(served.headers["content-length"]) < GZIP_BUDGET
