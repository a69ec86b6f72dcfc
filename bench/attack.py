"""Auth matrix against a real server: every route (the server's OpenAPI schema and the
routes kept out of it) × every kind of credential (none, malformed, a wrong secret, revoked,
expired, each scope, a tracker key from its own, a foreign or no origin; SigV4 with each
defect and with each scope). Prints routes × credentials → status and a summary; exits 1 on
any unexpected 2xx, any 5xx, or a refusal with the wrong status (the rules and the table of
what each route needs: tests/auth_matrix.py, shared with the test that runs it in CI).

    .venv/bin/python bench/attack.py        # a throwaway server in a temporary home (~10 s)
    .venv/bin/python bench/attack.py --url http://127.0.0.1:8080 --admin-key ck_… --home var

The API has no route that makes keys: the run makes its own with `clickrec keys create` in
the server's home folder, ``--home`` (default: the CLI's, ./var or $CLICKREC_HOME), and
revokes them at the end. The calls write, as permitted keys: an event, an item and a user (named
matrix-*), a training run, and an erasure of the made-up reader matrix-user.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import httpx
from common import CLICKREC, OUT_DIR, UNLIMITED, Home, Server, log

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: tests/
from tests import auth_matrix as am  # noqa: E402 - after the path it lives on

# The tracker's own limits too: one address makes every tracker call of the matrix.
LIFTED = {
    **UNLIMITED,
    "CLICKREC_LIMITS__TRACKER_RPS": "1e9",
    "CLICKREC_LIMITS__TRACKER_PER_ADDRESS_RPS": "1e9",
}
EXPIRES_SECONDS = 1.0


def clickrec(home: Path | None, *args: str) -> str:
    command = [CLICKREC, *args, *(["--home", str(home)] if home else [])]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"clickrec {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def make_key(home: Path | None, scope: str, *extra: str) -> am.Key:
    """A new key made by `clickrec keys create`, with the AWS credentials it prints."""
    lines = clickrec(home, "keys", "create", "--scope", scope, *extra).splitlines()
    fields = dict(line.split(" = ", 1) for line in lines if " = " in line)
    token = next(line for line in lines if line.startswith("ck_"))
    return am.Key(token, fields["aws_access_key_id"], fields["aws_secret_access_key"])


def make_keys(home: Path | None) -> am.Keys:
    days = f"{EXPIRES_SECONDS / 86400:.10f}"
    expired = make_key(home, "admin", "--name", "auth-matrix-expired", "--expires-days", days)
    expires_at = time.time() + EXPIRES_SECONDS  # the CLI read its clock before this
    revoked = make_key(home, "admin", "--name", "auth-matrix-revoked")
    clickrec(home, "keys", "revoke", revoked.key_id)
    named = {
        scope: make_key(home, scope, "--name", f"auth-matrix-{scope}")
        for scope in ("ingest", "read", "admin")
    }
    tracker = make_key(
        home, "tracker", "--name", "auth-matrix-tracker", "--origin", am.TRACKER_ORIGIN
    )
    return am.Keys(
        named["ingest"], named["read"], named["admin"], tracker, revoked, expired, expires_at
    )


def attack(url: str, admin_key: str | None, home: Path | None, retries_429: int) -> int:
    """Run the matrix against ``url``; 0 when every call got the answer it must, else 1.
    The keys it made are revoked at the end."""
    started = time.perf_counter()
    log(f"making keys with `clickrec keys create` in {home or 'the CLI default home'}")
    keys = make_keys(home)
    try:
        return _attack(url, admin_key, keys, retries_429, started)
    finally:
        for key in (keys.ingest, keys.read, keys.admin, keys.tracker, keys.expired):
            clickrec(home, "keys", "revoke", key.key_id)


def _attack(
    url: str, admin_key: str | None, keys: am.Keys, retries_429: int, started: float
) -> int:
    with httpx.Client(base_url=url, timeout=30.0) as client:
        token = admin_key or keys.admin.token
        schema = client.get("/v1/openapi.json", headers={"Authorization": f"Bearer {token}"})
        if schema.status_code != 200:
            raise SystemExit(f"GET /v1/openapi.json: {schema.status_code} {schema.text[:200]}")
        routes, problems = am.plan(am.schema_routes(schema.json()))
        creds = am.credentials(keys)
        log(f"calling {len(routes)} routes × {len(creds)} credentials")
        outcomes = am.run(client, routes, creds, keys, retries_429)
    print("\n## Bearer credentials (and none)\n")
    print(am.table(outcomes, "bearer"))
    print("\n## SigV4 credentials (and none)\n")
    print(am.table(outcomes, "sigv4"))
    print("\n## Credentials\n")
    print(am.legend(creds))
    print("\n## Summary\n")
    print(am.summary(outcomes, len(routes), len(creds)))
    for problem in problems:
        print(f"FAIL {problem}")
    failed = problems or [o for o in outcomes if o.problem]
    print(f"\n{'FAILED' if failed else 'PASSED'} in {time.perf_counter() - started:.1f} s")
    OUT_DIR.mkdir(exist_ok=True)
    path = OUT_DIR / "attack.json"
    rows = [
        {
            "route": o.route.label,
            "needs": o.route.needs,
            "credential": o.credential.name,
            "about": o.credential.about,
            "status": o.status,
            "expected": "permitted" if o.expected is None else o.expected,
            "problem": o.problem,
        }
        for o in outcomes
    ]
    doc = {"url": url, "problems": problems, "routes": [asdict(r) for r in routes], "calls": rows}
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"(written to {path})")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a running server (default: start a throwaway one)")
    parser.add_argument("--admin-key", help="reads the server's schema (default: a new key)")
    parser.add_argument("--home", type=Path, help="the server's home folder, for the CLI")
    parser.add_argument(
        "--retries",
        type=int,
        default=5,
        help="retry a 429 this many times after its Retry-After (a server with its limits)",
    )
    args = parser.parse_args()
    if args.url:
        return attack(args.url, args.admin_key, args.home, args.retries)
    os.environ.update(LIFTED)  # Server starts `clickrec serve` with this environment
    home = Home(args.home)
    try:
        home.init()
        with Server(home) as server:
            return attack(server.url, home.key, home.path, 0)
    finally:
        home.cleanup()


if __name__ == "__main__":
    sys.exit(main())
