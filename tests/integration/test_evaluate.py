"""`clickrec evaluate`: offline evaluation of interaction files through the serving scorer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from typer.testing import CliRunner

from clickrec.cli import app
from clickrec.importing import InteractionColumns
from clickrec.testing.synthetic import BlogSpec, generate_blog, write_blog
from clickrec.training.dataset import TRAINING_COLUMNS
from clickrec.training.offline import (
    POPULARITY_ALL_TIME,
    default_candidates,
    load_dataset,
    session_next_click,
)

pytestmark = pytest.mark.integration
runner = CliRunner()
COLS = InteractionColumns()


@pytest.fixture(scope="module")
def blog_csv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pa.Table]:
    blog = generate_blog(BlogSpec(users=300, days=6, seed=1))
    paths = write_blog(blog, tmp_path_factory.mktemp("blog"))
    return paths["interactions"], blog.interactions


def test_cli_prints_every_candidate_and_writes_json(
    blog_csv: tuple[Path, pa.Table], tmp_path: Path
) -> None:
    path, interactions = blog_csv
    report = tmp_path / "metrics.json"
    result = runner.invoke(app, ["evaluate", str(path), "--json", str(report)])
    assert result.exit_code == 0, result.output
    for cand in default_candidates():
        assert cand.name in result.output
    assert "ndcg@10" in result.output and "popular_share@20" in result.output

    data = json.loads(report.read_text())
    assert data["protocol"] == "temporal"
    assert data["events"] == interactions.num_rows
    assert data["items"] == pc.count_distinct(interactions.column("item_id")).as_py()
    assert data["users"] == pc.count_distinct(interactions.column("user_id")).as_py()
    assert set(data["candidates"]) == {c.name for c in default_candidates()}
    for metrics in data["candidates"].values():
        rates = {k: v for k, v in metrics.items() if "@" in k}
        for k in ("ndcg", "precision", "recall", "mrr", "hit_rate"):
            for at in (5, 10, 20):
                assert f"{k}@{at}" in rates
        assert all(0.0 <= v <= 1.0 for v in rates.values()), rates
        assert metrics["events"] == interactions.num_rows
        assert metrics["test_readers"] >= 1
    # All-time counts favour the most read posts more than any other candidate does, and
    # on a blog whose posts age fast they lose to trending (so they are not trending).
    shares = {name: m["popular_share@20"] for name, m in data["candidates"].items()}
    assert max(shares, key=lambda name: shares[name]) == POPULARITY_ALL_TIME
    cands = data["candidates"]
    assert cands[POPULARITY_ALL_TIME]["ndcg@10"] < cands["trending-now"]["ndcg@10"]


def test_cli_errors_are_clear_with_exit_code_1(tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", str(tmp_path / "missing.csv")])
    assert result.exit_code == 1
    assert "no such file" in result.output

    ratings = tmp_path / "ratings.csv"
    ratings.write_text("userId,movieId,rating,timestamp\n1,10,4.0,964982703\n")
    result = runner.invoke(app, ["evaluate", str(ratings)])  # csv: no item_id column
    assert result.exit_code == 1
    assert "item_id" in result.output

    result = runner.invoke(app, ["evaluate", str(ratings), "--format", "session"])
    assert result.exit_code == 1
    assert "SessionId" in result.output


def test_load_csv_maps_columns_and_makes_daily_sessions(tmp_path: Path) -> None:
    path = tmp_path / "clicks.csv"
    path.write_text(
        "who,post,when,kind\n"
        "u1,p2,2024-03-02T10:00:00Z,\n"
        "u1,p1,2024-03-01T10:00:00Z,read\n"
        "u2,p1,2024-03-01T11:00:00Z,view\n"
    )
    cols = InteractionColumns(
        user_id="who", session_id=None, item_id="post", event_type="kind", timestamp="when"
    )
    table = load_dataset(path, cols, "csv")
    assert table.column_names == list(TRAINING_COLUMNS)
    assert table.column("seq").to_pylist() == [1, 2, 3]
    assert table.column("item_id").to_pylist() == ["p1", "p1", "p2"]
    assert table.column("session_id").to_pylist() == ["u1-20240301", "u2-20240301", "u1-20240302"]
    assert table.column("event_type").to_pylist() == ["read", "view", "click"]
    assert table.column("timestamp").to_pylist()[0] == 1709287200.0


def test_load_movielens_keeps_every_rating(tmp_path: Path) -> None:
    path = tmp_path / "ratings.csv"
    path.write_text(
        "userId,movieId,rating,timestamp\n"
        "1,31,2.5,1260759144\n"
        "1,1029,0.5,1260759100\n"
        "7,31,5.0,1260759200\n"
    )
    table = load_dataset(path, COLS, "movielens")
    assert table.num_rows == 3
    assert table.schema.field("seq").type == pa.int64()
    assert table.schema.field("timestamp").type == pa.float64()
    assert table.column("seq").to_pylist() == [1, 2, 3]
    assert table.column("timestamp").to_pylist() == [1260759100.0, 1260759144.0, 1260759200.0]
    assert table.column("user_id").to_pylist() == ["1", "1", "7"]
    assert table.column("item_id").to_pylist() == ["1029", "31", "31"]
    assert table.column("session_id").to_pylist() == ["1-20091214", "1-20091214", "7-20091214"]
    assert set(table.column("event_type").to_pylist()) == {"rating"}


def test_load_session_file_has_no_users(tmp_path: Path) -> None:
    path = tmp_path / "clicks.txt"
    path.write_text("SessionId\tItemId\tTime\n2\t20\t5.5\n1\t10\t1.25\n1\t11\t3.0\n")
    table = load_dataset(path, COLS, "session")
    assert table.column_names == list(TRAINING_COLUMNS)
    assert table.column("user_id").null_count == 3
    assert table.column("session_id").to_pylist() == ["1", "1", "2"]
    assert table.column("item_id").to_pylist() == ["10", "11", "20"]
    assert table.column("timestamp").to_pylist() == [1.25, 3.0, 5.5]


def _chain_sessions(path: Path, sessions: int, chains: int, start: float, first_id: int) -> None:
    """Sessions that each click one chain's items in its fixed order: a → b → c."""
    rng = np.random.default_rng(7)
    lines = ["SessionId\tItemId\tTime"]
    t = start
    for s in range(first_id, first_id + sessions):
        chain = int(rng.integers(chains))
        for step in range(3):
            t += 10.0
            lines.append(f"{s}\t{chain * 3 + step}\t{t}")
    path.write_text("\n".join(lines) + "\n")


def test_session_next_click_follows_chains(tmp_path: Path) -> None:
    train, test = tmp_path / "train.txt", tmp_path / "test.txt"
    _chain_sessions(train, sessions=600, chains=40, start=1.7e9, first_id=1)
    _chain_sessions(test, sessions=100, chains=40, start=1.7e9 + 86400, first_id=10_000)
    results = session_next_click(
        load_dataset(train, COLS, "session"), test=load_dataset(test, COLS, "session")
    )
    personal = results["user-personalization/next-read"]
    trending = results["trending-now"]
    assert personal["predictions"] == 200  # two predictions per three-click session
    assert personal["repeat_share"] == 0.0
    assert personal["mrr@20"] > 0.95  # "read next" knows b follows a, where co-reads tie
    assert personal["mrr@20"] > trending["mrr@20"] + 0.3
    assert 0.0 <= trending["hr@20"] <= 1.0

    # Without a test file, the sessions ending last are the test sessions.
    split = session_next_click(load_dataset(train, COLS, "session"), test_fraction=0.2)
    assert split["user-personalization/next-read"]["mrr@20"] > split["trending-now"]["mrr@20"]


def test_cli_session_protocol(tmp_path: Path) -> None:
    train, test = tmp_path / "train.txt", tmp_path / "test.txt"
    _chain_sessions(train, sessions=300, chains=20, start=1.7e9, first_id=1)
    _chain_sessions(test, sessions=50, chains=20, start=1.7e9 + 86400, first_id=10_000)
    report = tmp_path / "session.json"
    result = runner.invoke(
        app,
        ["evaluate", str(train), "--format", "session", "--test-file", str(test)]
        + ["--json", str(report)],
    )
    assert result.exit_code == 0, result.output
    assert "hr@20" in result.output
    data = json.loads(report.read_text())
    assert data["protocol"] == "session"
    assert data["events"] == 3 * 350
    for metrics in data["candidates"].values():
        assert 0.0 <= metrics["mrr@20"] <= metrics["hr@20"] <= 1.0
