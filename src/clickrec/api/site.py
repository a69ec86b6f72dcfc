"""What a website loads from the engine: ``GET /tracker.js``, the page tracker.

Public like the dashboard page: the script holds no data, and the tracker key a site puts
in its pages is what the engine checks (``docs/tracker.md``). The file served is
``static/tracker/tracker.js`` as it is, the same file a site may host itself.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from fastapi import APIRouter, Request, Response

router = APIRouter(include_in_schema=False)
TRACKER = resources.files("clickrec.api") / "static" / "tracker" / "tracker.js"
MEDIA_TYPE = "text/javascript; charset=utf-8"  # RFC 9239: the one JavaScript type
# The URL is not versioned, so a browser keeps the script a day and then revalidates it by
# its ETag (a 304 without the body); a new release reaches every page within a day.
CACHE_CONTROL = "public, max-age=86400, stale-while-revalidate=604800"


@dataclass(frozen=True)
class Script:
    """The tracker as served: plain and gzipped, each with its own strong ETag."""

    plain: bytes
    gzipped: bytes
    etag: str
    gzip_etag: str


@cache
def tracker() -> Script:
    plain = TRACKER.read_bytes()
    digest = hashlib.sha256(plain).hexdigest()[:32]
    return Script(plain, gzip.compress(plain, 9, mtime=0), f'"{digest}"', f'"{digest}-gz"')


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header admits gzip (``gzip;q=0`` refuses it)."""
    for part in accept_encoding.lower().split(","):
        name, _, params = part.strip().partition(";")
        if name.strip() in ("gzip", "x-gzip"):
            q = params.strip().removeprefix("q=").strip() if params.strip() else "1"
            try:
                return float(q) > 0
            except ValueError:
                return False
    return False


def matches(if_none_match: str, etags: tuple[str, ...]) -> bool:
    """Whether If-None-Match names one of ``etags`` (weak comparison, as RFC 9110 asks)."""
    if if_none_match.strip() == "*":
        return True
    presented = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return not presented.isdisjoint(etags)


@router.get("/tracker.js")
async def tracker_js(request: Request) -> Response:
    script = tracker()
    zipped = accepts_gzip(request.headers.get("accept-encoding", ""))
    etag = script.gzip_etag if zipped else script.etag
    headers = {"etag": etag, "cache-control": CACHE_CONTROL, "vary": "Accept-Encoding"}
    if matches(request.headers.get("if-none-match", ""), (script.etag, script.gzip_etag)):
        return Response(status_code=304, headers=headers)
    if zipped:
        headers["content-encoding"] = "gzip"
    body = script.gzipped if zipped else script.plain
    return Response(body, media_type=MEDIA_TYPE, headers=headers)
