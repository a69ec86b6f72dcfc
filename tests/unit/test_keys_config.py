"""Settings from TOML and the environment; API keys against a real SQL catalog."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from clickrec.backends.sql_catalog import SQLCatalog
from clickrec.config import CONFIG_FILE, Settings, load_settings, write_default_config
from clickrec.core.clock import FixedClock
from clickrec.core.errors import Forbidden, InvalidInput, Unauthorized
from clickrec.keys import KeyRing

NOW = 1_767_225_600.0

# -- settings --------------------------------------------------------------------------------


def write_toml(home: Path, text: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / CONFIG_FILE).write_text(text)


def test_defaults_without_a_file(tmp_path: Path) -> None:
    s = load_settings(tmp_path, environ={})
    assert s == Settings(home=tmp_path)
    assert s.server.port == 8080
    assert s.training.schedule_hours == 6.0


def test_settings_come_from_the_toml_file(tmp_path: Path) -> None:
    write_toml(
        tmp_path,
        """
[server]
port = 9000
host = "0.0.0.0"

[training]
schedule_hours = 2.5
min_users = 3

[stores]
event_log = "sqlite:///data/events.db"
""",
    )
    s = load_settings(tmp_path, environ={})

    assert s.server.port == 9000 and s.server.host == "0.0.0.0"
    assert s.training.schedule_hours == 2.5 and s.training.min_users == 3
    assert s.training.min_interactions == 1000  # untouched keys keep their defaults
    assert s.home == tmp_path
    assert s.store_path(s.stores.event_log) == tmp_path / "data" / "events.db"
    assert s.store_path("file:///abs/lake") == Path("/abs/lake")
    with pytest.raises(ValueError, match="not a local store"):
        s.store_path("redis://localhost:6379")


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    write_toml(tmp_path, "[server]\nport = 9000\n[training]\nschedule_hours = 2.5\nmin_users = 3\n")
    env = {
        "CLICKREC_PORT": "9100",
        "CLICKREC_TRAINING__SCHEDULE_HOURS": "0.5",
        "CLICKREC_SERVING__EXPLORATION_WEIGHT": "0",
        "PATH": "/usr/bin",  # not ours: ignored
    }
    s = load_settings(tmp_path, environ=env)

    assert s.server.port == 9100
    assert s.training.schedule_hours == 0.5
    assert s.training.min_users == 3  # the rest of the section still comes from the file
    assert s.serving.exploration_weight == 0.0


def test_home_comes_from_the_environment_when_not_given(tmp_path: Path) -> None:
    write_toml(tmp_path, "[server]\nport = 9001\n")
    s = load_settings(environ={"CLICKREC_HOME": str(tmp_path)})
    assert s.home == tmp_path and s.server.port == 9001


@pytest.mark.parametrize(
    "text",
    [
        "verbose = true\n",  # unknown top-level key
        "[server]\nprot = 9000\n",  # typo in a section
        "[trainig]\nschedule_hours = 1\n",  # typo in a section name
        "[server]\nport = 70000\n",  # out of range
        "[training]\nschedule_hours = 0\n",  # must be positive
    ],
)
def test_a_bad_file_is_an_error_not_a_silent_default(tmp_path: Path, text: str) -> None:
    write_toml(tmp_path, text)
    with pytest.raises(ValidationError):
        load_settings(tmp_path, environ={})


def test_a_bad_environment_value_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        load_settings(tmp_path, environ={"CLICKREC_PORT": "eighty"})


def test_the_archive_crash_hook_variable_does_not_break_settings(tmp_path: Path) -> None:
    s = load_settings(tmp_path, environ={"CLICKREC_CRASH_AFTER_LAKE_WRITE": "1"})
    assert s.server.port == 8080


def test_the_default_config_file_loads_back_to_the_defaults(tmp_path: Path) -> None:
    path = write_default_config(tmp_path)
    assert path == tmp_path / CONFIG_FILE
    assert load_settings(tmp_path, environ={}) == Settings(home=tmp_path)

    write_toml(tmp_path, "[server]\nport = 1234\n")
    write_default_config(tmp_path)  # never overwrites a file that exists
    assert load_settings(tmp_path, environ={}).server.port == 1234


# -- API keys --------------------------------------------------------------------------------


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[SQLCatalog]:
    cat = SQLCatalog(f"sqlite:///{tmp_path}/c.db")
    yield cat
    cat.close()


def test_a_created_key_verifies(catalog: SQLCatalog) -> None:
    ring = KeyRing(catalog)
    key, principal = ring.create("ingest", "tracker", now=NOW)

    assert key.startswith("ck_")
    assert principal.scope == "ingest" and principal.name == "tracker"
    assert ring.verify(key) == principal
    assert KeyRing(catalog).verify(key) == principal  # another server, same catalog

    other_key, other = ring.create("read", None, now=NOW)
    assert other_key != key and other.key_id != principal.key_id
    assert other.name == f"read-{other.key_id}"


def test_wrong_or_malformed_keys_are_unauthorized(catalog: SQLCatalog) -> None:
    ring = KeyRing(catalog)
    key, principal = ring.create("read", None, now=NOW)
    _, key_id, secret = key.split("_", 2)
    assert key_id == principal.key_id

    for bad in (
        f"ck_{key_id}_{secret[:-1]}{'A' if secret[-1] != 'A' else 'B'}",  # wrong secret
        f"ck_{key_id}_",
        f"ck_{key_id}",
        f"xx_{key_id}_{secret}",  # wrong prefix
        f"ck_{'0' * 12}_{secret}",  # unknown key id
        "",
        "ck",
        "Bearer " + key,
        key + "x",
    ):
        with pytest.raises(Unauthorized) as exc:
            ring.verify(bad)
        assert secret not in str(exc.value)  # the error never echoes the key


def test_a_revoked_key_stops_working(catalog: SQLCatalog) -> None:
    ring = KeyRing(catalog)
    key, principal = ring.create("admin", None, now=NOW)
    assert ring.verify(key) == principal

    assert catalog.revoke_key(principal.key_id, now=NOW + 1)
    assert not catalog.revoke_key(principal.key_id, now=NOW + 2)  # already revoked

    with pytest.raises(Unauthorized):
        KeyRing(catalog).verify(key)


def test_a_revoked_key_stops_working_on_a_busy_server_within_the_cache_time(
    catalog: SQLCatalog,
) -> None:
    clock = FixedClock(NOW)
    ring = KeyRing(catalog, clock=clock)
    key, principal = ring.create("read", None, now=NOW)
    assert ring.verify(key) == principal  # now cached

    catalog.revoke_key(principal.key_id, now=NOW)
    clock.advance(1.0)
    assert ring.verify(key) == principal  # still cached for up to 2 s
    clock.advance(1.5)
    with pytest.raises(Unauthorized):
        ring.verify(key)


def test_scopes(catalog: SQLCatalog) -> None:
    ring = KeyRing(catalog)
    read = ring.verify(ring.create("read", None, now=NOW)[0])
    ingest = ring.verify(ring.create("ingest", None, now=NOW)[0])
    admin = ring.verify(ring.create("admin", None, now=NOW)[0])

    read.require("read")
    ingest.require("ingest")
    for scope in ("read", "ingest", "admin"):
        admin.require(scope)
    for principal, scope in (
        (read, "admin"),
        (read, "ingest"),
        (ingest, "read"),
        (ingest, "admin"),
    ):
        with pytest.raises(Forbidden, match=scope):
            principal.require(scope)


def test_unknown_scopes_are_refused(catalog: SQLCatalog) -> None:
    with pytest.raises(InvalidInput, match="scope"):
        KeyRing(catalog).create("root", None, now=NOW)
    assert catalog.list_keys() == []


def test_the_stored_key_holds_no_secret_in_clear(catalog: SQLCatalog) -> None:
    ring = KeyRing(catalog)
    key, principal = ring.create("admin", "ops", now=NOW)
    secret = key.split("_", 2)[2]

    row = catalog.get_key(principal.key_id)
    assert row is not None
    assert row["scope"] == "admin" and row["name"] == "ops" and row["created_at"] == NOW
    assert row["revoked_at"] is None
    for value in row.values():
        assert secret not in str(value)
        assert key not in str(value)
    assert len(row["secret_hash"]) == 64 and row["secret_hash"] != secret
    (listed,) = catalog.list_keys()
    assert all(secret not in str(v) for v in listed.values())
    # Two keys never share a salt, so equal secrets would still hash apart.
    ring.create("admin", "ops2", now=NOW)
    salts = {r["salt"] for r in catalog.list_keys()}
    assert len(salts) == 2
