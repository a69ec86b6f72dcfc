"""The training pipeline (the Step Functions state machine), one run at a time.

readiness → dataset (lake + log tail, read part by part) → replay candidate recipes over the
newest events as serving would run them (``training.selection``) → fit the best on all data
→ gate against the live model in the same replay → publish.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from clickrec.backends.base import EventLog, Lake, ModelStore
from clickrec.backends.sql_catalog import SQLCatalog
from clickrec.config import Settings
from clickrec.core.clock import Clock
from clickrec.core.datakeys import DataKeys
from clickrec.core.errors import NotEnoughData
from clickrec.lake.reader import load_events
from clickrec.models.base import Artifact, RecipeParams
from clickrec.models.content import item_text
from clickrec.models.online import TRACKED_HALF_LIVES
from clickrec.models.recipes import FitCache, TrendingNow, fit
from clickrec.models.scoring import Exploration
from clickrec.observability import tracing
from clickrec.training.dataset import TRAINING_COLUMNS, readiness, reads_only, to_interactions
from clickrec.training.selection import SELECT_METRIC, ServingSetup, replay_scores, replay_window

log = logging.getLogger("clickrec.training")

GATE_METRIC = SELECT_METRIC  # MRR@20 of the replay: where the read post sits in the list
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Candidate:
    name: str
    recipe: str
    params: RecipeParams


LONG_MEMORY_HOURS = 8760.0  # a year: co-reads of long-lived tastes (films, products) stay
TRENDING_HALF_LIVES = TRACKED_HALF_LIVES  # besides the serving setting's own


def candidates(base: RecipeParams) -> list[Candidate]:
    """The recipes and settings each run compares in its replay: trending at the serving
    half-life and at each tracked one, and blends of taste and trending, one per kind of
    site we know, some also fed what the stream (fresh co-reads) and the catalog (content)
    say between trainings; a short list, so the run is cheap and the choice is the site's
    own evidence."""
    # What a reader reads next: co-reads and, above all, what sessions read right after
    # the item just read (the newest read counts most); taste outweighs trending.
    next_read = replace(base, sequence_weight=1.0, personal_weight=3.0, history_half_life=1.0)
    long_taste = replace(
        next_read,
        cooccurrence="reader",
        history_half_life=2.0,
        half_life_hours=max(base.half_life_hours, LONG_MEMORY_HOURS),
    )
    return [
        Candidate("trending-now", "trending-now", base),
        # How fast "now" fades differs by site (a news desk in hours, a film shelf in days):
        # the replay picks the half-life, which a holdout that knows no new post cannot.
        *(
            Candidate(
                f"trending-now/{h:g}h", "trending-now", replace(base, trending_half_life_hours=h)
            )
            for h in TRENDING_HALF_LIVES
        ),
        # The last hour's trending with the last day's beside it: a post from yesterday
        # that readers still come to keeps a place (news read over a day or two).
        Candidate(
            "trending-now/1h+day",
            "trending-now",
            replace(base, trending_half_life_hours=1.0, slow_trending_weight=0.3),
        ),
        # ... with more exploration: a news desk whose readers follow what is brand new.
        Candidate(
            "trending-now/1h+day/explore-more",
            "trending-now",
            replace(
                base, trending_half_life_hours=1.0, slow_trending_weight=0.3, exploration_weight=0.6
            ),
        ),
        Candidate("user-personalization/next-read", "user-personalization", next_read),
        # Long tastes (films, products): everything a reader read, over a year, links items.
        Candidate(
            "user-personalization/long-taste",
            "user-personalization",
            long_taste,
        ),
        # ... where the newest read says most (shopping sessions): the same fit, scored
        # with a history that halves at each older read.
        Candidate(
            "user-personalization/long-taste/recent",
            "user-personalization",
            replace(long_taste, history_half_life=1.0),
        ),
        # ... where the order of reads says most (a film after the one before): read-next
        # three times the weight of read-together.
        Candidate(
            "user-personalization/long-taste/in-order",
            "user-personalization",
            replace(long_taste, sequence_weight=3.0),
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
        # The same blends, also fed the read-next pairs of the stream since the training
        # (``models.coreads``): taste reaches the posts published after it.
        Candidate(
            "user-personalization/within-trending+fresh",
            "user-personalization",
            replace(base, blend="product", fresh_weight=1.0),
        ),
        Candidate(
            "user-personalization/next-read+fresh",
            "user-personalization",
            replace(next_read, fresh_weight=1.0),
        ),
        Candidate(
            "user-personalization/sections-within-trending+fresh",
            "user-personalization",
            replace(
                base,
                blend="product",
                trending_half_life_hours=1.0,
                category_weight=1.0,
                fresh_weight=1.0,
            ),
        ),
        Candidate(
            "user-personalization/within-trending/1h+day+fresh",
            "user-personalization",
            replace(
                base,
                blend="product",
                trending_half_life_hours=1.0,
                slow_trending_weight=0.3,
                fresh_weight=1.0,
            ),
        ),
        # ... with less exploration: readers who keep to their sections need fewer strangers.
        Candidate(
            "user-personalization/sections+fresh/explore-less",
            "user-personalization",
            replace(
                base,
                blend="product",
                trending_half_life_hours=1.0,
                category_weight=1.0,
                fresh_weight=1.0,
                exploration_weight=0.15,
            ),
        ),
        # ... and posts that share words with what the reader read (a catalog with titles,
        # text, tags): a post nobody has read yet reaches its likely readers.
        Candidate(
            "user-personalization/within-trending+fresh+content",
            "user-personalization",
            replace(base, blend="product", fresh_weight=1.0, content_weight=1.0),
        ),
        # ... over the serving half-life, with a reader's sections taken from a longer
        # stretch of their history (20 reads to half weight instead of 5).
        Candidate(
            "user-personalization/sections-long-taste",
            "user-personalization",
            replace(base, blend="product", category_weight=1.0, history_half_life=20.0),
        ),
    ]


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
        models: ModelStore,
        clock: Clock,
        data_keys: DataKeys | None = None,
    ) -> None:
        self.settings = settings
        self.data_keys = data_keys
        self.log_store = log_store
        self.lake = lake
        self.catalog = catalog
        self.models = models
        self.clock = clock
        # (lease name, token) the run's trainer held when it started it: the model is
        # published only while that lease still has that token (scheduler.py).
        self.fence: tuple[str, int] | None = None

    def item_facts(self) -> tuple[dict[str, tuple[float | None, list[str]]], dict[str, str]]:
        """What serving knows of each live catalog item: (published_at, categories), and
        its words (for content similarity)."""
        rows = [
            r for r in self.catalog.items_changed_since(0, limit=10_000_000) if not r["deleted"]
        ]
        facts = {r["item_id"]: (r["published_at"], r["categories"]) for r in rows}
        texts = {r["item_id"]: text for r in rows if (text := item_text(r))}
        return facts, texts

    def run(self, run_id: str, progress: Progress = lambda step: None) -> RunResult:
        """Run every step; raises NotEnoughData before doing any heavy work."""
        cfg, serve = self.settings.training, self.settings.serving
        started = time.monotonic()
        progress("dataset")
        last_seq = self.log_store.last_seq()
        table = load_events(self.lake, self.log_store, columns=TRAINING_COLUMNS)
        data = to_interactions(reads_only(table, serve.ignore_event_types))
        progress("readiness")
        readiness(data, cfg.min_events_per_user).check(cfg.min_interactions, cfg.min_users)
        facts, texts = self.item_facts()
        exploration = Exploration(serve.exploration_weight, serve.exploration_item_age_cutoff_days)
        base = RecipeParams(half_life_hours=cfg.half_life_hours, neighbours=cfg.neighbours)
        replay = replay_window(data, cfg.holdout_fraction)
        setup = ServingSetup(
            facts,
            exploration,
            serve.trending_half_life_hours,
            serve.history_length,
            serve.seen_length,
            texts,
        )
        fitted: FitCache = {}  # candidates that differ only in scoring share one fit
        pool = candidates(base)
        scores = replay_scores(
            [(c.name, c.recipe, c.params) for c in pool],
            data,
            replay,
            setup,
            fitted,
            progress=lambda name: progress(f"replay {name}"),
        )
        best = max(pool, key=lambda c: scores[c.name][GATE_METRIC])
        progress(f"fit {best.name}")
        artifact = fit(best.recipe, data, best.params)
        best_score = scores[best.name][GATE_METRIC]
        floor = TrendingNow.name
        if not any(c.recipe == floor for c in pool):  # the floor is always measured
            scores |= replay_scores([(floor, floor, base)], data, replay, setup, fitted)
        trending = max(v[GATE_METRIC] for k, v in scores.items() if k.startswith(floor))
        metrics: dict[str, Any] = {
            "chosen": best.name,
            GATE_METRIC: best_score,
            "replay": scores[best.name],
            f"trending_{GATE_METRIC}": trending,  # the best plain trending's, the floor
            "lead_over_trending": best_score / trending - 1.0 if trending > 0 else None,
            "candidates": scores,
            **replay.describe(),
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
                live,
                scores,
                lambda recipe, params: replay_scores(
                    [("live", recipe, params)], data, replay, setup, fitted
                )["live"][GATE_METRIC],
            )
            metrics["gate"] = {
                "live_version": live["version"],
                f"live_{GATE_METRIC}": live_score,
                "tolerance": cfg.gate_tolerance,
            }
        # Never below plain trending in the same replay, never well below the live model.
        publish = best_score >= trending and (
            live_score is None or best_score >= live_score * (1.0 - cfg.gate_tolerance)
        )
        version = time.strftime("v%Y%m%d-%H%M%S", time.gmtime(self.clock.now())) + f"-{run_id[:6]}"
        folder = self.models.folder_for(version)
        artifact.save(folder, self.data_keys)
        location = self.models.publish(version, folder)
        progress("publish" if publish else "keep live model")
        self.catalog.add_model_version(
            {
                "version": version,
                "created_at": self.clock.now(),
                "recipe": artifact.recipe,
                "run_id": run_id,
                "path": location,
                "metrics": metrics,
                "info": {"chosen": best.name},
            },
            make_live=publish,
            fence=self.fence,
        )
        return RunResult(version, publish, metrics)

    def _live_score(
        self,
        live: dict[str, Any],
        scores: dict[str, dict[str, float]],
        score: Callable[[str, RecipeParams], float],
    ) -> float:
        """The live model's configuration scored in this run's replay, so the gate compares
        like with like (a score stored by an earlier run came from other data). Its
        candidate's score when it is one of this run's, else its recipe and settings
        fitted before this run's cut."""
        chosen = live.get("info", {}).get("chosen")
        if chosen in scores:
            return scores[chosen][GATE_METRIC]
        artifact = Artifact.load(self.models.fetch(live["path"]), self.data_keys)
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
