"""Slow clients against a real `clickrec serve`: a body or header block that trickles in
gets 408 once its deadline passes, however steadily the bytes keep coming, and a silent
connection is closed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.crash import serving

pytestmark = [pytest.mark.e2e]
CLI = [sys.executable, "-m", "clickrec.cli"]
DEADLINE = 1.0  # seconds, for headers and for bodies (set below)
TRICKLE = 0.25  # seconds between two bytes: every gap is well inside the deadline


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    home = tmp_path_factory.mktemp("slow") / "home"
    env = {
        **os.environ,
        "CLICKREC_LIMITS__BODY_TIMEOUT_SECONDS": str(DEADLINE),
        "CLICKREC_LIMITS__HEADER_TIMEOUT_SECONDS": str(DEADLINE),
    }
    init = subprocess.run(
        [*CLI, "init", "--home", str(home)], capture_output=True, text=True, env=env, check=True
    )
    admin = next(line for line in init.stdout.splitlines() if line.startswith("ck_"))
    with serving(home, ["--train-interval", "60"], env) as (url, _):
        yield int(url.rsplit(":", 1)[1]), admin


def _trickle(port: int, data: bytes) -> tuple[bytes, int]:
    """Send ``data`` a byte every TRICKLE seconds until the server answers or closes;
    returns (what it answered, how many bytes were sent by then)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.setblocking(False)
        sent = 0
        answer = b""
        while sent < len(data):
            try:
                sock.send(data[sent : sent + 1])
                sent += 1
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(TRICKLE)
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                continue
            answer += chunk
            if not chunk or b"\r\n\r\n" in answer:
                break
        sock.setblocking(True)
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        return answer, sent


def test_a_body_trickling_in_gets_408_at_its_deadline(server: tuple[int, str]) -> None:
    port, admin = server
    body = b'{"events": [{"session_id": "s", "item_id": "p", "event_type": "read"}]}'
    head = (
        f"POST /v1/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {admin}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        answer, sent = _trickle_on(sock, body)
        after = _until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"request body not received within 1 seconds" in answer
    assert sent < len(body)  # refused long before the body could have been complete
    # The rest of that body could only be read as a next request: the server closes the
    # connection at once rather than wait for headers that never come (a second 408).
    assert b"connection: close" in answer.lower()
    assert after == b"", after


def _until_closed(sock: socket.socket) -> bytes:
    """What the server sends until it closes the connection."""
    sock.settimeout(DEADLINE * 10)
    rest = b""
    while chunk := sock.recv(65536):
        rest += chunk
    return rest


def _trickle_on(sock: socket.socket, data: bytes) -> tuple[bytes, int]:
    """Send ``data`` a byte every TRICKLE seconds until an answer starts; then read the
    whole answer (headers and body may come in separate packets)."""
    sock.settimeout(TRICKLE)
    sent = 0
    answer = b""
    while sent < len(data):
        sock.send(data[sent : sent + 1])
        sent += 1
        try:
            answer += sock.recv(65536)
        except TimeoutError:
            continue
        if b"\r\n\r\n" in answer:
            break
    sock.settimeout(5.0)
    head, _, body = answer.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.lower().split(b"\r\n")
            if line.startswith(b"content-length:")
        ),
        0,
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body, sent


def test_headers_trickling_in_get_408_and_the_connection_closes(
    server: tuple[int, str],
) -> None:
    port, _ = server
    request = b"GET /healthz HTTP/1.1\r\n" + b"x-pad: " + b"a" * 60 + b"\r\nhost: x\r\n\r\n"
    answer, sent = _trickle(port, request)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"connection: close" in answer.lower()
    assert sent < len(request)


def test_a_silent_connection_is_answered_408_and_closed(server: tuple[int, str]) -> None:
    port, _ = server
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE * 10) as sock:
        answer = _until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer


def test_keep_alive_requests_each_get_their_own_header_deadline(
    server: tuple[int, str],
) -> None:
    port, _ = server
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        for _ in range(3):  # the same connection, spaced under keep-alive's idle limit
            assert http.get("/healthz").status_code == 200
            time.sleep(DEADLINE * 0.6)
        assert http.get("/healthz").status_code == 200
