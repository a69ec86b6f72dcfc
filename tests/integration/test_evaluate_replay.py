"""`clickrec evaluate --protocol replay`: the live replay of a user's own file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clickrec.cli import app
from clickrec.testing.synthetic import BlogSpec, generate_blog, write_blog
from clickrec.training.offline import (
    BASELINE_POPULARITY,
    BASELINE_TRENDING,
    default_candidates,
)

pytestmark = pytest.mark.integration
runner = CliRunner()


@pytest.fixture(scope="module")
def blog_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    blog = generate_blog(BlogSpec(users=250, days=6, seed=2))
    return write_blog(blog, tmp_path_factory.mktemp("blog"))["interactions"]


def test_replay_scores_recipes_and_baselines_on_one_stream(blog_csv: Path, tmp_path: Path) -> None:
    report = tmp_path / "replay.json"
    args = ["evaluate", str(blog_csv), "--protocol", "replay", "--max-events", "300"]
    result = runner.invoke(app, [*args, "--json", str(report)])
    assert result.exit_code == 0, result.output
    names = [c.name for c in default_candidates()] + [BASELINE_TRENDING, BASELINE_POPULARITY]
    for name in names:
        assert name in result.output
    assert "hr@10" in result.output and "first touches" in result.output

    data = json.loads(report.read_text())
    assert data["protocol"] == "replay"
    assert set(data["candidates"]) == set(names)
    observed = {m["observed"] for m in data["candidates"].values()}
    sampled = {m["sampled"] for m in data["candidates"].values()}
    assert len(observed) == 1 and len(sampled) == 1 and 0 < sampled.pop() <= 300
    for metrics in data["candidates"].values():
        assert 0.0 <= metrics["hr@5"] <= metrics["hr@10"] <= metrics["hr@20"] <= 1.0
        assert metrics["mrr@20"] <= metrics["hr@20"]
    cands = data["candidates"]
    # On a blog whose posts age in hours, what is read now beats what was ever read.
    assert cands[BASELINE_TRENDING]["hr@10"] > cands[BASELINE_POPULARITY]["hr@10"]


def test_unknown_protocol_is_a_clear_error(blog_csv: Path) -> None:
    result = runner.invoke(app, ["evaluate", str(blog_csv), "--protocol", "live"])
    assert result.exit_code == 1
    assert "replay" in result.output
