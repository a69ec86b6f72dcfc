"""The training pipeline (the Step Functions state machine), one run at a time.

readiness → dataset (lake + log tail, through DuckDB) → evaluate candidate recipes on a
time holdout → fit the best on all data → gate against the live model → publish.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from clickrec.backends.base import EventLog, Lake
from clickrec.backends.sql_catalog import SQLCatalog
from clickrec.config import Settings
from clickrec.core.clock import Clock
from clickrec.core.datakeys import DataKeys
from clickrec.core.errors import NotEnoughData
from clickrec.evaluation.split import TemporalSplit, last_event_split, temporal_split
from clickrec.lake.reader import load_events
from clickrec.models.base import Artifact, Interactions, RecipeParams
from clickrec.models.recipes import FitCache, fit
from clickrec.models.scoring import Exploration
from clickrec.observability import tracing
from clickrec.training.dataset import TRAINING_COLUMNS, readiness, to_interactions
from clickrec.training.evaluate import evaluate_recipe

log = logging.getLogger("clickrec.training")

GATE_METRIC = "ndcg@10"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Candidate:
    name: str
    recipe: str
    params: RecipeParams


LONG_MEMORY_HOURS = 8760.0  # a year: co-reads of long-lived tastes (films, products) stay


def candidates(base: RecipeParams) -> list[Candidate]:
    """The recipes and settings each run compares on the holdout: six, one per kind of
    site we know, so the run is cheap and the choice is the site's own evidence."""
    # What a reader reads next: co-reads and, above all, what sessions read right after
    # the item just read (the newest read counts most); taste outweighs trending.
    next_read = replace(base, sequence_weight=1.0, personal_weight=3.0, history_half_life=1.0)
    return [
        Candidate("trending-now", "trending-now", base),
        Candidate("user-personalization/next-read", "user-personalization", next_read),
        # Long tastes (films, products): everything a reader read, over a year, links items.
        Candidate(
            "user-personalization/long-taste",
            "user-personalization",
            replace(
                next_read,
                cooccurrence="reader",
                history_half_life=2.0,
                half_life_hours=max(base.half_life_hours, LONG_MEMORY_HOURS),
            ),
        ),
        # News: taste reorders what is trending now; a reader with no history gets trending.
        Candidate(
            "user-personalization/within-trending",
            "user-personalization",
            replace(base, blend="product"),
        ),
        # ... and the sections a reader reads more than everybody bend what trended in the
        # last hour, so a post published a minute ago reaches its section's readers.
        Candidate(
            "user-personalization/sections-within-trending",
            "user-personalization",
            replace(base, blend="product", trending_half_life_hours=1.0, category_weight=1.0),
        ),
        # ... over the serving half-life, with a reader's sections taken from a longer
        # stretch of their history (20 reads to half weight instead of 5).
        Candidate(
            "user-personalization/sections-long-taste",
            "user-personalization",
            replace(base, blend="product", category_weight=1.0, history_half_life=20.0),
        ),
    ]


MIN_TEST_READERS = 50


def holdout(data: Interactions, fraction: float) -> tuple[TemporalSplit, str]:
    """A time cut when enough readers span it; else each recent reader's last event (data
    made of short anonymous sessions rarely spans a cut). NotEnoughData if neither works."""
    args = (data.reader, data.item, data.timestamp, data.n_readers, data.n_items, fraction)
    try:
        split = temporal_split(*args)
        if len(split.test_readers) >= MIN_TEST_READERS:
            return split, "temporal"
    except ValueError:
        pass
    try:
        return last_event_split(*args), "last-event"
    except ValueError as exc:
        raise NotEnoughData(f"not enough data for a holdout: {exc}") from exc


@dataclass(frozen=True)
class RunResult:
    model_version: str
    published: bool
    metrics: dict[str, Any]


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        log_store: EventLog,
        lake: Lake,
        catalog: SQLCatalog,
        models_root: Path,
        clock: Clock,
        data_keys: DataKeys | None = None,
    ) -> None:
        self.settings = settings
        self.data_keys = data_keys
        self.log_store = log_store
        self.lake = lake
        self.catalog = catalog
        self.models_root = models_root
        self.clock = clock

    def item_facts(self) -> dict[str, tuple[float | None, list[str]]]:
        rows = self.catalog.items_changed_since(0, limit=10_000_000)
        return {
            r["item_id"]: (r["published_at"], r["categories"]) for r in rows if not r["deleted"]
        }

    def run(self, run_id: str, progress: Progress = lambda step: None) -> RunResult:
        """Run every step; raises NotEnoughData before doing any heavy work."""
        cfg, serve = self.settings.training, self.settings.serving
        started = time.monotonic()
        progress("dataset")
        last_seq = self.log_store.last_seq()
        table = load_events(self.lake, self.log_store, columns=TRAINING_COLUMNS)
        data = to_interactions(table)
        progress("readiness")
        readiness(data, cfg.min_events_per_user).check(cfg.min_interactions, cfg.min_users)
        facts = self.item_facts()
        exploration = Exploration(serve.exploration_weight, serve.exploration_item_age_cutoff_days)
        base = RecipeParams(half_life_hours=cfg.half_life_hours, neighbours=cfg.neighbours)
        split, protocol = holdout(data, cfg.holdout_fraction)
        fitted: FitCache = {}  # candidates that differ only in scoring share one fit

        def evaluate(recipe: str, params: RecipeParams) -> dict[str, float]:
            """A recipe on this run's holdout, through the serving scorer."""
            return evaluate_recipe(
                recipe,
                params,
                data,
                split,
                facts,
                exploration,
                serve.trending_half_life_hours,
                serve.history_length,
                seen_length=serve.seen_length,
                cache=fitted,
            )

        scores: dict[str, dict[str, float]] = {}
        for cand in candidates(base):
            progress(f"evaluate {cand.name}")
            scores[cand.name] = evaluate(cand.recipe, cand.params)
        best = max(candidates(base), key=lambda c: scores[c.name][GATE_METRIC])
        progress(f"fit {best.name}")
        artifact = fit(best.recipe, data, best.params)
        best_score = scores[best.name][GATE_METRIC]
        metrics: dict[str, Any] = {
            "chosen": best.name,
            GATE_METRIC: best_score,
            "holdout": scores[best.name],
            "candidates": {
                k: {m: v[m] for m in ("ndcg@10", "precision@10", "mrr@20", "coverage@20")}
                for k, v in scores.items()
            },
            "holdout_protocol": protocol,
            "test_readers": int(len(split.test_readers)),
            "interactions": len(data),
            "items": data.n_items,
            "readers": data.n_readers,
            "last_seq": last_seq,
            "train_seconds": round(time.monotonic() - started, 2),
        }
        artifact.metrics = metrics
        progress("gate")
        live = self.catalog.live_model()
        live_score = None
        if live is not None:
            live_score = self._live_score(
                live, scores, lambda recipe, params: evaluate(recipe, params)[GATE_METRIC]
            )
            metrics["gate"] = {
                "live_version": live["version"],
                f"live_{GATE_METRIC}": live_score,
                "tolerance": cfg.gate_tolerance,
            }
        publish = live_score is None or best_score >= live_score * (1.0 - cfg.gate_tolerance)
        version = time.strftime("v%Y%m%d-%H%M%S", time.gmtime(self.clock.now())) + f"-{run_id[:6]}"
        folder = self.models_root / version
        artifact.save(folder, self.data_keys)
        progress("publish" if publish else "keep live model")
        self.catalog.add_model_version(
            {
                "version": version,
                "created_at": self.clock.now(),
                "recipe": artifact.recipe,
                "run_id": run_id,
                "path": str(folder.resolve()),
                "metrics": metrics,
                "info": {"chosen": best.name},
            },
            make_live=publish,
        )
        return RunResult(version, publish, metrics)

    def _live_score(
        self,
        live: dict[str, Any],
        scores: dict[str, dict[str, float]],
        score: Callable[[str, RecipeParams], float],
    ) -> float:
        """The live model's configuration scored on this run's holdout, so the gate compares
        like with like (a score stored by an earlier run came from other data). Its
        candidate's score when it is one of this run's, else its recipe and settings
        fitted on this run's training part."""
        chosen = live.get("info", {}).get("chosen")
        if chosen in scores:
            return scores[chosen][GATE_METRIC]
        artifact = Artifact.load(Path(live["path"]), self.data_keys)
        return score(artifact.recipe, artifact.params)


def execute_run(
    pipeline: Pipeline,
    catalog: SQLCatalog,
    run_id: str,
    clock: Clock,
    on_step: Progress = lambda step: None,
) -> None:
    """Run one pending run to its end state, recording every step in the registry."""
    if not catalog.claim_run(run_id, clock.now()):
        return
    with tracing.span("training.run", {"clickrec.run_id": run_id}, root=True) as span:

        def progress(step: str) -> None:
            catalog.update_run(run_id, step=step)
            span.add_event(step)  # each step of the run, timed on the span
            on_step(step)

        try:
            result = pipeline.run(run_id, progress=progress)
        except NotEnoughData as exc:
            span.set_attribute("clickrec.run_state", "failed")
            catalog.update_run(run_id, state="failed", error=str(exc), finished_at=clock.now())
            return
        except Exception as exc:  # noqa: BLE001 - a failed run is recorded, never lost
            tracing.mark_failed(span, exc)
            span.set_attribute("clickrec.run_state", "failed")
            log.exception("training run %s failed", run_id)
            catalog.update_run(
                run_id,
                state="failed",
                error=f"{type(exc).__name__}: {exc}",
                finished_at=clock.now(),
            )
            return
        span.set_attributes(
            {
                "clickrec.run_state": "succeeded",
                "clickrec.model_version": result.model_version,
                "clickrec.published": result.published,
            }
        )
    catalog.update_run(
        run_id,
        state="succeeded",
        finished_at=clock.now(),
        model_version=result.model_version,
        published=result.published,
        metrics=result.metrics,
        step="done",
        last_seq=result.metrics["last_seq"],
    )
