"""The API reference at /docs in a real headless Chromium against a real `clickrec serve`:
it renders every route from the package's own files (no CDN), and "Try it out" works once
a key is given to "Authorize", while the schema holds nothing a key protects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.crash import serving

from .test_dashboard_browser import browser  # noqa: F401 - the fixture
from .test_server import cli, key_from

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_docs_page_lists_every_route_and_tries_one_with_a_key(
    browser: Any,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    home = tmp_path / "home"
    admin = key_from(cli(home, "init"))
    with serving(home) as (url, _):
        schema = httpx.get(f"{url}/openapi.json", timeout=10).json()  # public, no key
        assert "/v1/recommendations" in schema["paths"]
        assert (
            schema
            == httpx.get(
                f"{url}/v1/openapi.json", headers={"Authorization": f"Bearer {admin}"}, timeout=10
            ).json()
        )
        assert httpx.get(f"{url}/v1/trending", timeout=10).status_code == 401  # still guarded

        browser.get(f"{url}/docs")
        WebDriverWait(browser, 30).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) >= len(schema["paths"])
        )
        shown = {e.text for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
        assert {p.replace("{", "").replace("}", "") for p in schema["paths"]} <= {
            s.replace("{", "").replace("}", "").replace("\u200b", "") for s in shown
        }

        # Authorize with the admin key, then try GET /v1/trending from the page.
        browser.find_element(By.CSS_SELECTOR, "button.authorize").click()
        field = WebDriverWait(browser, 10).until(
            lambda d: d.find_element(By.CSS_SELECTOR, ".auth-container input")
        )
        field.send_keys(admin)
        browser.find_element(By.CSS_SELECTOR, ".auth-btn-wrapper button.authorize").click()
        browser.find_element(By.CSS_SELECTOR, ".btn-done").click()
        trending = browser.find_element(
            By.ID, "operations-recommendations-trending_v1_trending_get"
        )
        trending.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
        WebDriverWait(browser, 10).until(
            lambda d: trending.find_element(By.CSS_SELECTOR, ".try-out__btn")
        ).click()
        trending.find_element(By.CSS_SELECTOR, ".execute").click()
        status = WebDriverWait(browser, 20).until(
            lambda d: trending.find_element(
                By.CSS_SELECTOR, ".live-responses-table tbody .response-col_status"
            )
        )
        assert status.text.strip().startswith("200"), status.text

    refused = [
        entry["message"]
        for entry in browser.get_log("browser")
        if "Content Security Policy" in entry["message"] or "Refused to" in entry["message"]
    ]
    assert not refused, refused
