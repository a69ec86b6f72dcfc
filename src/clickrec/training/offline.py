"""Offline evaluation of interaction files, through the code the engine serves with.

Four protocols, all scoring readers with ``models.scoring.Scorer`` over an
``models.online.OnlineState``, exactly as serving does:

- ``temporal``: the training pipeline's own holdout (``training.evaluate.evaluate_recipe``):
  fit before a time cut, rank the whole catalog for readers active on both sides, score
  the items each reader touched for the first time after the cut.
- ``session_next_click``: the session-based task (session-rec, YOOCHOOSE): replay test
  sessions click by click into the live state and ask, before every click after the
  first, for the reader's top 20; score the rank of the click that follows.
- ``replay``: ``evaluation.replay`` over a global time cut: every later event is fed to
  each model as it would arrive live; before sampled first touches of an item, the
  reader's top 20 is asked. The recipes are compared with live trending and all-time
  popularity baselines (``evaluation.baselines``) on the same stream.
- ``leave_last_out``: the literature's protocol (``evaluation.leave_last_out``): each
  reader's last interaction held out, the rest fitted, the full catalog ranked with the
  reader's items excluded and ties counted against the target; HR@k, NDCG@k, MRR@k.

Pure: no printing; files are read, nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from clickrec.config import ServingSettings
from clickrec.core.errors import InvalidInput
from clickrec.evaluation import leave_last_out as llo
from clickrec.evaluation.baselines import LivePopularity
from clickrec.evaluation.live import LiveModel, RecipeModel
from clickrec.evaluation.replay import first_touches, run
from clickrec.evaluation.split import temporal_split
from clickrec.importing import InteractionColumns, read_table
from clickrec.models.base import RecipeParams
from clickrec.models.online import state_from
from clickrec.models.recipes import fit, recipe_named
from clickrec.models.scoring import Exploration, Scorer, top_n
from clickrec.training.dataset import TRAINING_COLUMNS, to_interactions
from clickrec.training.evaluate import evaluate_recipe
from clickrec.training.pipeline import Candidate, candidates

FORMATS = ("csv", "movielens", "session")
POPULARITY_ALL_TIME = "popularity (all-time)"
ALL_TIME_HOURS = 1e9  # a half-life no data set comes near: decay is a no-op
SESSION_K = 20
BASELINE_TRENDING = "baseline: live trending"
BASELINE_POPULARITY = "baseline: popularity"

Progress = Callable[[str], None]

_SERVING = ServingSettings()


def default_candidates() -> list[Candidate]:
    """The pipeline's candidates (default knobs) plus an all-time popularity baseline."""
    return [
        *candidates(RecipeParams()),
        Candidate(
            POPULARITY_ALL_TIME,
            "popularity-count",
            replace(RecipeParams(), half_life_hours=ALL_TIME_HOURS),
        ),
    ]


def _served(
    model: type[RecipeModel],
    cands: Sequence[Candidate],
    trending_half_life_hours: float,
    history_length: int,
    exploration: Exploration,
) -> list[LiveModel]:
    """Each candidate as serving runs it, as ``model`` (``RecipeModel`` or a subclass)."""
    return [
        model(
            cand.name,
            cand.recipe,
            cand.params,
            _trending_half_life(cand, trending_half_life_hours),
            history_length,
            exploration=exploration,
        )
        for cand in cands
    ]


def _trending_half_life(cand: Candidate, default: float) -> float:
    """The online state's trending half-life for a candidate: its recipe's choice
    (``Recipe.trending_half_life``), the serving one (``default``) but for popularity."""
    return recipe_named(cand.recipe).trending_half_life(cand.params, default)


# -- loading ----------------------------------------------------------------------------


def load_dataset(path: Path, cols: InteractionColumns, fmt: str = "csv") -> pa.Table:
    """An interaction file as a table with the columns ``TRAINING_COLUMNS``.

    ``seq`` is 1..n in time order, ``timestamp`` float64 Unix seconds, ids are strings.

    - ``csv``: any CSV/TSV/Parquet file ``importing.read_table`` reads, its columns mapped
      by ``cols``. Without a session column (or where it is empty) the session is the
      reader's UTC day, as the importer makes it. Event times are required here.
    - ``movielens``: MovieLens ``ratings.csv`` (userId, movieId, rating, timestamp). Every
      rating is kept as one interaction (implicit feedback, whatever the score); the
      event type is ``rating``; sessions are user + UTC day. ``cols`` is not used.
    - ``session``: tab-separated ``SessionId ItemId Time`` (the session-rec layout of the
      YOOCHOOSE files): no user, so ``user_id`` is null and every session is an anonymous
      reader; the event type is ``click``. ``cols`` is not used.
    """
    if fmt == "csv":
        table = read_table(path)
        return _mapped(table, cols)
    if fmt == "movielens":
        table = read_table(path)
        ml = InteractionColumns(
            user_id="userId",
            session_id=None,
            item_id="movieId",
            event_type=None,
            timestamp="timestamp",
            default_event_type="rating",
        )
        _require(table, ("userId", "movieId", "timestamp"), "a MovieLens ratings file")
        return _mapped(table, ml)
    if fmt == "session":
        table = _read_tab_separated(path)
        _require(table, ("SessionId", "ItemId", "Time"), "a session file")
        sess = InteractionColumns(
            user_id=None,
            session_id="SessionId",
            item_id="ItemId",
            event_type=None,
            timestamp="Time",
        )
        return _mapped(table, sess)
    raise InvalidInput(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")


def _read_tab_separated(path: Path) -> pa.Table:
    if not path.exists():
        raise InvalidInput(f"no such file: {path}")
    if path.suffix.lower() in (".parquet", ".pq"):
        return pq.read_table(path)
    return pacsv.read_csv(
        path,
        parse_options=pacsv.ParseOptions(delimiter="\t"),
        convert_options=pacsv.ConvertOptions(strings_can_be_null=True),
    )


def _require(table: pa.Table, names: Sequence[str], what: str) -> None:
    missing = [n for n in names if n not in table.column_names]
    if missing:
        raise InvalidInput(
            f"{what} needs the column(s) {', '.join(missing)} "
            f"(columns: {', '.join(table.column_names)})"
        )


def _as_string(col: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_dictionary(col.type):
        col = pc.cast(col, col.type.value_type)
    return col if pa.types.is_string(col.type) else pc.cast(col, pa.string())


def _seconds(col: pa.ChunkedArray, name: str) -> pa.ChunkedArray:
    """Unix seconds as float64 from numbers, timestamps or ISO 8601 strings."""
    t = col.type
    if pa.types.is_dictionary(t):
        col = pc.cast(col, t.value_type)
        t = col.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        try:
            col = pc.cast(col, pa.timestamp("us", tz="UTC"))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise InvalidInput(
                f"column {name!r}: times must be Unix seconds or ISO 8601 ({exc})"
            ) from exc
        t = col.type
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        if pa.types.is_date(t):
            col = pc.cast(col, pa.timestamp("s"))
            t = col.type
        per_second = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}[t.unit]
        as_int = pc.cast(pc.cast(col, pa.timestamp(t.unit)), pa.int64())
        return pc.divide(pc.cast(as_int, pa.float64()), per_second)
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return pc.cast(col, pa.float64())
    raise InvalidInput(f"column {name!r}: times must be Unix seconds or ISO 8601, not {t}")


def _mapped(table: pa.Table, cols: InteractionColumns) -> pa.Table:
    names = table.column_names
    n = table.num_rows
    if cols.item_id not in names:
        raise InvalidInput(
            f"the file has no column {cols.item_id!r} for item_id (columns: {', '.join(names)})"
        )
    has_user = cols.user_id is not None and cols.user_id in names
    has_session = cols.session_id is not None and cols.session_id in names
    if not has_user and not has_session:
        raise InvalidInput("the file needs a user or a session column")
    if cols.timestamp is None or cols.timestamp not in names:
        raise InvalidInput(
            f"the file has no column {cols.timestamp!r} for timestamp; offline evaluation "
            f"needs event times (columns: {', '.join(names)})"
        )
    item = _as_string(table.column(cols.item_id))
    if item.null_count:
        raise InvalidInput(f"column {cols.item_id!r}: {item.null_count} rows have no item id")
    ts = _seconds(table.column(cols.timestamp), cols.timestamp)
    if ts.null_count:
        raise InvalidInput(f"column {cols.timestamp!r}: {ts.null_count} rows have no time")
    user = (
        _as_string(table.column(cols.user_id))
        if has_user
        else pa.chunked_array([pa.nulls(n, pa.string())])
    )
    # The importer's session for rows without one: "<user>-<UTC day>".
    micros = pc.cast(pc.multiply(ts, 1e6), pa.int64())
    day = pc.strftime(pc.cast(micros, pa.timestamp("us")), format="%Y%m%d")
    daily = pc.binary_join_element_wise(pc.fill_null(user, "None"), day, "-")
    if has_session:
        given = _as_string(table.column(cols.session_id))
        session = pc.coalesce(
            pc.if_else(pc.equal(given, ""), pa.scalar(None, pa.string()), given), daily
        )
    else:
        session = daily
    if cols.event_type is not None and cols.event_type in names:
        given_type = _as_string(table.column(cols.event_type))
        event_type = pc.fill_null(
            pc.if_else(pc.equal(given_type, ""), pa.scalar(None, pa.string()), given_type),
            cols.default_event_type,
        )
    else:
        event_type = pa.chunked_array([pa.array(np.full(n, cols.default_event_type))])
    out = pa.table(
        {
            "timestamp": ts,
            "user_id": user,
            "session_id": session,
            "item_id": item,
            "event_type": event_type,
        }
    )
    order = pc.sort_indices(out.column("timestamp"))  # stable: file order breaks ties
    out = out.take(order)
    out = out.add_column(0, "seq", pa.array(np.arange(1, n + 1, dtype=np.int64)))
    return out.select(list(TRAINING_COLUMNS))


# -- the temporal holdout ---------------------------------------------------------------


def temporal(
    table: pa.Table,
    candidates: Sequence[Candidate] | None = None,
    holdout_fraction: float = 0.1,
    max_readers: int = 2000,
    exploration: Exploration | None = None,
    trending_half_life_hours: float = _SERVING.trending_half_life_hours,
    history_length: int = _SERVING.history_length,
    progress: Progress = lambda step: None,
) -> dict[str, dict[str, float]]:
    """The pipeline's time holdout for each candidate: ``rank_metrics`` at 5, 10 and 20,
    ``test_readers``, and the run's ``users`` (readers), ``items`` and ``events``.

    No catalog is known here, so exploration has no publication dates to favour: its
    bonus is zero and the scores are those of a catalog without ``published_at``.
    """
    cands = list(candidates) if candidates is not None else default_candidates()
    exploration = exploration if exploration is not None else Exploration()
    data = to_interactions(table)
    if len(data) == 0:
        raise InvalidInput("no interactions to evaluate")
    try:
        split = temporal_split(
            data.reader, data.item, data.timestamp, data.n_readers, data.n_items, holdout_fraction
        )
    except ValueError as exc:
        raise InvalidInput(f"no time holdout possible: {exc}") from exc
    counts = {
        "users": float(data.n_readers),
        "items": float(data.n_items),
        "events": float(len(data)),
        "train_events": float(split.train.sum()),
    }
    results: dict[str, dict[str, float]] = {}
    for cand in cands:
        progress(cand.name)
        metrics = evaluate_recipe(
            cand.recipe,
            cand.params,
            data,
            split,
            {},
            exploration,
            _trending_half_life(cand, trending_half_life_hours),
            history_length,
            max_readers=max_readers,
        )
        results[cand.name] = {**metrics, **counts}
    return results


# -- next click in a session ------------------------------------------------------------


@dataclass(frozen=True)
class _Replay:
    """The test clicks in time order, and which of them are predicted."""

    readers: list[str]
    items: list[str]
    times: list[float]
    predict: np.ndarray  # bool per click: a sampled session's click after its first
    sessions: int  # sampled test sessions


def _session_split(table: pa.Table, test_fraction: float) -> tuple[pa.Table, pa.Table]:
    """Sessions that end before the cut train; the rest are the test sessions."""
    if not 0.0 < test_fraction < 1.0:
        raise InvalidInput(f"test_fraction must be in (0, 1), got {test_fraction}")
    ends = table.group_by("session_id").aggregate([("timestamp", "max")])
    end_times = ends.column("timestamp_max").to_numpy()
    cut = float(np.quantile(end_times, 1.0 - test_fraction))
    test_sessions = ends.filter(pc.greater_equal(ends.column("timestamp_max"), cut))
    is_test = pc.is_in(table.column("session_id"), value_set=test_sessions.column("session_id"))
    return table.filter(pc.invert(is_test)), table.filter(is_test)


def _replay(test: pa.Table, max_sessions: int, seed: int) -> _Replay:
    test = test.sort_by([("timestamp", "ascending"), ("seq", "ascending")])
    session = test.column("session_id").combine_chunks()
    codes = pc.dictionary_encode(session).indices.to_numpy(zero_copy_only=False)
    n_sessions = int(codes.max()) + 1 if len(codes) else 0
    # The first click of a session (in time order) has nothing before it to predict from.
    first_at = np.full(n_sessions, len(codes))
    np.minimum.at(first_at, codes, np.arange(len(codes)))
    after_first = np.arange(len(codes)) != first_at[codes]
    clicks = np.bincount(codes, minlength=n_sessions)
    eligible = np.flatnonzero(clicks >= 2)
    if len(eligible) > max_sessions:
        eligible = np.random.default_rng(seed).choice(eligible, max_sessions, replace=False)
    sampled = np.zeros(n_sessions, dtype=bool)
    sampled[eligible] = True
    readers = pc.binary_join_element_wise("s:", session, "").to_pylist()
    return _Replay(
        readers=readers,
        items=test.column("item_id").to_pylist(),
        times=test.column("timestamp").to_pylist(),
        predict=after_first & sampled[codes],
        sessions=len(eligible),
    )


def session_next_click(
    table: pa.Table,
    candidates: Sequence[Candidate] | None = None,
    test: pa.Table | None = None,
    test_fraction: float = 0.1,
    max_sessions: int = 5000,
    seed: int = 0,
    exploration: Exploration | None = None,
    trending_half_life_hours: float = _SERVING.trending_half_life_hours,
    history_length: int = _SERVING.history_length,
    progress: Progress = lambda step: None,
) -> dict[str, dict[str, float]]:
    """Next-click prediction in sessions: ``mrr@20`` and ``hr@20`` per candidate.

    Training is ``table`` less the sessions ending in its last ``test_fraction`` of
    session end times, or all of ``table`` when ``test`` is given. Each candidate is fit
    on it and gets its own online state built from it. Then every test click is fed in
    time order into that state (``OnlineState.observe``, reader ``s:<session>``), as
    live traffic would be; before each click after the first of a sampled test session
    (at most ``max_sessions``, drawn with ``seed``), the reader's top 20 is asked of the
    ``Scorer`` (which leaves out what the reader already read) and the click's rank in
    it is scored.

    Unlike session-rec, where the next click may repeat an item of the session and a
    model may predict it, serving never recommends an item the reader has read: a
    repeated click is counted as a miss (``repeat_share`` says how many there were).
    """
    cands = list(candidates) if candidates is not None else default_candidates()
    exploration = exploration if exploration is not None else Exploration()
    if test is None:
        train_table, test_table = _session_split(table, test_fraction)
    else:
        train_table, test_table = table, test
    if train_table.num_rows == 0:
        raise InvalidInput("no training sessions before the test sessions")
    data = to_interactions(train_table)
    replay = _replay(test_table, max_sessions, seed)
    n_predictions = int(replay.predict.sum())
    if n_predictions == 0:
        raise InvalidInput("no test session has two clicks or more: nothing to predict")
    all_items = pc.unique(
        pa.chunked_array(train_table.column("item_id").chunks + test_table.column("item_id").chunks)
    )
    counts = {
        "users": float(data.n_readers),
        "items": float(len(all_items)),
        "events": float(train_table.num_rows + test_table.num_rows),
        "train_events": float(train_table.num_rows),
        "test_sessions": float(replay.sessions),
        "predictions": float(n_predictions),
    }
    results: dict[str, dict[str, float]] = {}
    for cand in cands:
        progress(cand.name)
        artifact = fit(cand.recipe, data, cand.params)
        half_life = _trending_half_life(cand, trending_half_life_hours)
        state = state_from(data, {}, half_life, history_length)
        scorer = Scorer(artifact, state, exploration)
        reciprocal = hits = repeats = unseen = 0.0
        for i in range(len(replay.items)):
            reader, item = replay.readers[i], replay.items[i]
            if replay.predict[i]:
                target = state.item_index.get(item)
                history, _ = state.history(reader)
                if target is None:
                    unseen += 1
                elif np.any(history == target):
                    repeats += 1
                else:
                    top = top_n(scorer.for_reader(reader).values, SESSION_K)
                    where = np.flatnonzero(top == target)
                    if len(where):
                        hits += 1
                        reciprocal += 1.0 / (int(where[0]) + 1)
            state.observe([reader], [item], [replay.times[i]])
        results[cand.name] = {
            f"mrr@{SESSION_K}": reciprocal / n_predictions,
            f"hr@{SESSION_K}": hits / n_predictions,
            "repeat_share": repeats / n_predictions,
            "unseen_item_share": unseen / n_predictions,
            **counts,
        }
    return results


# -- replay of the live stream ----------------------------------------------------------


def replay(
    table: pa.Table,
    candidates: Sequence[Candidate] | None = None,
    holdout_fraction: float = 0.1,
    max_events: int = 5000,
    seed: int = 0,
    exploration: Exploration | None = None,
    trending_half_life_hours: float = _SERVING.trending_half_life_hours,
    history_length: int = _SERVING.history_length,
    progress: Progress = lambda step: None,
) -> dict[str, dict[str, float]]:
    """The replay protocol per candidate and baseline: ``hr@k`` and ``mrr@k`` (k = 5, 10,
    20), ``sampled`` first touches, ``observed`` events, ``cold_share`` of sampled events
    by readers with nothing before them, and the run's ``users``, ``items`` and ``events``.

    The cut is the (1 - ``holdout_fraction``) quantile of event times. Each candidate is
    served as ``RecipeModel`` (artifact + online state + scorer); the baselines are live
    trending with the same half-life as the serving state, and all-time popularity.
    """
    cands = list(candidates) if candidates is not None else default_candidates()
    exploration = exploration if exploration is not None else Exploration()
    data = to_interactions(table)
    if len(data) == 0:
        raise InvalidInput("no interactions to evaluate")
    if not 0.0 < holdout_fraction < 1.0:
        raise InvalidInput(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    cut = float(np.quantile(data.timestamp, 1.0 - holdout_fraction))
    try:
        stream = first_touches(data, cut, max_events, seed)
    except ValueError as exc:
        raise InvalidInput(f"no replay possible: {exc}") from exc
    models = _served(RecipeModel, cands, trending_half_life_hours, history_length, exploration)
    models += [
        LivePopularity(BASELINE_TRENDING, trending_half_life_hours),
        LivePopularity(BASELINE_POPULARITY),
    ]
    counts = {
        "users": float(data.n_readers),
        "items": float(data.n_items),
        "events": float(len(data)),
        "train_events": float(stream.train.sum()),
    }
    results = run(models, data, stream, progress=progress)
    return {name: {**metrics, **counts} for name, metrics in results.items()}


# -- leave-last-out ---------------------------------------------------------------------


def leave_last_out(
    table: pa.Table,
    candidates: Sequence[Candidate] | None = None,
    max_readers: int | None = None,
    seed: int = 0,
    exploration: Exploration | None = None,
    trending_half_life_hours: float = _SERVING.trending_half_life_hours,
    history_length: int = _SERVING.history_length,
    progress: Progress = lambda step: None,
) -> dict[str, dict[str, float]]:
    """Leave-last-out per candidate and the all-time popularity baseline: ``hr@k``,
    ``ndcg@k`` and ``mrr@k`` (k = 10, 20), ``readers`` asked (at most ``max_readers``,
    drawn with ``seed``), and the run's ``users``, ``items``, ``events``, ``train_events``
    and ``repeats`` (readers not asked: their last item was a re-read).

    Each candidate is served as ``RecipeModel`` and ranked on the scorer's full score
    vector, so a target tied with other items ranks below them all."""
    cands = list(candidates) if candidates is not None else default_candidates()
    exploration = exploration if exploration is not None else Exploration()
    data = to_interactions(table)
    if len(data) == 0:
        raise InvalidInput("no interactions to evaluate")
    split = llo.last_items(data)
    if len(split.readers) == 0:
        raise InvalidInput(
            "no leave-last-out possible: no reader has a new item after an earlier one"
        )
    models = _served(
        llo.ScoredRecipeModel, cands, trending_half_life_hours, history_length, exploration
    )
    models.append(llo.ScoredPopularity(BASELINE_POPULARITY))
    counts = {
        "users": float(data.n_readers),
        "items": float(data.n_items),
        "events": float(len(data)),
        "train_events": float(split.train.sum()),
        "repeats": float(split.repeats),
    }
    results = llo.run(models, data, split, max_readers=max_readers, seed=seed, progress=progress)
    return {name: {**metrics, **counts} for name, metrics in results.items()}
