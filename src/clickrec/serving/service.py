"""The recommender a server runs: live model + online state, kept fresh in the background.

Events acknowledged by this process are applied before the response returns
(read-your-writes). Events written by anyone else (an import, another server) are picked
up by tailing the log, which skips the seqs this process claimed before they committed.
A newly published model is loaded beside the old one and swapped
in with one assignment, so no request fails during the swap.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from clickrec.backends.base import EventLog, ModelStore
from clickrec.backends.sql_catalog import SQLCatalog
from clickrec.core import memory
from clickrec.core.clock import Clock, SystemClock
from clickrec.core.datakeys import DataKeys
from clickrec.core.errors import InvalidInput, NotFound, StoreUnavailable
from clickrec.core.schema import reader_column, reader_key
from clickrec.filters import Context, History
from clickrec.models.base import Artifact
from clickrec.models.content import item_text
from clickrec.models.online import OnlineState, load_bulk
from clickrec.models.recipes import SimilarItems, TrendingNow
from clickrec.models.scoring import NEWEST_TIEBREAK, Exploration, Scorer, top_n
from clickrec.observability import tracing
from clickrec.observability.logs import FailureStreak
from clickrec.serving.explain import Explainer
from clickrec.serving.filtering import (
    CatalogColumns,
    FilterBook,
    empty_history,
    item_fields,
    uses_interactions,
    uses_user,
)

log = logging.getLogger("clickrec.serving")
ONLINE_COLUMNS = (
    "seq", "timestamp", "user_id", "session_id", "item_id", "event_type", "context"
)  # fmt: skip


def parse_contexts(values: list[Any]) -> list[dict[str, str] | None] | None:
    """Events' context maps from their stored JSON text (None when no event has one, the
    common case, which costs one scan). A malformed one (another producer's) counts as none."""
    if not any(values):
        return None
    out: list[dict[str, str] | None] = []
    for value in values:
        context = None
        if value:
            try:
                parsed = orjson.loads(value) if isinstance(value, str | bytes) else value
            except orjson.JSONDecodeError:
                parsed = None
            if isinstance(parsed, dict):
                context = {str(k): str(v) for k, v in parsed.items() if v is not None}
        out.append(context)
    return out


@dataclass(frozen=True)
class Selection:
    """A request's named filter and the values of its $parameters."""

    filter: str | None = None
    values: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Promotion:
    """A share of a list's slots reserved for the items of a filter (Personalize's
    promotions): they keep their own order and are placed among the others."""

    name: str
    percent: int
    filter: str
    values: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Extras:
    """What a request asks for besides the ranking: item fields and promotions."""

    metadata: tuple[str, ...] = ()
    promotions: tuple[Promotion, ...] = ()


@dataclass(frozen=True)
class Ranked:
    recommendation_id: str
    model_version: str | None
    recipe: str
    items: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


class Recommender:
    def __init__(
        self,
        log_store: EventLog,
        catalog: SQLCatalog,
        state: OnlineState,
        exploration: Exploration,
        replay_events: int,
        data_keys: DataKeys | None = None,
        context_weight: float = 1.0,
        catch_up_seconds: float = 0.05,
        models: ModelStore | None = None,
        clock: Clock | None = None,
        ignore_event_types: Sequence[str] = ("impression",),
    ) -> None:
        self.ignore_event_types = frozenset(ignore_event_types)
        self._ignored = pa.array(sorted(self.ignore_event_types), pa.string())
        self.clock = clock or SystemClock()
        self.data_keys = data_keys
        self.models = models  # None: a model's catalog path is its local folder
        self.catch_up_seconds = catch_up_seconds
        self.context_weight = context_weight
        self.log_store = log_store
        self.catalog = catalog
        self.state = state
        self.exploration = exploration
        self.scorer = Scorer(None, state, exploration, context_weight)
        self.model_version: str | None = None
        self._cursor = 0
        self._catalog_seq = 0
        self._tail_lock = threading.Lock()
        self._local: set[int] = set()  # seqs appended here, not yet passed by the tail
        self._local_lock = threading.Lock()
        self._catalog_lock = threading.Lock()
        self._model_lock = threading.Lock()  # one load at a time (poller or a waiting caller)
        self.filters = FilterBook(catalog)
        # Told (path, seconds) per batch applied: how long after its acknowledgement the
        # batch's oldest event reached the online state ("own" requests, the "tail").
        self.on_fresh: Callable[[str, float], None] | None = None
        # Told when an answer had to go out before this process caught up with the log.
        self.on_behind: Callable[[], None] | None = None
        self._item_fields: list[dict[str, Any] | None] = []  # per item index, for filters
        self._columns: tuple[tuple[int, int], CatalogColumns] | None = None
        self._replay(replay_events)
        self.refresh_catalog()
        self.refresh_model()

    # -- keeping fresh -------------------------------------------------------------------
    def _replay(self, last: int) -> None:
        """Rebuild the online state from the newest events of the log."""
        self._cursor = self.log_store.last_seq()
        if last <= 0 or self._cursor == 0:
            return
        table = self.log_store.read_tail(last, ONLINE_COLUMNS)
        if table.num_rows:
            # The cursor is where the replay ended: what others append meanwhile is the tail's.
            self._cursor = int(table.column("seq")[-1].as_py())
            self._apply_table(table)
        log.info("online state rebuilt from %d events", table.num_rows)

    def _apply_table(self, table: pa.Table) -> None:
        if self.ignore_event_types and table.num_rows:  # what was shown is not a read
            shown = pc.is_in(table.column("event_type"), value_set=self._ignored)
            table = table.filter(pc.invert(pc.fill_null(shown, False)))
        if table.num_rows <= 2000:  # a request's worth of events: the per-event path
            cols = table.to_pydict()
            self._observe(
                cols["user_id"],
                cols["session_id"],
                cols["item_id"],
                cols["timestamp"],
                cols["event_type"],
                cols.get("context"),
            )
            return
        contexts = (
            parse_contexts(table.column("context").to_pylist())
            if "context" in table.column_names
            else None
        )
        load_bulk(
            self.state,
            reader_column(table).to_numpy(zero_copy_only=False),
            table.column("item_id").to_numpy(zero_copy_only=False),
            table.column("timestamp").to_numpy(zero_copy_only=False),
            table.column("event_type").to_numpy(zero_copy_only=False),
            contexts,
        )
        self._merge_logins(table)  # after loading, so the anonymous reads are there to move

    def _merge_logins(self, table: pa.Table) -> None:
        """A reader who logs in keeps what they read anonymously in that session."""
        known = table.filter(pc.is_valid(table.column("user_id")))
        if known.num_rows == 0:
            return
        pairs = known.group_by(["user_id", "session_id"]).aggregate([])
        for user, session in zip(
            pairs.column("user_id").to_pylist(), pairs.column("session_id").to_pylist(), strict=True
        ):
            if f"s:{session}" in self.state.readers:
                self.state.merge_reader(f"s:{session}", f"u:{user}")

    def claim(self, seqs: list[int]) -> None:
        """Called by the log just before a group of appends becomes visible: the requests
        that made them apply them themselves, so the tail must skip these seqs."""
        with self._local_lock:
            self._local.update(seqs)

    def apply_appended(self, records: list[dict[str, Any]]) -> None:
        """Apply events this process just appended, before the HTTP response (read-your-
        writes). Concurrent requests may apply in any order: counts commute, and each
        reader's history is ordered by arrival."""
        if self.ignore_event_types:
            records = [r for r in records if r["event_type"] not in self.ignore_event_types]
        self._observe(
            [r["user_id"] for r in records],
            [r["session_id"] for r in records],
            [r["item_id"] for r in records],
            [r["timestamp"] for r in records],
            [r["event_type"] for r in records],
            [r.get("context") for r in records],
        )
        if self.on_fresh is not None and records:
            self.on_fresh("own", self.clock.now() - min(r["received_at"] for r in records))

    def _observe(
        self,
        users: list[str | None],
        sessions: list[str],
        items: list[str],
        timestamps: list[float],
        event_types: list[str],
        contexts: list[Any] | None = None,
    ) -> None:
        readers = [reader_key(u, s) for u, s in zip(users, sessions, strict=True)]
        merges = {(f"s:{s}", f"u:{u}") for u, s in zip(users, sessions, strict=True) if u}
        parsed = parse_contexts(contexts) if contexts is not None else None
        self.state.observe(readers, items, timestamps, merges, event_types, parsed)

    def catch_up(self, limit: int = 10_000, wait: float | None = None) -> int:
        """Apply events appended by other processes (imports, other servers); returns how
        many log rows it moved past, 0 when caught up, -1 when another thread held the tail
        for longer than ``wait`` seconds (None: as long as it takes). Seqs claimed by this
        process's own requests are skipped, so every event is applied exactly once; the
        cursor moves only with the events applied, so whoever sees it sees them."""
        if not self._tail_lock.acquire(timeout=-1 if wait is None else max(wait, 0.0)):
            return -1
        with _held(self._tail_lock):
            last = self.log_store.last_seq()
            if last <= self._cursor:
                return 0
            span = range(self._cursor + 1, min(last, self._cursor + limit) + 1)
            with self._local_lock:
                if all(s in self._local for s in span):  # only our own: nothing to read
                    self._local.difference_update(span)
                    self._cursor = span[-1]
                    return len(span)
            table = self.log_store.read(self._cursor, limit, (*ONLINE_COLUMNS, "received_at"))
            if table.num_rows == 0:
                return 0
            seqs = table.column("seq").to_pylist()
            with self._local_lock:
                fresh = [i for i, s in enumerate(seqs) if s not in self._local]
                # Every seq passed, read or not: an erased one leaves a gap in the log.
                self._local.difference_update(range(self._cursor + 1, seqs[-1] + 1))
            if fresh:
                applied = table.take(fresh)
                self._apply_table(applied.select(list(ONLINE_COLUMNS)))
            self._cursor = seqs[-1]
        if fresh and self.on_fresh is not None:
            oldest = pc.min(applied.column("received_at")).as_py()
            self.on_fresh("tail", max(0.0, self.clock.now() - oldest))
        return len(seqs)

    def current(self) -> None:
        """Read-your-writes across processes: before an answer, apply what other processes
        (another replica, an import) appended up to the log's head now, waiting at most
        ``catch_up_seconds``; past the bound the answer goes out and ``on_behind`` is told.
        One look at the log's head when this process is current. A log that cannot be
        reached (its Redis restarting) does not stop answers: they come from what this
        process already knows, counted as behind."""
        if self.catch_up_seconds <= 0:
            return
        try:
            if self._caught_up_with_head():
                return
        except StoreUnavailable:
            log.warning("event log unreachable: answering from the online state as it is")
        if self.on_behind is not None:
            self.on_behind()

    def _caught_up_with_head(self) -> bool:
        """Catch up with the log's head within the bound; False when the bound passed."""
        head = self.log_store.last_seq()
        deadline = time.monotonic() + self.catch_up_seconds
        while self._cursor < head:
            moved = self.catch_up(wait=deadline - time.monotonic())
            if moved < 0:
                return False  # the bound passed (waiting for the refresher's pass, or reading)
            if moved == 0:
                return True  # the head moved back (an erasure leaves a gap) or others caught up
        return True

    def forget(self, readers: list[str]) -> int:
        """Drop readers' histories (an erasure); how many were there. Under the tail's
        lock, so a batch read from the log before the erasure deleted it cannot bring
        them back afterwards."""
        with self._tail_lock:
            return self.state.forget(readers)

    def lag(self, last_seq: int) -> int:
        """Log events not yet in the online state (other processes' appends)."""
        with self._local_lock:
            own = sum(1 for s in self._local if s > self._cursor)
        return max(0, last_seq - self._cursor - own)

    def refresh_catalog(self) -> int:
        """Pick up item changes (new posts, edits, deletions) from the catalog."""
        with self._catalog_lock:  # request threads and the refresher: one at a time, in order
            return self._refresh_catalog()

    def _refresh_catalog(self) -> int:
        changed = self.catalog.items_changed_since(self._catalog_seq)
        self._refresh_items(changed)
        # Words last: a rebuild of the content neighbours may take a moment, and answers
        # go on with the old ones meanwhile (never under the state's lock).
        self.state.content.set_texts(
            [self.state.item_index[i["item_id"]] for i in changed],
            ["" if i["deleted"] else item_text(i) for i in changed],
        )
        return len(changed)

    def _refresh_items(self, changed: list[dict[str, Any]]) -> None:
        # Under one hold of the lock: the caches that follow the catalog (trending, the
        # section matrix) see one change, not one per item.
        with self.state.lock:
            for item in changed:
                self.state.set_item(
                    item["item_id"],
                    item["published_at"],
                    item["categories"],
                    item["deleted"],
                    item["expires_at"],
                )
                idx = self.state.item_index[item["item_id"]]
                if idx >= len(self._item_fields):
                    self._item_fields.extend([None] * (idx + 1 - len(self._item_fields)))
                self._item_fields[idx] = item_fields(item)
                self._catalog_seq = max(self._catalog_seq, int(item["change_seq"]))

    def refresh_model(self) -> bool:
        """Load the live model version if it changed; True when a swap happened."""
        with self._model_lock:
            live = self.catalog.live_model()
            if live is None or live["version"] == self.model_version:
                return False
            location = live["path"]
            folder = self.models.fetch(location) if self.models else Path(location)
            artifact = Artifact.load(folder, self.data_keys)
            scorer = Scorer(artifact, self.state, self.exploration, self.context_weight)
            self.scorer, self.model_version = scorer, live["version"]
            log.info("now serving model %s (%s)", live["version"], artifact.recipe)
            del scorer, artifact
        memory.trim()  # the old model's arrays, freed now, go back to the OS
        return True

    def run_background(self, stop: threading.Event, interval: float, model_poll: float) -> None:
        """Tail the log, the catalog and the registry until ``stop`` is set."""
        since_model = 0.0
        failures = FailureStreak(log, "background refresh")
        while not stop.wait(interval):
            try:
                while self.catch_up() > 0:
                    pass
                self.state.coreads.compact()  # off the request path
                self.state.content.maintain()
                self.scorer.settle()  # the shared terms exact once the stream pauses
                self.refresh_catalog()
                since_model += interval
                if since_model >= model_poll:
                    since_model = 0.0
                    self.refresh_model()
                failures.worked()
            except Exception:  # noqa: BLE001 - a failed pass is logged and retried
                failures.failed()

    # -- answering -----------------------------------------------------------------------
    def history(self, user_id: str, limit: int) -> list[dict[str, Any]]:
        """The reader's recent reads as the engine sees them now, newest first."""
        self.current()
        with self.state.lock:
            items, times = self.state.history(reader_key(user_id, ""))
            ids = self.state.item_ids
            return [
                {"item_id": ids[i], "timestamp": t}
                for i, t in zip(items[:limit].tolist(), times[:limit].tolist(), strict=True)
            ]

    def _ranked(
        self,
        recipe: str,
        idx: np.ndarray,
        values: np.ndarray,
        reasons: list[str],
        extras: Extras | None = None,
        promoted: dict[int, str] | None = None,
        rec_id: str | None = None,
    ) -> Ranked:
        ids = self.state.item_ids
        items: list[dict[str, Any]] = []
        for i, reason in zip(idx.tolist(), reasons, strict=True):
            item: dict[str, Any] = {"item_id": ids[i], "score": round(float(values[i]), 6)}
            if promoted and i in promoted:
                item["promotion_name"] = promoted[i]
                reason = f"promoted: {promoted[i]}"
            item["reason"] = reason
            if extras is not None and extras.metadata:
                fields = self._item_fields[i] if i < len(self._item_fields) else None
                item["metadata"] = {c: (fields or {}).get(c) for c in extras.metadata}
            items.append(item)
        if tracing.enabled():  # on the request's span
            tracing.annotate(
                {
                    "clickrec.recipe": recipe,
                    "clickrec.model_version": self.model_version or "",
                    "clickrec.num_results": len(items),
                }
            )
        return Ranked(rec_id or uuid.uuid4().hex, self.model_version, recipe, items)

    @contextmanager
    def _read_state(self, reader: str | None = None) -> Iterator[np.ndarray]:
        """Hold the online state's lock for one answer and yield the reader's history. Its
        ``state.read`` span is the wait for the lock (event applies take it too) and the
        history read."""
        with tracing.span("state.read") as span:
            self.state.lock.acquire()
            history = self.state.history(reader)[0] if reader is not None else _NO_HISTORY
            span.set_attribute("clickrec.history_length", len(history))
        try:
            yield history
        finally:
            self.state.lock.release()

    def _explainer(self) -> Explainer:
        return Explainer(self.state.item_ids, self._item_fields)

    def _promote(
        self,
        values: np.ndarray,
        n: int,
        mask: np.ndarray | None,
        promotions: tuple[Promotion, ...],
        reader: str | None,
        rec_id: str,
    ) -> tuple[np.ndarray, dict[int, str]]:
        """The n items of a list with its promotions' shares: each promotion's best items
        under its filter (kept in order), placed at random slots among the others."""
        if not promotions:
            return top_n(values, n, mask), {}
        taken = np.zeros(len(values), dtype=bool)
        promoted: list[tuple[int, str]] = []
        for p in promotions:
            k = n * p.percent // 100
            if k <= 0:
                continue
            allowed = self._filter_mask(Selection(p.filter, p.values), reader, None) & ~taken
            if mask is not None:
                allowed &= mask
            top = top_n(values, k, allowed)
            taken[top] = True
            promoted.extend((int(i), p.name) for i in top)
        rest = top_n(values, n - len(promoted), ~taken if mask is None else mask & ~taken)
        total = len(rest) + len(promoted)
        rng = np.random.default_rng(int(rec_id[:12], 16))  # the same id, the same layout
        slots = np.sort(rng.choice(total, size=len(promoted), replace=False))
        out = np.empty(total, dtype=np.int64)
        is_promo = np.zeros(total, dtype=bool)
        is_promo[slots] = True
        out[is_promo] = [i for i, _ in promoted]
        out[~is_promo] = rest
        return out, dict(promoted)

    def _mask(
        self,
        category: str | None,
        selection: Selection | None = None,
        reader: str | None = None,
        current_item: int | None = None,
    ) -> np.ndarray | None:
        """Items a request may show (None: all): its category and its filter."""
        mask = None if category is None else self.state.category_mask(category)
        if selection is None or selection.filter is None:
            return mask
        allowed = self._filter_mask(selection, reader, current_item)
        return allowed if mask is None else mask & allowed

    def _filter_mask(
        self, selection: Selection, reader: str | None, current_item: int | None
    ) -> np.ndarray:
        assert selection.filter is not None
        f = self.filters.get(selection.filter)
        columns = self._catalog_columns()
        user: dict[str, Any] = {}
        if uses_user(f) and reader is not None and reader.startswith("u:"):
            profile = self.catalog.get_user(reader[2:])
            user = (profile or {}).get("attributes", {})
        history = empty_history()
        if uses_interactions(f) and reader is not None:
            history = self.state.interactions(reader)
        current = None
        if current_item is not None and current_item < len(self._item_fields):
            current = self._item_fields[current_item] or {
                "item_id": self.state.item_ids[current_item]
            }
        ctx = Context(
            interactions=History(*history),
            user=user,
            current_item=current,
            values=selection.values,
        )
        mask = f.mask(columns, ctx)
        return mask[: self.state.n_items]

    def _catalog_columns(self) -> CatalogColumns:
        key = (self.state.catalog_version, self.state.n_items)
        cached = self._columns
        if cached is None or cached[0] != key:
            columns = CatalogColumns(self._item_fields, self.state.item_ids, key[1])
            self._columns = cached = (key, columns)
        return cached[1]

    def recommend(
        self,
        user_id: str | None,
        session_id: str | None,
        n: int,
        category: str | None = None,
        selection: Selection | None = None,
        extras: Extras | None = None,
        context: dict[str, str] | None = None,
    ) -> Ranked:
        if not user_id and not session_id:
            raise InvalidInput("give user_id or session_id")
        self.current()
        reader = reader_key(user_id, session_id or "")
        scorer = self.scorer
        rec_id = uuid.uuid4().hex
        promotions = extras.promotions if extras else ()
        with self._read_state(reader) as history:
            with tracing.span("score"):
                scores = scorer.for_reader(reader, history, context)
            with tracing.span("filter", _filter_attributes(selection, promotions)):
                mask = self._mask(category, selection, reader)
                idx, promoted = self._promote(scores.values, n, mask, promotions, reader, rec_id)
            with tracing.span("explain"):
                anchors = scorer.anchors(scores.history, idx)
                reasons = self._explainer().scored(idx, scores.parts, anchors, category)
            return self._ranked(
                scores.recipe, idx, scores.values, reasons, extras, promoted, rec_id
            )

    def trending(
        self,
        n: int,
        category: str | None = None,
        selection: Selection | None = None,
        extras: Extras | None = None,
        context: dict[str, str] | None = None,
    ) -> Ranked:
        self.current()
        scorer = self.scorer
        rec_id = uuid.uuid4().hex
        promotions = extras.promotions if extras else ()
        with self._read_state():
            with tracing.span("score"):
                trending, bonus = scorer.shared()
                trending = scorer.contextual(trending, context)
                values = np.where(np.isfinite(bonus) & (trending > 0), trending, -np.inf)
            with tracing.span("filter", _filter_attributes(selection, promotions)):
                mask = self._mask(category, selection)
                idx, promoted = self._promote(values, n, mask, promotions, None, rec_id)
            with tracing.span("explain"):
                explainer = self._explainer()
                reasons = [
                    explainer.trending(i, category) if values[i] > 2 * NEWEST_TIEBREAK else "new"
                    for i in idx.tolist()
                ]
            return self._ranked(TrendingNow.name, idx, values, reasons, extras, promoted, rec_id)

    def similar(
        self,
        item_id: str,
        n: int,
        category: str | None = None,
        selection: Selection | None = None,
        user_id: str | None = None,
        extras: Extras | None = None,
    ) -> Ranked:
        self.current()
        scorer = self.scorer
        with self._read_state():
            item = self.state.item_index.get(item_id)
            if item is None:
                raise NotFound(f"unknown item: {item_id}")
            with tracing.span("score"):
                values = scorer.similar(item)
            reader = reader_key(user_id, "") if user_id else None
            with tracing.span("filter", _filter_attributes(selection, ())):
                idx = top_n(values, n, self._mask(category, selection, reader, item))
            with tracing.span("explain"):
                by_model = np.isin(idx, scorer.neighbours(item))
                reasons = self._explainer().similar(idx, item, by_model)
            return self._ranked(SimilarItems.name, idx, values, reasons, extras)

    def rank(
        self,
        user_id: str | None,
        session_id: str | None,
        item_ids: list[str],
        selection: Selection | None = None,
        extras: Extras | None = None,
        context: dict[str, str] | None = None,
    ) -> Ranked:
        """Reorder the given items for one reader, best first, each with its score; items
        the filter excludes are left out, items already read come last (score -1)."""
        if not user_id and not session_id:
            raise InvalidInput("give user_id or session_id")
        self.current()
        scorer = self.scorer
        reader = reader_key(user_id, session_id or "")
        with self._read_state(reader) as history:
            unknown = [i for i in item_ids if i not in self.state.item_index]
            if unknown:
                raise InvalidInput(f"unknown item_ids: {', '.join(unknown[:10])}")
            idx = np.array([self.state.item_index[i] for i in item_ids], dtype=np.int64)
            with tracing.span("filter", _filter_attributes(selection, ())):
                allowed = self._mask(None, selection, reader)
                if allowed is not None:
                    idx = idx[allowed[idx]]
            with tracing.span("score"):
                scores = scorer.for_reader(reader, history, context)
                shown = np.nan_to_num(scores.values, neginf=-1.0)
                ranked = idx[np.argsort(-shown[idx], kind="stable")]
            with tracing.span("explain"):
                anchors = scorer.anchors(scores.history, ranked)
                reasons = self._explainer().scored(ranked, scores.parts, anchors, None)
            read = ~np.isfinite(scores.values[ranked])
            reasons = ["already read" if r else why for r, why in zip(read, reasons, strict=True)]
            return self._ranked(scores.recipe, ranked, shown, reasons, extras)


_NO_HISTORY = np.zeros(0, dtype=np.int64)


@contextmanager
def _held(lock: threading.Lock) -> Iterator[None]:
    """Release a lock acquired already (with a timeout) when the block ends."""
    try:
        yield
    finally:
        lock.release()


def _filter_attributes(
    selection: Selection | None, promotions: tuple[Promotion, ...]
) -> dict[str, Any] | None:
    """The ``filter`` span's attributes: the filter's name and the promotions' count."""
    if not tracing.enabled():
        return None
    name = selection.filter if selection is not None else None
    return {"clickrec.filter": name or "", "clickrec.promotions": len(promotions)}
