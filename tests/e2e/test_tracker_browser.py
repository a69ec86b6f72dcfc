"""The page tracker in a real headless Chromium, on a site of its own origin, sending to a
real `clickrec serve`; the assertions read what the engine's event log received.

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package; skipped
without them unless CLICKREC_REQUIRE_BROWSER is set (CI sets it, so there it must run).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from clickrec.backends.base import EventLog
from clickrec.backends.registry import open_event_log
from clickrec.config import load_settings
from tests.crash import serving, wait_for

from .test_dashboard_browser import CHROMEDRIVER, CHROMIUM, _require_browser
from .test_server import cli, key_from

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TRACKER = (
    Path(__file__).parents[2] / "src" / "clickrec" / "api" / "static" / "tracker" / "tracker.js"
)
# The snippet docs/tracker.md asks for: calls made before the script has loaded wait for it.
STUB = (
    "<script>window.clickrec=window.clickrec||"
    "function(){(clickrec.q=clickrec.q||[]).push(arguments)}</script>"
)
LIST = """
<ul data-clickrec-list data-recommendation-id="rec-1">
  <li><a href="next.html" data-item-id="post-2">Second post</a></li>
  <li><a href="next.html" data-item-id="post-3">Third post</a></li>
  <li data-item-id="post-4"><a href="next.html">Fourth post</a></li>
  <li style="margin-top: 6000px"><a href="next.html" data-item-id="post-5">Far below</a></li>
</ul>
"""


@dataclass
class Site:
    url: str  # the site's origin, where its pages are
    engine: str  # the engine's URL
    log: EventLog
    read_key: str
    proxy: FlakyProxy  # the engine behind it answers 503 while proxy.failing

    def received(self, **fields: Any) -> list[dict[str, Any]]:
        """The events the engine has logged whose fields have these values."""
        rows = self.log.read(0, 10_000).to_pylist()
        return [r for r in rows if all(r[k] == v for k, v in fields.items())]

    def wait_for(self, **fields: Any) -> dict[str, Any]:
        """The first event with these fields, once the engine has logged it (60 s at most)."""
        found = wait_for(lambda: self.received(**fields), timeout=60)
        assert isinstance(found, list)
        return dict(found[0])


def page(site_dir: Path, name: str, script: str, body: str = "", head: str = "") -> None:
    icon = '<link rel="icon" href="data:,">'  # no favicon request, no 404 in the console
    html = f"<!doctype html><html><head><meta charset=utf-8>{icon}{head}{STUB}{script}</head>"
    (site_dir / name).write_text(f"{html}<body><h1>{name}</h1>{body}</body></html>")


@contextlib.contextmanager
def static_site(folder: Path) -> Iterator[str]:
    """A plain HTTP server for ``folder`` on another port: another origin than the engine."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class FlakyProxy:
    """The engine behind a proxy that answers 503 to every POST while ``failing``; it
    records the events of each POST it saw."""

    def __init__(self, engine: str) -> None:
        self.engine = engine
        self.failing = True
        self.posts: list[tuple[int, list[dict[str, Any]]]] = []  # (status, events)

    @contextlib.contextmanager
    def running(self) -> Iterator[str]:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_OPTIONS(self) -> None:  # the CORS preflight: always the engine's answer
                self.forward(b"")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                if proxy.failing:
                    proxy.posts.append((503, json.loads(body)["events"]))
                    self.send_response(503)
                    self.send_header("access-control-allow-origin", self.headers["origin"])
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                status = self.forward(body)
                proxy.posts.append((status, json.loads(body)["events"]))

            def forward(self, body: bytes) -> int:
                skip = {"host", "content-length", "connection"}
                headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
                r = httpx.request(
                    self.command, proxy.engine + self.path, headers=headers, content=body
                )
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(k, v)
                self.send_header("content-length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)
                return r.status_code

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """An engine with a tracker key for a site's origin, and that site's pages."""
    _require_browser()
    home, folder = tmp_path / "home", tmp_path / "site"
    folder.mkdir()
    cli(home, "init")
    read_key = key_from(cli(home, "keys", "create", "--scope", "read"))
    with static_site(folder) as site_url, serving(home) as (engine, _):
        tracker_key = key_from(
            cli(home, "keys", "create", "--scope", "tracker", "--origin", site_url)
        )
        # Loaded from the engine, as most sites will.
        from_engine = f'<script src="{engine}/tracker.js" data-key="{tracker_key}"'
        page(folder, "article.html", f'{from_engine} data-item-id="post-1" async></script>', LIST)
        page(
            folder,
            "next.html",
            f"<script>clickrec('identify', 'reader-1')</script>{from_engine} async></script>",
            head='<meta name="clickrec:item" content="post-2">',
        )
        page(
            folder,
            "consent.html",
            f'{from_engine} data-item-id="post-7" data-consent="required" async></script>',
            LIST,
        )
        page(folder, "dnt.html", f'{from_engine} data-item-id="post-8" async></script>', LIST)
        # Hosted by the site itself: the same file, told where the engine is.
        shutil.copyfile(TRACKER, folder / "tracker.js")
        page(
            folder,
            "control.html",
            f'<script src="/tracker.js" data-key="{tracker_key}" data-endpoint="{engine}" '
            'data-item-id="post-9" data-respect-dnt="false" async></script>',
        )
        proxy = FlakyProxy(engine)
        log = open_event_log(load_settings(home, environ={}))
        with proxy.running() as proxy_url:
            page(
                folder,
                "flaky.html",
                f'<script src="{engine}/tracker.js" data-key="{tracker_key}" '
                f'data-endpoint="{proxy_url}" data-item-id="post-11" async></script>',
            )
            try:
                yield Site(site_url, engine, log, read_key, proxy)
            finally:
                log.close()


@contextlib.contextmanager
def chromium(do_not_track: bool = False) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_argument("--window-size=1200,900")
    if do_not_track:
        options.add_experimental_option("prefs", {"enable_do_not_track": True})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def impression_of(event: dict[str, Any]) -> list[str]:
    shown = json.loads(event["impression"])
    assert isinstance(shown, list)
    return sorted(shown)


def test_a_reader_visit_reaches_the_engine(site: Site) -> None:
    from selenium.webdriver.common.by import By

    with chromium() as browser:
        browser.get(f"{site.url}/article.html")
        view = site.wait_for(item_id="post-1", event_type="view")
        session = view["session_id"]
        assert view["user_id"] is None  # not signed in yet
        assert len(session) == 32

        # The list's items in view for a second: one event naming them and the list.
        shown = site.wait_for(event_type="impression")
        assert shown["item_id"] == "post-1"  # the page they were shown on
        assert shown["recommendation_id"] == "rec-1"
        assert impression_of(shown) == ["post-2", "post-3", "post-4"]  # not post-5, far below
        assert shown["session_id"] == session

        # A click on a recommended item, then the next page (where the site signs them in).
        browser.find_element(By.CSS_SELECTOR, 'a[data-item-id="post-2"]').click()
        click = site.wait_for(event_type="click")
        assert (click["item_id"], click["recommendation_id"]) == ("post-2", "rec-1")
        assert impression_of(click) == ["post-2", "post-3", "post-4"]  # what they chose among
        engaged = site.wait_for(event_type="engagement", item_id="post-1")
        assert engaged["event_value"] >= 1  # seconds visible and active on the article
        assert engaged["session_id"] == session

        signed_in = site.wait_for(event_type="view", item_id="post-2")
        assert (signed_in["user_id"], signed_in["session_id"]) == ("reader-1", session)
        wait_for(lambda: browser.execute_script("return performance.now() > 3000"), timeout=30)
        browser.get("about:blank")  # leaving: the seconds spent on post-2 go out too
        later = site.wait_for(event_type="engagement", item_id="post-2")
        assert later["user_id"] == "reader-1"
        errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors

    # Those events and no others, all of one browser session.
    events = site.received()
    assert sorted((e["event_type"], e["item_id"]) for e in events) == [
        ("click", "post-2"),
        ("engagement", "post-1"),
        ("engagement", "post-2"),
        ("impression", "post-1"),
        ("view", "post-1"),
        ("view", "post-2"),
    ]
    assert {e["session_id"] for e in events} == {session}
    # The anonymous reads joined the reader who signed in: their history has the article.
    answer = httpx.get(
        f"{site.engine}/v1/users/reader-1", headers={"Authorization": f"Bearer {site.read_key}"}
    )
    assert answer.status_code == 200, answer.text
    assert {"post-1", "post-2"} <= {h["item_id"] for h in answer.json()["history"]}


def nothing_sent_from(site: Site, browser: Any, item: str) -> None:
    """Leave the page (the tracker's last chance to send), then load a page that does send;
    once its event is in, the first page's would have been too."""
    browser.execute_script("clickrec('flush')")
    before = len(site.received(item_id="post-9"))
    browser.get(f"{site.url}/control.html")
    wait_for(lambda: len(site.received(item_id="post-9")) > before, timeout=60)
    assert site.received(item_id=item) == []


def stored(browser: Any) -> list[int]:
    """How many entries the page's origin keeps in localStorage and sessionStorage."""
    counts = browser.execute_script("return [localStorage.length, sessionStorage.length]")
    assert isinstance(counts, list)
    return counts


def loaded(browser: Any) -> None:
    """Wait for the tracker script (the stub has no ``loaded``)."""
    wait_for(lambda: browser.execute_script("return window.clickrec.loaded"), timeout=30)


def test_nothing_is_sent_or_stored_before_consent(site: Site) -> None:
    with chromium() as browser:
        browser.get(f"{site.url}/consent.html")
        loaded(browser)
        assert stored(browser) == [0, 0]
        nothing_sent_from(site, browser, "post-7")

        # The same page once the reader agrees: the page view it held is sent.
        browser.execute_script("localStorage.clear(); sessionStorage.clear()")  # control.html's
        browser.get(f"{site.url}/consent.html")
        loaded(browser)
        assert stored(browser) == [0, 0]
        browser.execute_script("clickrec('consent', true)")
        view = site.wait_for(item_id="post-7", event_type="view")
        kept = browser.execute_script("return JSON.parse(localStorage['clickrec:session']).id")
        assert kept == view["session_id"]  # the session id, now that it may be kept


def test_do_not_track_is_honoured(site: Site) -> None:
    with chromium(do_not_track=True) as browser:
        browser.get(f"{site.url}/dnt.html")
        assert browser.execute_script("return navigator.doNotTrack") == "1"
        loaded(browser)
        browser.execute_script(
            "clickrec('identify', 'reader-2'); clickrec('pageview', {itemId: 'post-8'})"
        )
        assert stored(browser) == [0, 0]
        # control.html sets data-respect-dnt="false": the same browser's events then go.
        nothing_sent_from(site, browser, "post-8")


def test_events_outlive_failures_and_reloads(site: Site) -> None:
    with chromium() as browser:
        browser.get(f"{site.url}/flaky.html")
        wait_for(lambda: site.proxy.posts, timeout=30)
        first_view = site.proxy.posts[0][1][0]
        assert (first_view["item_id"], first_view["event_type"]) == ("post-11", "view")
        browser.refresh()  # the unsent view stays in this tab's sessionStorage

        def carried_over() -> bool:
            """The reloaded page sent the first page's view beside its own."""
            return any(
                first_view in batch
                and any(e["event_type"] == "view" and e != first_view for e in batch)
                for _, batch in site.proxy.posts
            )

        wait_for(carried_over, timeout=30)
        site.proxy.failing = False  # the engine is back: the retries get through

        def both_views() -> list[dict[str, Any]]:
            views = site.received(item_id="post-11", event_type="view")
            return views if len(views) == 2 else []

        wait_for(both_views, timeout=60)

    views = site.received(item_id="post-11", event_type="view")
    assert first_view["event_id"] in {v["event_id"] for v in views}  # the very event, once
    assert len({v["event_id"] for v in views}) == 2
    assert all(status in (503, 202) for status, _ in site.proxy.posts)
    assert sum(status == 503 for status, _ in site.proxy.posts) >= 2
