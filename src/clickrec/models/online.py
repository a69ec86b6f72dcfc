"""Online state: live trending counts and each reader's recent history, updated per event.

Pure and in-process (no I/O): serving feeds it events as they are acknowledged, and the
evaluation feeds it the same way, so offline scores measure what readers would get.
Time is event time: decay is measured from the newest event seen, so replaying old logs
behaves exactly like live traffic.
"""

from __future__ import annotations

import heapq
import math
import threading
from array import array
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from clickrec.models.base import Interactions
from clickrec.models.content import ContentIndex
from clickrec.models.coreads import FreshCoreads

_REANCHOR_HALVINGS = 400.0  # re-anchor before 2**x overflows float64 (max ~2**1023)
# Trending is also kept at these half-lives (hours), so a model can choose the decay that
# fits its site (``RecipeParams.trending_half_life_hours``) from the same online state.
TRACKED_HALF_LIVES = (1.0, 3.0, 12.0, 24.0)


class ReaderHistory:
    """A reader's newest reads, compact: item indices, event times and event type codes
    (see ``OnlineState.type_code``), oldest first."""

    __slots__ = ("items", "times", "types")

    def __init__(self) -> None:
        self.items = array("i")
        self.times = array("d")
        self.types = array("H")

    @property
    def newest(self) -> float:
        """Time of the newest read (-inf for none)."""
        return self.times[-1] if self.times else -math.inf

    def add(self, item: int, t: float, limit: int, kind: int = 0) -> None:
        self.items.append(item)
        self.times.append(t)
        self.types.append(kind)
        if len(self.items) > 2 * limit:
            self.trim(limit)

    def trim(self, limit: int) -> None:
        del self.items[:-limit]
        del self.times[:-limit]
        del self.types[:-limit]

    def extend(self, other: ReaderHistory, limit: int) -> None:
        rows = sorted(
            zip(
                list(self.times) + list(other.times),
                list(self.items) + list(other.items),
                list(self.types) + list(other.types),
                strict=True,
            )
        )[-limit:]
        self.times = array("d", [t for t, _, _ in rows])
        self.items = array("i", [i for _, i, _ in rows])
        self.types = array("H", [k for _, _, k in rows])


class OnlineState:
    """Trending counts, reader histories and item facts, indexed by a growing item index."""

    def __init__(
        self,
        trending_half_life_hours: float = 6.0,
        history_length: int = 50,
        seen_length: int = 500,
        max_context_values: int = 64,
        session_idle_minutes: float = 30.0,
        max_readers: int = 0,
        coread_half_life_hours: float = 72.0,
    ) -> None:
        self.half_life_s = trending_half_life_hours * 3600.0
        # Read-next pairs of the live stream, for models that use them between trainings.
        self.coreads = FreshCoreads(coread_half_life_hours)
        # Posts that share words, for models that use them (``models.content``).
        self.content = ContentIndex()
        # An anonymous session idle this long (event time) is over: its history is dropped,
        # so a site's stream of one-visit readers cannot grow memory without end. Known
        # users stay. 0 keeps every session.
        self.session_idle_s = session_idle_minutes * 60.0 if session_idle_minutes > 0 else math.inf
        # A min-heap of (an event time, "s:…"), one entry per anonymous session, pushed
        # back with its newest time when the session turns out to be still going.
        self._session_times: list[tuple[float, str]] = []
        # Past this many readers (users and sessions), the least recently active tenth leave
        # the online state (the log keeps their events), so a site's stream of new signed-in
        # readers cannot grow memory without end either; 0: no limit.
        self.max_readers = max_readers
        self.readers_evicted = 0
        self.history_length = history_length  # newest reads that shape recommendations
        self.seen_length = max(seen_length, history_length)  # reads never shown again
        self.lock = threading.RLock()
        self.item_index: dict[str, int] = {}
        self.item_ids: list[str] = []
        cap = 1024
        self._trend = np.zeros(cap)  # sum of 2**((t - anchor) / half_life) per item
        self._other_trends = {  # the same at the other tracked half-lives (seconds)
            hours * 3600.0: np.zeros(cap)
            for hours in TRACKED_HALF_LIVES
            if hours * 3600.0 != self.half_life_s
        }
        self._shortest_s = min([self.half_life_s, *self._other_trends])
        self._count = np.zeros(cap, dtype=np.int64)
        self.published_at = np.full(cap, np.nan)
        self.expires_at = np.full(cap, np.inf)
        self.deleted = np.zeros(cap, dtype=bool)
        self.categories: dict[str, np.ndarray] = {}
        self.item_category: dict[int, list[str]] = {}
        self._category_matrix: tuple[int, sp.csr_matrix] | None = None
        self.anchor: float | None = None
        self.newest_event_time = -math.inf
        self.trend_mass = 0.0  # sum of every event's trending weight, in anchor units
        self.readers: dict[str, ReaderHistory] = {}
        self.event_types: list[str] = [""]  # code -> name; 0 is "not told"
        self._type_codes: dict[str, int] = {"": 0}
        # Trending per context value: decayed counts of the events whose context carried
        # (key, value), one row per pair, for the first ``max_context_values`` pairs seen
        # (a high-cardinality key such as a full referrer URL cannot grow it further).
        self.max_context_values = max_context_values
        self.context_slots: dict[tuple[str, str], int] = {}
        self._context = np.zeros((0, cap))
        self.events_seen = 0
        self.catalog_version = 0  # bumped on every catalog change, so caches see deletions

    # -- the item index ----------------------------------------------------------------
    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def index_of(self, item_id: str) -> int:
        """The item's index, adding it when new."""
        idx = self.item_index.get(item_id)
        if idx is None:
            idx = len(self.item_ids)
            self.item_index[item_id] = idx
            self.item_ids.append(item_id)
            if idx >= len(self._trend):
                self._grow(2 * len(self._trend))
        return idx

    def _grow(self, cap: int) -> None:
        def pad(a: np.ndarray, fill: float | bool) -> np.ndarray:
            out = np.full(cap, fill, dtype=a.dtype)
            out[: len(a)] = a
            return out

        self._trend = pad(self._trend, 0.0)
        self._other_trends = {h: pad(v, 0.0) for h, v in self._other_trends.items()}
        self._count = pad(self._count, 0)
        self.published_at = pad(self.published_at, np.nan)
        self.expires_at = pad(self.expires_at, np.inf)
        self.deleted = pad(self.deleted, False)
        self.categories = {k: pad(v, False) for k, v in self.categories.items()}
        grown = np.zeros((len(self._context), cap))
        grown[:, : self._context.shape[1]] = self._context
        self._context = grown

    def set_item(
        self,
        item_id: str,
        published_at: float | None,
        categories: Sequence[str],
        deleted: bool = False,
        expires_at: float | None = None,
    ) -> None:
        """Record catalog facts used to filter and to favour fresh posts."""
        with self.lock:
            idx = self.index_of(item_id)
            self.published_at[idx] = np.nan if published_at is None else published_at
            self.expires_at[idx] = np.inf if expires_at is None else expires_at
            self.deleted[idx] = deleted
            for old in self.item_category.pop(idx, []):
                self.categories[old][idx] = False
            for cat in categories:
                mask = self.categories.get(cat)
                if mask is None:
                    mask = self.categories[cat] = np.zeros(len(self._trend), dtype=bool)
                mask[idx] = True
            self.item_category[idx] = list(categories)
            self.catalog_version += 1

    def type_code(self, event_type: str) -> int:
        """A small code per event type name; past 65,535 names new ones share code 0."""
        code = self._type_codes.get(event_type)
        if code is None:
            if len(self.event_types) > 0xFFFF:
                return 0
            code = self._type_codes[event_type] = len(self.event_types)
            self.event_types.append(event_type)
        return code

    # -- events --------------------------------------------------------------------------
    def observe(
        self,
        readers: Sequence[str],
        item_ids: Sequence[str],
        timestamps: Sequence[float],
        merges: Iterable[tuple[str, str]] = (),
        event_types: Sequence[str] | None = None,
        contexts: Sequence[dict[str, str] | None] | None = None,
    ) -> None:
        """Apply acknowledged events; ``merges`` are (session reader, user reader) pairs;
        ``contexts``: each event's context map (or None), for trending per context."""
        if not item_ids:
            return
        with self.lock:
            idx = np.fromiter(
                (self.index_of(i) for i in item_ids), dtype=np.int64, count=len(item_ids)
            )
            ts = np.asarray(timestamps, dtype=np.float64)
            newest = float(ts.max())
            if self.anchor is None:
                self.anchor = newest
            if newest > self.newest_event_time:
                self.newest_event_time = newest
            weights = self._add_trending(idx, ts)
            np.add.at(self._count, idx, 1)
            if contexts is not None:
                self._observe_context(contexts, idx, weights)
            limit, histories = self.seen_length, self.readers
            codes = (
                [self.type_code(k) for k in event_types]
                if event_types is not None
                else [0] * len(item_ids)
            )
            sessions = self._session_times if self.session_idle_s < math.inf else None
            prevs: list[int] = []  # each reader's read before this one, for the co-reads
            prev_times: list[float] = []
            for reader, i, t, k in zip(readers, idx.tolist(), ts.tolist(), codes, strict=True):
                hist = histories.get(reader)
                if hist is None:
                    hist = histories[reader] = ReaderHistory()
                    if sessions is not None and reader[0] == "s":
                        heapq.heappush(sessions, (t, reader))
                    prevs.append(-1)
                    prev_times.append(-math.inf)
                else:
                    prevs.append(hist.items[-1] if hist.items else -1)
                    prev_times.append(hist.times[-1] if hist.times else -math.inf)
                hist.items.append(i)  # ReaderHistory.add, inlined: the ingest hot path
                hist.times.append(t)
                hist.types.append(k)
                if len(hist.items) > 2 * limit:
                    hist.trim(limit)
            self.events_seen += len(item_ids)
            self.coreads.add_reads(np.array(prevs), np.array(prev_times), idx, ts)
            for anon, known in merges:  # after the batch, so its anonymous reads move too
                if anon in histories:
                    self.merge_reader(anon, known)
            self.end_idle_sessions()
            self.keep_readers_bounded()

    def keep_readers_bounded(self) -> int:
        """Past ``max_readers``, drop the least recently active readers down to 90 % of it
        (by their newest event time); returns how many. Amortized: it runs once per tenth
        of the bound of new readers."""
        readers = self.readers
        if not self.max_readers or len(readers) <= self.max_readers:
            return 0
        with self.lock:
            names = list(readers)
            newest = np.fromiter(
                (h.newest for h in readers.values()),
                dtype=np.float64,
                count=len(names),
            )
            drop = len(names) - int(self.max_readers * 0.9)
            for k in np.argpartition(newest, drop - 1)[:drop].tolist():
                del readers[names[k]]
            self.readers_evicted += drop
        return drop

    def end_idle_sessions(self) -> int:
        """Drop anonymous sessions with no event in the last ``session_idle_s`` (event
        time); returns how many. Each event is looked at once, so the cost is amortized."""
        cutoff = self.newest_event_time - self.session_idle_s
        times, readers, ended = self._session_times, self.readers, 0
        with self.lock:
            while times and times[0][0] < cutoff:
                _, reader = heapq.heappop(times)
                hist = readers.get(reader)
                if hist is None:
                    continue  # merged into a user who logged in, or erased
                newest = hist.newest
                if newest < cutoff:
                    del readers[reader]
                    ended += 1
                else:  # still going: looked at again once idle that long after its newest
                    heapq.heappush(times, (newest, reader))
        return ended

    def _observe_context(
        self, contexts: Sequence[dict[str, str] | None], idx: np.ndarray, weights: np.ndarray
    ) -> None:
        rows, cols, values = [], [], []
        for j, context in enumerate(contexts):
            if not context:
                continue
            for pair in context.items():
                slot = self.context_slots.get(pair)
                if slot is None:
                    slot = self._context_slot(pair)
                    if slot is None:
                        continue
                rows.append(slot)
                cols.append(idx[j])
                values.append(weights[j])
        if rows:
            np.add.at(self._context, (np.array(rows), np.array(cols)), np.array(values))

    def _context_slot(self, pair: tuple[str, str]) -> int | None:
        if len(self.context_slots) >= self.max_context_values:
            return None
        slot = self.context_slots[pair] = len(self.context_slots)
        self._context = np.vstack([self._context, np.zeros((1, self._context.shape[1]))])
        return slot

    def context_lift(self, context: dict[str, str], prior: float = 10.0) -> np.ndarray | None:
        """How much more each item trends among events with this context than among all:
        the product over the context's known pairs of p(item | pair) / p(item), each
        smoothed toward 1 by ``prior`` events' worth of the overall shares and clipped to
        [1/8, 8]. None when no pair of the context has been seen."""
        with self.lock:
            rows = [self.context_slots[p] for p in context.items() if p in self.context_slots]
            if not rows or self.anchor is None:
                return None
            n = self.n_items
            # Counts are kept relative to the anchor; the prior is in events of weight 1
            # now, so scale them to the newest event's time first.
            now = np.exp2((self.anchor - self.newest_event_time) / self.half_life_s)
            overall = self._trend[:n] * now
            counts = self._context[rows, :n] * now
        total = overall.sum()
        if total <= 0:
            return None
        share = overall / total
        lift = np.ones(n)
        for row in counts:
            given = (row + prior * share) / (row.sum() + prior)
            lift *= np.clip(given / np.maximum(share, 1e-12), 0.125, 8.0)
        return lift

    def merge_reader(self, anon: str, known: str) -> None:
        """Give a reader who just logged in the history they made anonymously."""
        with self.lock:
            old = self.readers.pop(anon, None)
            if old is None:
                return
            hist = self.readers.get(known)
            if hist is None:
                self.readers[known] = old
            else:
                hist.extend(old, self.seen_length)

    def forget(self, readers: Iterable[str]) -> int:
        """Drop these readers' histories (erasure); returns how many there were. The
        trending counts their reads added stay: they are sums over every reader."""
        with self.lock:
            return sum(self.readers.pop(reader, None) is not None for reader in readers)

    def _add_trending(self, idx: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Add events to the decayed counts at every tracked half-life (under the lock,
        ``newest_event_time`` already moved); returns their weights at the main one."""
        assert self.anchor is not None
        if (self.newest_event_time - self.anchor) / self._shortest_s > _REANCHOR_HALVINGS:
            self._reanchor(self.newest_event_time)
        weights = np.exp2((ts - self.anchor) / self.half_life_s)
        np.add.at(self._trend, idx, weights)
        self.trend_mass += float(weights.sum())
        for half_life, counts in self._other_trends.items():
            np.add.at(counts, idx, np.exp2((ts - self.anchor) / half_life))
        return weights

    def _reanchor(self, new_anchor: float) -> None:
        assert self.anchor is not None
        scale = np.exp2((self.anchor - new_anchor) / self.half_life_s)
        self._trend *= scale
        self._context *= scale
        self.trend_mass *= scale
        for half_life, counts in self._other_trends.items():
            counts *= np.exp2((self.anchor - new_anchor) / half_life)
        self.anchor = new_anchor

    # -- reads ---------------------------------------------------------------------------
    def trend_mass_mark(self) -> tuple[float, float | None]:
        """(trending mass, anchor) now: what ``trend_added_since`` compares against."""
        with self.lock:
            return self.trend_mass, self.anchor

    def trend_added_since(self, mark: tuple[float, float | None]) -> float:
        """The share of today's trending mass that events since ``mark`` brought (0 to 1):
        one event after a long quiet spell brings nearly all of it, one more in a busy
        hour almost none."""
        mass, anchor = mark
        with self.lock:
            if self.trend_mass <= 0:
                return 0.0
            if anchor is None or self.anchor is None:
                return 1.0
            then = mass * np.exp2((anchor - self.anchor) / self.half_life_s)
            return max(0.0, 1.0 - then / self.trend_mass)

    def trending(self, half_life_hours: float | None = None) -> np.ndarray:
        """Decayed counts per item index, scaled so the top item scores 1 (a copy); at
        ``half_life_hours`` when that is a tracked one, else at the state's own."""
        with self.lock:
            counts = self._trend
            if half_life_hours is not None:
                counts = self._other_trends.get(half_life_hours * 3600.0, self._trend)
            t = counts[: self.n_items].copy()
        top = t.max() if len(t) else 0.0
        return t / top if top > 0 else t

    def newness(self) -> np.ndarray:
        """Publication time scaled to [1, 2] (newest is 2; unknown is 0), per item."""
        pub = self.published_at[: self.n_items]
        known = ~np.isnan(pub)
        out = np.zeros(self.n_items)
        if known.any():
            low, high = pub[known].min(), pub[known].max()
            out[known] = 1.0 + ((pub[known] - low) / (high - low) if high > low else 1.0)
        return out

    def counts(self) -> np.ndarray:
        return self._count[: self.n_items]

    def history(self, reader: str) -> tuple[np.ndarray, np.ndarray]:
        """The reader's newest ``history_length`` reads, newest first: (items, event times)."""
        items, times = self._reads(reader)
        return items[: self.history_length], times[: self.history_length]

    def seen(self, reader: str) -> np.ndarray:
        """Item indices of the reader's newest ``seen_length`` reads (never shown again)."""
        return self._reads(reader)[0][: self.seen_length]

    def interactions(self, reader: str) -> tuple[np.ndarray, np.ndarray]:
        """The reader's newest ``seen_length`` reads, newest first: (items, event type names)."""
        with self.lock:
            hist = self.readers.get(reader)
            if hist is None:
                return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=str)
            items = np.frombuffer(hist.items, dtype=np.int32)[::-1].astype(np.int64)
            codes = np.frombuffer(hist.types, dtype=np.uint16)[::-1]
            names = np.array(self.event_types, dtype=str)
        return items[: self.seen_length], names[codes[: self.seen_length]]

    def _reads(self, reader: str) -> tuple[np.ndarray, np.ndarray]:
        with self.lock:
            hist = self.readers.get(reader)
            if hist is None:
                return np.zeros(0, dtype=np.int64), np.zeros(0)
            items = np.frombuffer(hist.items, dtype=np.int32)[::-1].astype(np.int64)
            times = np.frombuffer(hist.times, dtype=np.float64)[::-1].copy()
        return items, times

    def available(self, now: float) -> np.ndarray:
        """Mask of items that may be shown: not deleted, not expired, already published."""
        n = self.n_items
        if not np.isfinite(now):  # no event yet, so no time to judge publication by
            return ~self.deleted[:n]
        pub = self.published_at[:n]
        return ~self.deleted[:n] & (self.expires_at[:n] > now) & ~(pub > now + 60.0)

    def category_matrix(self) -> sp.csr_matrix:
        """Items × categories, each item's row summing to 1 over its categories (empty rows
        for items with none); rebuilt once per catalog change, shared by every reader. Items
        first seen in events since have no row (they have no category either)."""
        cached = self._category_matrix
        if cached is not None and cached[0] == self.catalog_version:
            return cached[1]
        with self.lock:  # a snapshot; the build itself must not hold up ingest
            version, n = self.catalog_version, self.n_items
            names = sorted(self.categories)
            listed = list(self.item_category.items())
        code = {name: c for c, name in enumerate(names)}
        rows = np.fromiter((i for i, cats in listed for _ in cats), dtype=np.int64)
        cols = np.fromiter((code[c] for _, cats in listed for c in cats), dtype=np.int64)
        per_item = np.bincount(rows, minlength=n)
        matrix = sp.csr_matrix(
            (1.0 / per_item[rows].astype(np.float64), (rows, cols)), shape=(n, len(names))
        )
        self._category_matrix = (version, matrix)
        return matrix

    def category_mask(self, category: str) -> np.ndarray:
        mask = self.categories.get(category)
        if mask is None:
            return np.zeros(self.n_items, dtype=bool)
        return mask[: self.n_items]


def load_bulk(
    state: OnlineState,
    readers: np.ndarray,
    item_ids: np.ndarray,
    timestamps: np.ndarray,
    event_types: np.ndarray | None = None,
    contexts: Sequence[dict[str, str] | None] | None = None,
) -> None:
    """Apply many events at once (start-up replay, evaluation): same result as ``observe``.

    Trending is vectorized; histories are built per reader from the newest events only.
    """
    if len(item_ids) == 0:
        return
    order = np.argsort(timestamps, kind="stable")
    readers, item_ids, ts = readers[order], item_ids[order], timestamps[order].astype(float)
    kinds = np.zeros(len(ts), dtype=np.uint16)
    if event_types is not None:
        names, inverse = np.unique(event_types[order].astype(str), return_inverse=True)
        kinds = np.array([state.type_code(k) for k in names.tolist()], dtype=np.uint16)[inverse]
    with state.lock:
        uniq, inverse = np.unique(item_ids.astype(str), return_inverse=True)
        live = np.fromiter((state.index_of(str(i)) for i in uniq), dtype=np.int64, count=len(uniq))
        idx = live[inverse]
        newest = float(ts[-1])
        if state.anchor is None:
            state.anchor = newest
        state.newest_event_time = max(state.newest_event_time, newest)
        weights = state._add_trending(idx, ts)
        np.add.at(state._count, idx, 1)
        if contexts is not None:
            state._observe_context([contexts[j] for j in order.tolist()], idx, weights)
        r_uniq, r_inv = np.unique(readers.astype(str), return_inverse=True)
        by_reader = np.lexsort((np.arange(len(ts)), r_inv))
        bounds = np.r_[0, np.flatnonzero(np.diff(r_inv[by_reader])) + 1, len(ts)]
        _add_bulk_coreads(state, r_uniq, r_inv[by_reader], idx[by_reader], ts[by_reader], bounds)
        limit = state.seen_length
        for k, reader in enumerate(r_uniq.tolist()):
            rows = by_reader[max(bounds[k], bounds[k + 1] - limit) : bounds[k + 1]]
            hist = state.readers.get(reader)
            if hist is None:
                hist = state.readers[reader] = ReaderHistory()
                hist.items = array("i", idx[rows].astype(np.int32).tobytes())
                hist.times = array("d", ts[rows].tobytes())
                hist.types = array("H", kinds[rows].tobytes())
                continue
            for i, t, k in zip(
                idx[rows].tolist(), ts[rows].tolist(), kinds[rows].tolist(), strict=True
            ):
                hist.add(i, t, limit, k)
        if state.session_idle_s < math.inf:
            last = ts[by_reader[bounds[1:] - 1]]  # each reader's newest event
            anonymous = np.char.startswith(r_uniq.astype(str), "s:")
            for k in np.flatnonzero(anonymous)[np.argsort(last[anonymous], kind="stable")]:
                heapq.heappush(state._session_times, (float(last[k]), str(r_uniq[k])))
        state.events_seen += len(ts)  # idle sessions end at the next observe, after logins merge
        state.keep_readers_bounded()


def state_from(
    data: Interactions,
    item_facts: Mapping[str, tuple[float | None, list[str]]],
    trending_half_life_hours: float,
    history_length: int,
    seen_length: int = 500,
    contexts: Sequence[dict[str, str] | None] | None = None,
) -> OnlineState:
    """An online state fed with ``data`` (and each event's ``contexts``), its item index
    equal to the data's index; ``item_facts``: (published_at, categories) per item id."""
    state = OnlineState(trending_half_life_hours, history_length, seen_length)
    for item_id in data.item_ids:
        state.index_of(str(item_id))
    for item_id, (published_at, categories) in item_facts.items():
        state.set_item(item_id, published_at, categories)
    readers, items = data.reader_ids[data.reader], data.item_ids[data.item]
    load_bulk(state, readers, items, data.timestamp, contexts=contexts)
    return state


def _add_bulk_coreads(
    state: OnlineState,
    names: np.ndarray,
    readers: np.ndarray,
    items: np.ndarray,
    times: np.ndarray,
    bounds: np.ndarray,
) -> None:
    """The read-next pairs of events sorted by (reader, time) (``bounds``: where each
    reader's run starts), each reader's first read paired with their history before."""
    prev = np.r_[-1, items[:-1]].astype(np.int64)
    prev_t = np.r_[-np.inf, times[:-1]]
    starts = bounds[:-1]
    prev[starts], prev_t[starts] = -1, -np.inf
    for start in starts.tolist() if state.readers else ():  # a reader's read before the batch
        hist = state.readers.get(str(names[readers[start]]))
        if hist is not None and hist.items:
            prev[start], prev_t[start] = hist.items[-1], hist.times[-1]
    state.coreads.add_reads(prev, prev_t, items, times)
