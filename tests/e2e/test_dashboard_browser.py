"""The built-in dashboard in a real headless Chromium, against a real `clickrec serve`.

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package; skipped
without them unless CLICKREC_REQUIRE_BROWSER is set (CI sets it, so there it must run).
The screenshot goes to the test's tmp_path, and to CLICKREC_SCREENSHOT_DIR when set.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.crash import serving

from .test_server import CLI, cli, key_from

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHARTS = ("events", "latency", "ctr", "lag", "dead")


def _require_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if not missing:
        return
    message = f"no headless browser: {', '.join(missing)} not installed"
    if os.environ.get("CLICKREC_REQUIRE_BROWSER"):
        pytest.fail(f"{message}, and CLICKREC_REQUIRE_BROWSER is set")
    pytest.skip(message)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A server with a catalog, history and a trained model; its URL and keys by scope."""
    home = tmp_path / "home"
    keys = {"admin": key_from(cli(home, "init"))}
    for scope in ("ingest", "read"):
        keys[scope] = key_from(cli(home, "keys", "create", "--scope", scope))
    demo = tmp_path / "demo"
    subprocess.run(
        [*CLI, "demo", "generate", "--out", str(demo), "--users", "300", "--days", "5"]
        + ["--posts-per-day", "20"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    cli(home, "import", "items", str(demo / "items.csv"))
    cli(home, "import", "interactions", str(demo / "interactions.csv"))
    cli(home, "train")
    with serving(home) as (url, _):
        yield url, keys


@pytest.fixture
def browser() -> Iterator[Any]:
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1800",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


class Traffic:
    """A little of what a site does: reads, recommendations, and clicks on them."""

    def __init__(self, http: httpx.Client, keys: dict[str, str]) -> None:
        self.http = http
        self.ingest = {"Authorization": f"Bearer {keys['ingest']}"}
        self.read = {"Authorization": f"Bearer {keys['read']}"}
        self.round = 0

    def send(self) -> None:
        self.round += 1
        reader = f"browser-reader-{self.round % 7}"
        answer = self.http.get(
            "/v1/recommendations", params={"user_id": reader, "num_results": 5}, headers=self.read
        )
        assert answer.status_code == 200, answer.text
        shown = answer.json()
        self.http.get("/v1/trending", headers=self.read)
        events = [
            {"user_id": reader, "session_id": reader, "item_id": f"p{k:06d}"} for k in range(4)
        ]
        events.append(
            {
                "user_id": reader,
                "session_id": reader,
                "item_id": shown["items"][0]["item_id"],
                "recommendation_id": shown["recommendation_id"],
            }
        )
        sent = self.http.post("/v1/events", json={"events": events}, headers=self.ingest)
        assert sent.status_code == 202, sent.text


def points(driver: Any, element_id: str) -> int:
    from selenium.webdriver.common.by import By

    return int(driver.find_element(By.ID, element_id).get_attribute("data-points") or 0)


def test_dashboard_draws_live_charts_in_a_real_browser(
    browser: Any, served: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, keys = served
    with httpx.Client(base_url=url, timeout=30) as http:
        traffic = Traffic(http, keys)
        traffic.send()
        browser.get(f"{url}/dashboard#key={keys['admin']}")

        def charted(driver: Any) -> bool:
            traffic.send()  # keep data flowing between the page's polls (every 5 s)
            return all(points(driver, f"chart-{name}") >= 2 for name in CHARTS)

        WebDriverWait(browser, 60, poll_frequency=1).until(charted)

    for name in CHARTS:
        assert points(browser, f"chart-{name}") >= 2, name
        lines = browser.find_elements(By.CSS_SELECTOR, f"#chart-{name} polyline")
        assert lines, f"{name}: no line drawn"
    assert points(browser, "trending") == 10
    titles = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#trending .title")]
    assert all(titles) and not any(t.startswith("p0000") for t in titles)  # titles, not ids
    assert points(browser, "models") == 1
    assert "served here" in browser.find_element(By.ID, "models").text
    assert "clicks" in browser.find_element(By.ID, "figure-ctr").text
    assert "updated" in browser.find_element(By.ID, "status").text
    assert "#key=" not in browser.current_url  # the key leaves the address bar at once
    refused = [
        entry["message"]
        for entry in browser.get_log("browser")
        if "Content Security Policy" in entry["message"] or "Refused to" in entry["message"]
    ]
    assert not refused, refused

    shots = [tmp_path / "dashboard.png"]
    if os.environ.get("CLICKREC_SCREENSHOT_DIR"):
        shots.append(Path(os.environ["CLICKREC_SCREENSHOT_DIR"]) / "dashboard.png")
    assert browser.save_screenshot(str(shots[0]))
    for shot in shots[1:]:
        shot.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shots[0], shot)
    assert shots[0].stat().st_size > 10_000

    # A key without the admin scope is refused with a message, and the page asks again.
    browser.get("about:blank")
    browser.get(f"{url}/dashboard#key={keys['read']}")
    WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, "key-error").is_displayed())
    assert "not an admin key" in browser.find_element(By.ID, "key-error").text
    assert not browser.find_element(By.ID, "board").is_displayed()
