"""Fail if any file tracked by git holds something that looks like a secret.

Uses detect-secrets' default plugins (AWS keys, private keys, high-entropy strings, …) on
the files git tracks, so the virtual environment and generated data are never scanned.
A finding that is not a secret can be marked in place with ``# pragma: allowlist secret``.

    .venv/bin/python tools/scan_secrets.py
"""

from __future__ import annotations

import subprocess
import sys

from detect_secrets import SecretsCollection
from detect_secrets.settings import default_settings


def main() -> int:
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], capture_output=True, check=True, text=True
    ).stdout.split("\0")
    files = [f for f in tracked if f]
    found = SecretsCollection()
    with default_settings():
        found.scan_files(*files)
    findings = [(name, s) for name, secrets in found.data.items() for s in secrets]
    for name, secret in findings:
        print(f"{name}:{secret.line_number}: {secret.type}", file=sys.stderr)
    print(f"secrets scan: {len(files)} files, {len(findings)} findings")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
