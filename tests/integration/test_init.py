"""`clickrec init`: it records where the data lives, and a failed one leaves nothing behind."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clickrec.cli import app
from clickrec.config import CONFIG_FILE, load_settings, write_default_config
from clickrec.core.errors import Conflict

pytestmark = pytest.mark.integration
CLI = [sys.executable, "-m", "clickrec.cli"]
NO_DRIVER_CATALOG = "postgresql://u@127.0.0.1:1/db"  # port 1: nothing listens there


@pytest.fixture(autouse=True)
def _no_clickrec_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test says which CLICKREC_* variables are set; none leak in from outside."""
    for name in list(os.environ):
        if name.startswith("CLICKREC_"):
            monkeypatch.delenv(name)


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run clickrec in its own process with the given CLICKREC_* variables."""
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def without_psycopg(tmp_path: Path) -> dict[str, str]:
    """Variables for a child process in which the PostgreSQL driver is not installed (CI
    installs it for the PostgreSQL tests): a ``psycopg`` package on the path that refuses
    to import, as a missing one does."""
    shadow = tmp_path / "no-psycopg"
    (shadow / "psycopg").mkdir(parents=True)
    (shadow / "psycopg" / "__init__.py").write_text(
        'raise ModuleNotFoundError("No module named \'psycopg\'", name="psycopg")\n'
    )
    path = os.pathsep.join(p for p in (str(shadow), os.environ.get("PYTHONPATH")) if p)
    return {"PYTHONPATH": path}


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.output


def stores_in(home: Path) -> dict[str, str]:
    return tomllib.loads((home / CONFIG_FILE).read_text())["stores"]


def test_a_failed_init_removes_the_home_it_made_and_names_what_to_install(
    tmp_path: Path, without_psycopg: dict[str, str]
) -> None:
    home = tmp_path / "new" / "home"
    elsewhere = tmp_path / "elsewhere"  # an event log outside the home, made before the catalog
    env = {
        **without_psycopg,
        "CLICKREC_STORES__CATALOG": NO_DRIVER_CATALOG,
        "CLICKREC_STORES__EVENT_LOG": f"sqlite:///{elsewhere}/events.db",
    }

    done = cli("init", "--home", str(home), env=env)

    assert done.returncode != 0
    [line] = done.stderr.strip().splitlines()
    assert "psycopg" in line and "pip install 'clickrec[postgres]'" in line
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "new").exists()
    assert not elsewhere.exists()


def test_a_failed_init_in_an_existing_folder_keeps_only_what_was_there(
    tmp_path: Path, without_psycopg: dict[str, str]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o755)  # whatever the umask an engine of an earlier test left
    (home / "notes.txt").write_text("mine\n")
    mode = stat.S_IMODE(home.stat().st_mode)

    env = {**without_psycopg, "CLICKREC_STORES__CATALOG": NO_DRIVER_CATALOG}
    done = cli("init", "--home", str(home), env=env)

    assert done.returncode != 0
    assert [p.name for p in home.iterdir()] == ["notes.txt"]
    assert (home / "notes.txt").read_text() == "mine\n"
    assert stat.S_IMODE(home.stat().st_mode) == mode  # init makes a home 0700; undone too


def test_init_records_the_stores_the_environment_names_and_later_runs_use_them(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    env = {
        "CLICKREC_STORES__CATALOG": "sqlite:///other-catalog.db",
        "CLICKREC_STORES__EVENT_LOG": "sqlite:///other-events.db",
    }
    code, output = invoke("init", "--home", str(home), env=env)
    assert code == 0, output
    key_id = next(line for line in output.splitlines() if line.startswith("ck_")).split("_")[1]

    assert stores_in(home)["catalog"] == "sqlite:///other-catalog.db"
    assert stores_in(home)["event_log"] == "sqlite:///other-events.db"
    code, listed = invoke("keys", "list", "--home", str(home))  # no variable now
    assert code == 0, listed
    assert key_id in listed
    assert not (home / "catalog.db").exists() and not (home / "events.db").exists()


def test_init_keeps_a_password_out_of_the_config_file(tmp_path: Path) -> None:
    word = "s3cret"
    env = {"CLICKREC_STORES__CATALOG": f"postgresql://clickrec:{word}@db.internal:5432/clickrec"}
    write_default_config(tmp_path, load_settings(tmp_path, environ=env))

    assert stores_in(tmp_path)["catalog"] == "postgresql://clickrec@db.internal:5432/clickrec"
    assert "s3cret" not in (tmp_path / CONFIG_FILE).read_text()
    assert load_settings(tmp_path, environ=env).stores.catalog == env["CLICKREC_STORES__CATALOG"]


def test_init_never_rewrites_a_config_file_that_names_other_stores(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert invoke("init", "--home", str(home))[0] == 0
    config = (home / CONFIG_FILE).read_bytes()

    env = {"CLICKREC_STORES__LAKE": f"file://{tmp_path / 'lake'}"}
    done = cli("init", "--home", str(home), env=env)

    assert done.returncode != 0
    [line] = done.stderr.strip().splitlines()
    assert "stores.lake = file://lake" in line and "CLICKREC_STORES__LAKE" in line
    assert (home / CONFIG_FILE).read_bytes() == config


def test_a_start_that_would_split_the_data_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert invoke("init", "--home", str(home))[0] == 0

    done = cli(
        "keys", "list", "--home", str(home), env={"CLICKREC_STORES__CATALOG": "sqlite:///b.db"}
    )

    assert done.returncode != 0
    [line] = done.stderr.strip().splitlines()
    assert "stores.catalog = sqlite:///catalog.db" in line
    assert "CLICKREC_STORES__CATALOG says sqlite:///b.db" in line
    assert not (home / "b.db").exists()


def test_the_environment_may_name_the_same_store_or_one_the_file_leaves_open(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    assert invoke("init", "--home", str(home))[0] == 0
    same = {"CLICKREC_STORES__CATALOG": f"sqlite:///{home.resolve() / 'catalog.db'}"}
    assert load_settings(home, environ=same).stores.catalog == same["CLICKREC_STORES__CATALOG"]

    (home / CONFIG_FILE).write_text("[server]\nport = 9000\n")  # a file that names no stores
    other = {"CLICKREC_STORES__CATALOG": "sqlite:///b.db"}
    assert load_settings(home, environ=other).stores.catalog == "sqlite:///b.db"


def test_a_store_the_environment_moves_before_any_data_is_there_is_no_conflict(
    tmp_path: Path,
) -> None:
    write_default_config(tmp_path)  # a config file, but no data yet
    env = {"CLICKREC_STORES__CATALOG": "sqlite:///b.db"}
    assert load_settings(tmp_path, environ=env).stores.catalog == "sqlite:///b.db"

    (tmp_path / "catalog.db").write_bytes(b"SQLite format 3\x00")
    with pytest.raises(Conflict, match="the data lives in one place"):
        load_settings(tmp_path, environ=env)


@pytest.mark.parametrize(
    ("variable", "in_file", "in_env"),
    [
        ("CATALOG", "postgresql://clickrec@db-a:5432/clickrec", "postgresql://clickrec@db-b/x"),
        ("CATALOG", "postgresql://clickrec@db-a:5432/clickrec", "sqlite:///catalog.db"),
        ("EVENT_LOG", "redis://cache-a:6379/0", "redis://cache-b:6379/0"),
        ("LAKE", "s3://bucket-a/lake", "s3://bucket-b/lake"),
    ],
)
def test_a_remote_store_the_environment_moves_is_refused_without_connecting(
    tmp_path: Path, variable: str, in_file: str, in_env: str
) -> None:
    """Whether a PostgreSQL, Redis or S3 store holds data cannot be told without reaching
    it, so a variable that points elsewhere is refused: a command would otherwise read an
    empty catalog (no keys, no items) as if it were the deployment's."""
    name = variable.lower()
    (tmp_path / CONFIG_FILE).write_text(f'[stores]\n{name} = "{in_file}"\n')
    with pytest.raises(Conflict, match=f"CLICKREC_STORES__{variable} says"):
        load_settings(tmp_path, environ={f"CLICKREC_STORES__{variable}": in_env})
    assert not (tmp_path / "catalog.db").exists()  # nothing was opened in its place

    same = in_file.replace("clickrec@", "clickrec:pw@")  # the same place, with a password
    assert (
        getattr(
            load_settings(tmp_path, environ={f"CLICKREC_STORES__{variable}": same}).stores, name
        )
        == same
    )


def test_a_catalog_that_cannot_be_opened_fails_init_in_one_line(tmp_path: Path) -> None:
    home, taken = tmp_path / "home", tmp_path / "taken.db"
    taken.mkdir()  # a folder where the catalog's file should be

    code, output = invoke(
        "init", "--home", str(home), env={"CLICKREC_STORES__CATALOG": f"sqlite:///{taken}"}
    )

    assert code == 1
    assert f"cannot open the catalog at sqlite:///{taken}" in output
    assert len(output.strip().splitlines()) == 1
    assert not home.exists() and taken.is_dir()  # what was there before stays
