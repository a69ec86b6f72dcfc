"""How news-shaped a stream is: the synthetic news preset and the default blog beside the real
news platform of issue 12 (and the shared public data sets when present), measured alike.

    .venv/bin/python bench/news_stats.py [--users 2500] [--days 335] [--seed 0]

The real stream (a news/blog platform over 11 months) is known only by the figures in
``STATISTICS``. Writes docs/news_stats.md (the table, how each figure is measured, where
the preset differs and why) and prints the table. About 15 s.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from common import catalog_columns, log

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from clickrec.evaluation import replay as rp  # noqa: E402
from clickrec.evaluation.baselines import LivePopularity  # noqa: E402
from clickrec.models.base import Interactions  # noqa: E402
from clickrec.testing.synthetic import BlogSpec, generate_blog  # noqa: E402
from clickrec.training.dataset import to_interactions, training_table  # noqa: E402

DOCS = Path(__file__).resolve().parents[1] / "docs"
HOUR = 3600.0
DAY = 86400.0
RETRAIN_DAYS = 3.0
HOLDOUT = 0.1  # the quality bench's replay cut: the last 10 % of event time
REPLAY_QUERIES = 5000  # the quality bench's replay budget: first touches asked
TRENDING_HOURS = (1.0, 6.0, 24.0)

# (key, statistic, how it is measured, the real stream's figure or None where unknown)
STATISTICS = (
    ("events", "events", "rows of the stream", 72_000),
    ("posts", "posts", "distinct items with an event", 2_900),
    ("readers", "readers", "distinct readers with an event", 1_900),
    ("days", "days", "last event time − first event time, in days", 335),
    (
        "new_retrained",
        "next reads on posts newer than the model (retrained every 3 days)",
        "a model trained every 3 days from the first event: share of first touches of a "
        "(reader, post) pair after the first training whose post was published after the "
        "last training",
        0.90,
    ),
    (
        "new_replay",
        "replay targets new to the model (fit at 90 % of time)",
        "the quality bench's replay: fit before the time at 90 % of event time; share of "
        "the first touches after it (pairs not touched before it) whose item has no event "
        "before it",
        None,
    ),
    ("age_6h", "events on posts < 6 h old", "age at the event: event time − published_at", 0.39),
    ("age_1d", "events on posts < 1 day old", "the same, < 24 h", 0.63),
    ("age_1w", "events on posts < 1 week old", "the same, < 168 h", 0.86),
    (
        "posts_per_day",
        "new posts a day",
        "posts published between the first and the last event (the catalog's, read or "
        "not; without one, items first seen then), per day of that span",
        9.0,
    ),
    ("reader_median", "median events per reader", "over readers with an event", 10.0),
    (
        "session_median",
        "median events per session",
        "sessions as the training data defines them (reader + session id)",
        2.0,
    ),
    (
        "repeat_share",
        "events repeating a (reader, post) pair",
        "1 − distinct (reader, post) pairs / events",
        0.44,
    ),
    (
        "session_repeat_share",
        "… of which within one session",
        "1 − distinct (session, post) pairs / events",
        None,
    ),
    *(
        (
            f"trend_{h:g}h",
            f"live trending {h:g} h: replay MRR@20",
            "the quality bench's replay (fit before 90 % of event time, then every later "
            f"event fed in time order; before each of {REPLAY_QUERIES:,} sampled first "
            "touches, the reader's top 20, everything they touched excluded) of a "
            f"live-trending list with a {h:g} h half-life"
            if i == 0
            else f"the same, {h:g} h half-life",
            real,
        )
        for i, (h, real) in enumerate(zip(TRENDING_HOURS, (None, 0.411, 0.353), strict=True))
    ),
)
SHARES = {
    "new_retrained",
    "new_replay",
    "age_6h",
    "age_1d",
    "age_1w",
    "repeat_share",
    "session_repeat_share",
}


@dataclass(frozen=True)
class Stream:
    """A stream to measure: index-space events and each item's publication time (NaN
    where unknown: the item's first event stands in for it)."""

    name: str
    data: Interactions
    published_at: np.ndarray
    note: str = ""
    catalog: np.ndarray | None = None  # publication times of every post, read or not


def measure(stream: Stream, retrain_days: float = RETRAIN_DAYS) -> dict[str, float]:
    """The statistics of ``STATISTICS`` for one stream (events in time order)."""
    data, published_at = stream.data, stream.published_at
    t = data.timestamp
    first_seen = np.full(data.n_items, np.inf)
    np.minimum.at(first_seen, data.item, t)
    published = np.where(np.isfinite(published_at), published_at, first_seen)
    age = t - published[data.item]
    keys = data.reader.astype(np.int64) * data.n_items + data.item
    _, first = np.unique(keys, return_index=True)
    session_keys = data.session.astype(np.int64) * data.n_items + data.item
    start, end = float(t.min()), float(t.max())
    gap = retrain_days * DAY
    trained = start + np.floor((t[first] - start) / gap) * gap
    after_first = trained > start
    new = published[data.item[first]] > trained
    catalog = published[np.isfinite(first_seen)] if stream.catalog is None else stream.catalog
    in_span = (catalog >= start) & (catalog <= end)
    return {
        "events": float(len(t)),
        "posts": float(len(np.unique(data.item))),
        "readers": float(len(np.unique(data.reader))),
        "days": (end - start) / DAY,
        "new_retrained": float(new[after_first].mean()),
        "new_replay": replay_new_share(data, keys),
        "age_6h": float((age < 6 * HOUR).mean()),
        "age_1d": float((age < 24 * HOUR).mean()),
        "age_1w": float((age < 168 * HOUR).mean()),
        "posts_per_day": float(in_span.sum()) / max((end - start) / DAY, 1e-9),
        "reader_median": float(np.median(np.bincount(data.reader)[np.unique(data.reader)])),
        "session_median": float(np.median(np.bincount(data.session)[np.unique(data.session)])),
        "repeat_share": 1.0 - len(first) / len(t),
        "session_repeat_share": 1.0 - len(np.unique(session_keys)) / len(t),
        **trending_mrr(data),
    }


def replay_new_share(data: Interactions, keys: np.ndarray) -> float:
    """Share of the quality bench's replay targets whose item the fitted model never saw."""
    cut = float(np.quantile(data.timestamp, 1.0 - HOLDOUT))
    train = data.timestamp < cut
    after = np.flatnonzero(~train)
    _, first = np.unique(keys[after], return_index=True)
    targets = after[first]
    targets = targets[~np.isin(keys[targets], keys[train])]
    seen = np.zeros(data.n_items, dtype=bool)
    seen[data.item[train]] = True
    return float((~seen[data.item[targets]]).mean())


def trending_mrr(data: Interactions) -> dict[str, float]:
    """Replay MRR@20 of live trending at each of ``TRENDING_HOURS``, as the quality bench
    measures it (its "live trending" baseline)."""
    cut = float(np.quantile(data.timestamp, 1.0 - HOLDOUT))
    stream = rp.first_touches(data, cut, REPLAY_QUERIES, seed=0)
    models = [LivePopularity(f"trend_{h:g}h", h) for h in TRENDING_HOURS]
    return {name: r["mrr@20"] for name, r in rp.run(models, data, stream).items()}


def blog_stream(name: str, spec: BlogSpec) -> Stream:
    """A synthetic blog as the quality bench reads it, with its catalog's publication times."""
    made = generate_blog(spec)
    data = to_interactions(training_table(made.interactions))
    catalog = made.items["published_at"].to_numpy()
    return Stream(name, data, catalog_columns(made.items, data.item_ids)[0], catalog=catalog)


def shared_streams() -> list[Stream]:
    """The public data sets the quality bench uses, loaded as it loads them, when present."""
    import quality

    out = []
    if (quality.DATA / "ml_latest_small").exists():
        ml = quality.movielens(1.0).data
        out.append(Stream("ml_latest_small", ml, np.full(ml.n_items, np.nan), "first rating"))
    else:
        log("ml_latest_small is missing under ../shared/data: skipped")
    if (quality.DATA / "yoochoose_100k").exists():
        yc = quality.yoochoose(1.0).data
        out.append(Stream("yoochoose_100k", yc, np.full(yc.n_items, np.nan), "first click"))
    else:
        log("yoochoose_100k is missing under ../shared/data: skipped")
    return out


def cell(key: str, value: float | None) -> str:
    if value is None:
        return "—"
    if key in SHARES:
        return f"{value:.0%}"
    if key == "posts_per_day":
        return f"{value:.1f}"
    if key.startswith("trend_"):
        return f"{value:.3f}"
    return f"{value:,.0f}"


def table(streams: list[Stream], stats: list[dict[str, float]]) -> list[str]:
    """The statistics side by side, numbered; how each is measured comes under the table."""
    heads = ["statistic", "real stream", *(s.name for s in streams)]
    lines = ["| " + " | ".join(heads) + " |", "| --- |" + " ---: |" * (len(heads) - 1)]
    for i, (key, label, _, real) in enumerate(STATISTICS, 1):
        cells = [cell(key, real), *(cell(key, s[key]) for s in stats)]
        lines.append(f"| {i}. {label} | " + " | ".join(cells) + " |")
    return lines


def retrain_curve(stream: Stream, gaps: tuple[float, ...] = (1, 3, 7, 14, 30)) -> str:
    """Statistic 5 at other retraining gaps: how old a model must be for 90 % to hold."""
    shares = [measure(stream, gap)["new_retrained"] for gap in gaps]
    return ", ".join(f"{gap:g} d: {share:.0%}" for gap, share in zip(gaps, shares, strict=True))


def notes(spec: BlogSpec, news: Stream, stats: dict[str, float]) -> list[str]:
    """Where the preset differs from the real stream, and why."""
    main = 1.0 - sum(share for _, share in spec.slow_decays)
    decays = ", ".join(f"{share:.1%} with {h:g} h" for h, share in spec.slow_decays)
    return [
        "## Where the preset differs, and why",
        "",
        "- **Next reads newer than the model (5)**: "
        f"{stats['new_retrained']:.0%} against 90 %. With the real stream's own ages (7–9) a "
        "model retrained every 3 days cannot reach 90 %: a first touch is of a post newer "
        "than the model only if the post is younger than the time since the last training "
        "(0 to 3 days), so the share is at most the share of reads on posts under 3 days "
        "old, itself below the 86 % under a week, and on average well below that (the "
        "ages count every event, but the likes right after a read have its age). The "
        "preset matches the ages instead; its share by gap between trainings is "
        f"{retrain_curve(news)}. The real 90 % matches a model about a month old, which is "
        f"what the quality bench's replay measures (6: {stats['new_replay']:.0%}): the real "
        "figure was most likely taken over a replay of that length rather than with 3-day "
        "retraining.",
        f"- **Repeats (13–14)**: {stats['repeat_share']:.0%}, of which "
        f"{stats['session_repeat_share']:.0%} of all events are likes, bookmarks and "
        f"comments in the same session as the read (`follow_ups_per_read` "
        f"{spec.follow_ups_per_read:g}) and the rest re-reads in a later session by the "
        "heaviest readers, who run out of unread posts. The generator puts every follow-up "
        "in the read's session; a real comment can come back days later, which would add "
        "sessions of one event.",
        "- **Readers (3, 11)**: every reader stays active over all 11 months at their own "
        f"rate (lognormal, spread `activity_sigma` {spec.activity_sigma:g}: mean "
        f"{stats['events'] / stats['readers']:.0f} events a reader for a median of "
        f"{stats['reader_median']:.0f}; real: 38 and 10). A real site's readers arrive and "
        "leave, so its replay has more readers with no history than the preset's.",
        f"- **Ages (7–9)**: a read picks a post by quality × decay; {main:.1%} of posts fade "
        f"with a {spec.half_life_hours:g} h half-life, {decays} (`slow_decays`: stories "
        "read for a day or two, the evergreen tail of archive and search). Posts come out "
        "in the daytime and readers read mostly mornings and evenings, so even a 2 h decay "
        "leaves many morning reads on last evening's posts.",
        f"- **Posts (2) and new posts a day (10)**: the preset publishes exactly "
        f"{spec.posts_per_day} a day (the first and last days' posts outside the events' "
        f"span are not counted), but only {stats['posts']:,.0f} of them are ever read: post "
        f"quality is spread widely (`quality_sigma` {spec.quality_sigma:g}, the default "
        "blog's 1.2) so that a few hits a day draw most reads, as live trending's strength "
        "on the real stream says they do; the weakest posts then go unread. The real "
        "stream's 2.9k posts over 11 months suggest nearly every post there gets a reader.",
        "- **Live trending (15–17)**: "
        f"{stats['trend_6h']:.3f} at 6 h and {stats['trend_24h']:.3f} at 24 h against the "
        "real 0.411 and 0.353. The order is the same (fresher is better; the preset's 1 h "
        f"is best, {stats['trend_1h']:.3f}), but the preset's 24 h list falls further "
        "behind: its posts fade faster once past their first hours than the real ones, "
        "whose popularity over a day still says what is read next. A wider quality spread "
        "raises both figures but leaves more posts unread and pushes the ages older; this "
        "is the balance chosen. These figures move by a few hundredths from seed to seed. "
        "On the real stream ALS and item-kNN with fold-in scored about 0.008; the quality "
        "bench's `news` and `news-bare` data sets give the preset's "
        "(`bench/quality.py --datasets news,news-bare`).",
        "- **The default blog** is a different site (40 posts a day, half-life 12 h, no "
        "read older than 3 days, re-reads avoided, no likes or comments): it rewards taste "
        "within fresh sections; the news preset rewards freshness above all.",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=BlogSpec.news().users)
    parser.add_argument("--days", type=int, default=BlogSpec.news().days)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DOCS / "news_stats.md")
    args = parser.parse_args()
    started = time.perf_counter()
    news = BlogSpec.news(users=args.users, days=args.days, seed=args.seed)
    streams = [
        blog_stream("news preset", news),
        blog_stream("default blog", BlogSpec(users=2000, seed=args.seed)),
        *shared_streams(),
    ]
    stats = [measure(s) for s in streams]
    lines = table(streams, stats)
    how = [f"{i}. **{label}**: {text}." for i, (_, label, text, _) in enumerate(STATISTICS, 1)]
    proxies = "; ".join(f"{s.name}: its {s.note}" for s in streams if s.note)
    seconds = time.perf_counter() - started
    command = "bench/news_stats.py"
    if (args.users, args.days, args.seed) != (BlogSpec.news().users, BlogSpec.news().days, 0):
        command += f" --users {args.users} --days {args.days} --seed {args.seed}"
    text = "\n".join(
        [
            "# News statistics: the synthetic news preset against a real news stream",
            "",
            f"`.venv/bin/python {command}` ({seconds:.0f} s). Written by it; do not edit.",
            "",
            f"**news preset**: `BlogSpec.news(users={args.users}, days={args.days}, "
            f"seed={args.seed})`; **default blog**: `BlogSpec(users=2000, seed={args.seed})` "
            "(14 days, 40 posts a day, half-life 12 h). **real stream**: a news/blog "
            "platform over 11 months, known here only by the figures issue 12 gives (— where "
            "it gives none). The public data sets have no publication times: an item's first "
            f"event stands in for it ({proxies}), so for them 5–10 say when an item was first "
            "seen, not published. The synthetic streams are read as the quality bench reads "
            "them (`training_table`, `to_interactions`).",
            "",
            *lines,
            "",
            "How each is measured (a first touch: a reader's first event on a post):",
            "",
            *how,
            "",
            *notes(news, streams[0], stats[0]),
        ]
    )
    args.out.write_text(text.rstrip() + "\n")
    print("\n".join(lines))
    log(f"done in {seconds:.0f} s: {args.out}")


if __name__ == "__main__":
    main()
