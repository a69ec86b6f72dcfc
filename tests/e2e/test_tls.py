"""HTTPS: `clickrec init --self-signed` then `clickrec serve` speaks TLS, with HSTS."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_server import CLI, cli, free_port, wait_for

pytestmark = [pytest.mark.e2e]


def test_serve_over_tls_with_a_self_signed_certificate(tmp_path: Path) -> None:
    home = tmp_path / "home"
    made = cli(home, "init", "--self-signed")
    assert "self-signed" in made
    cert = home / "tls" / "cert.pem"
    assert (home / "tls" / "key.pem").stat().st_mode & 0o077 == 0
    port = free_port()
    proc = subprocess.Popen(
        [*CLI, "serve", "--home", str(home), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        context = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=context) as https:

            def up() -> httpx.Response | None:
                try:
                    return https.get("/healthz")
                except httpx.TransportError:
                    return None

            response = wait_for(up, timeout=60)
            assert response.status_code == 200
            assert response.headers["strict-transport-security"].startswith("max-age=")
            assert response.headers["x-frame-options"] == "DENY"
            assert "server" not in response.headers  # no version banner
        with pytest.raises(httpx.TransportError):  # plain HTTP is not served on that port
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
