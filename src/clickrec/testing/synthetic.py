"""A synthetic news/blog clickstream with the traits that make news recommendation hard."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

__all__ = [
    "CATEGORY_NAMES",
    "FIXED_START",
    "Blog",
    "BlogSpec",
    "blog_interactions_as_events",
    "generate_blog",
    "write_blog",
]

DAY = 86400.0
HOUR = 3600.0
FIXED_START = 1767225600.0  # 2026-01-01T00:00:00Z: where a blog without an end begins
WINDOW_DAYS = 3.0  # posts older than this (or 6 half-lives, if longer) are never read
STAY_PROBABILITY = 0.5  # chance that a read stays in the previous read's category
VIEW_SHARE = 0.3  # share of interactions that are bare views, with no read time
SECONDARY_SHARE = 0.3  # share of posts filed under a second category
QUALITY_SIGMA = 1.2  # spread of the lognormal post quality: a few posts a day are hits
ACTIVITY_SIGMA = 1.0  # spread of the lognormal reader activity: a few heavy readers
VOCABULARY_SIZE = 60  # words per category
TAG_CHOICES = 12  # the first words of a category's vocabulary double as its tags
AUTHORS_PER_CATEGORY = 4
TOPICAL_SHARE = 0.6  # share of title and text words drawn from the post's categories
DEDUP_ROUNDS = 8  # redraws of a post the reader already read; repeats left in a session are dropped
FOLLOW_UP_TYPES = ("like", "bookmark", "comment")
FOLLOW_UP_SHARES = (0.5, 0.2, 0.3)  # how often a follow-up is each of those

# fmt: off
CATEGORY_NAMES = (
    "politics", "sport", "tech", "business", "science", "health", "culture", "travel", "food",
    "world", "opinion", "climate",
)
# fmt: on
KEYWORDS = {
    "politics": "election minister parliament vote policy campaign senate coalition",
    "sport": "match league goal coach championship transfer season stadium",
    "tech": "software startup chip robot smartphone cloud privacy algorithm",
    "business": "market earnings inflation merger investor shares retail bank",
    "science": "research galaxy genome physics experiment fossil telescope molecule",
    "health": "vaccine hospital diet sleep cancer therapy fitness virus",
    "culture": "film album novel museum festival theatre artist series",
    "travel": "flight island hotel beach railway passport hiking cruise",
    "food": "recipe restaurant chef bakery wine vegan harvest spice",
    "world": "border embassy refugee summit treaty protest ceasefire sanctions",
    "opinion": "column editorial debate letter essay argument critique viewpoint",
    "climate": "emissions drought wildfire solar glacier flood carbon heatwave",
}
# fmt: off
COMMON_WORDS = (
    "the", "a", "of", "to", "in", "and", "for", "on", "with", "new", "how", "why", "what",
    "after", "about", "says", "report", "big", "first", "week", "today", "people", "city",
    "plan", "year", "more", "could", "will", "may", "update", "inside", "life", "best",
)
FIRST_NAMES = (
    "Ada", "Ben", "Chloe", "Dan", "Eva", "Femi", "Grace", "Hugo", "Ines", "Jon", "Kai", "Lena",
    "Marco", "Nina", "Omar", "Pia", "Raj", "Sara", "Tom", "Yuki",
)
LAST_NAMES = (
    "Abbott", "Brandt", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ivanov",
    "Jensen", "Kowalski", "Larsen", "Moreau", "Novak", "Okafor", "Patel", "Quinn", "Rossi",
    "Silva", "Tanaka", "Weber",
)
# fmt: on
CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"


@dataclass(frozen=True)
class BlogSpec:
    """The size and shape of a synthetic blog and its readers."""

    users: int = 1000
    days: int = 14
    posts_per_day: int = 40
    categories: int = 12
    sessions_per_user_per_day: float = 0.5
    reads_per_session: float = 3.0
    half_life_hours: float = 12.0
    seed: int = 0
    start: float = FIXED_START
    """UTC seconds at which the first day begins (a fixed date, so library callers always
    get the same blog); ignored when ``end`` is given."""
    end: float | None = None
    """UTC seconds at which the blog ends (``clickrec demo generate`` gives now): its days
    are the ``days`` calendar days (UTC) up to the one that holds ``end`` (or ends at it,
    at midnight), and nothing is published or read after it."""
    # How much a section's appeal depends on the reader's device (the spread, in log
    # odds, of per-device section tastes); 0: no device, and no "device" column.
    device_effect: float = 0.0
    slow_decays: tuple[tuple[float, float], ...] = ()
    """Slower decays beside ``half_life_hours``, as (half-life in hours, share of posts)
    pairs: that share of the posts fades at that rate, the rest at the main one; every
    post draws reads in proportion to its quality over its life, so the shares are also
    shares of reads once the blog has run for a few of those half-lives. Breaking news
    beside stories read for days and evergreen posts. (): the main decay only."""
    activity_sigma: float = ACTIVITY_SIGMA
    """Spread of the lognormal reader activity (the mean stays ``sessions_per_user_per_day``)."""
    quality_sigma: float = QUALITY_SIGMA
    """Spread of the lognormal post quality: the larger, the more reads go to a few hits."""
    follow_ups_per_read: float = 0.0
    """Mean number of likes, bookmarks and comments (geometric, per interaction) on the
    same post in the same session, seconds to minutes later; 0: none."""

    @classmethod
    def news(cls, users: int = 2500, days: int = 335, seed: int = 0) -> BlogSpec:
        """A news site shaped like the real stream of issue 12: 9 posts a day, most fading
        in hours, a fifth read for a day or two, a few for weeks; 39 % of
        events on posts under 6 hours old, 63 % under a day, 86 % under a week; a few hits
        a day; median 10 events a reader and 2 a session; 44 % of events on a (reader,
        post) pair already seen (likes, bookmarks, comments after the read). The defaults
        give its size too (about 1,850 readers with an event, 73k events, 11 months); see
        docs/news_stats.md for each figure beside the real one."""
        return cls(
            users=users,
            days=days,
            posts_per_day=9,
            sessions_per_user_per_day=0.042,
            reads_per_session=1.3,
            half_life_hours=2.0,
            slow_decays=((24.0, 0.18), (500.0, 0.065)),
            activity_sigma=1.85,
            quality_sigma=2.0,
            follow_ups_per_read=0.62,
            seed=seed,
        )

    def __post_init__(self) -> None:
        """Reject sizes and rates the generator cannot honour."""
        for name in ("users", "days", "posts_per_day", "categories"):
            if getattr(self, name) < 1:
                raise ValueError(f"BlogSpec.{name} must be at least 1")
        if self.sessions_per_user_per_day < 0:
            raise ValueError("BlogSpec.sessions_per_user_per_day must not be negative")
        if self.reads_per_session < 1:
            raise ValueError("BlogSpec.reads_per_session must be at least 1")
        if self.half_life_hours <= 0:
            raise ValueError("BlogSpec.half_life_hours must be positive")
        if self.device_effect < 0:
            raise ValueError("BlogSpec.device_effect must not be negative")
        for half_life, share in self.slow_decays:
            if half_life <= 0 or not 0 < share < 1:
                raise ValueError("BlogSpec.slow_decays: half-lives > 0 and shares in (0, 1)")
        if sum(share for _, share in self.slow_decays) >= 1:
            raise ValueError("BlogSpec.slow_decays: shares must sum to less than 1")
        if self.activity_sigma < 0 or self.quality_sigma < 0:
            raise ValueError("BlogSpec.activity_sigma and quality_sigma must not be negative")
        if self.follow_ups_per_read < 0:
            raise ValueError("BlogSpec.follow_ups_per_read must not be negative")
        if self.end is not None and self.start != FIXED_START:
            raise ValueError("give BlogSpec.start or BlogSpec.end, not both")
        if self.end is not None and not math.isfinite(self.end):
            raise ValueError("BlogSpec.end must be a finite time")

    @property
    def first_day(self) -> float:
        """UTC seconds at which the first day begins: ``start``, or midnight ``days`` before
        the end of ``end``'s day."""
        if self.end is None:
            return self.start
        return (math.ceil(self.end / DAY) - self.days) * DAY


@dataclass(frozen=True)
class Blog:
    """The posts of a synthetic blog and its readers' interactions, sorted by time."""

    items: pa.Table
    interactions: pa.Table


@dataclass(frozen=True)
class _Posts:
    """The numeric side of the posts, in item-id order (sorted by publication time)."""

    published_at: np.ndarray
    primary: np.ndarray
    secondary: np.ndarray  # -1 for posts with a single category
    quality: np.ndarray


@dataclass(frozen=True)
class _Reads:
    """Every interaction before its post is chosen, grouped by session in time order."""

    session: np.ndarray
    user: np.ndarray
    position: np.ndarray
    timestamp: np.ndarray
    is_view: np.ndarray
    seconds: np.ndarray


class _Catalogue:
    """Per-category posts with log prefix sums of quality x decay, for fast weighted draws."""

    def __init__(
        self,
        posts: _Posts,
        categories: int,
        spec: BlogSpec,
        half_life_hours: float | None = None,
        kept: np.ndarray | None = None,
    ) -> None:
        """Group the posts (the ``kept`` ones, if given) by primary category, in time
        order, and accumulate their log weights (decaying with ``half_life_hours``, the
        spec's by default)."""
        half_life = spec.half_life_hours if half_life_hours is None else half_life_hours
        self.rate = math.log(2.0) / (half_life * HOUR)
        self.origin = spec.first_day
        self.window = max(WINDOW_DAYS * DAY, 6.0 * half_life * HOUR)
        self.post_ids: list[np.ndarray] = []
        self.published: list[np.ndarray] = []
        self.log_cum: list[np.ndarray] = []
        log_weight = np.log(posts.quality) + (posts.published_at - self.origin) * self.rate
        for category in range(categories):
            in_category = posts.primary == category
            ids = np.flatnonzero(in_category if kept is None else in_category & kept)
            self.post_ids.append(ids)
            self.published.append(posts.published_at[ids])
            self.log_cum.append(np.logaddexp.accumulate(log_weight[ids]))

    def bounds(self, category: int, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Index range of the category's posts published in the window before each time."""
        published = self.published[category]
        return (
            np.searchsorted(published, t - self.window, side="left"),
            np.searchsorted(published, t, side="left"),
        )

    def log_mass(self, category: int, t: np.ndarray) -> np.ndarray:
        """Log of the summed quality x decay of the category's candidates at each time."""
        lo, hi = self.bounds(category, t)
        out = np.full(len(t), -np.inf)
        ok = hi > lo
        top, below = self._edges(category, lo[ok], hi[ok])
        kept = np.log1p(-np.minimum(np.exp(below - top), 1.0 - 1e-12))
        out[ok] = top - (t[ok] - self.origin) * self.rate + kept
        return out

    def draw(self, category: int, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Draw one post per time with probability proportional to quality x decay; -1 if none."""
        lo, hi = self.bounds(category, t)
        out = np.full(len(t), -1, dtype=np.int64)
        ok = hi > lo
        lo, hi = lo[ok], hi[ok]
        top, below = self._edges(category, lo, hi)
        u = 1.0 - rng.random(len(lo))
        target = top + np.log(u + (1.0 - u) * np.exp(below - top))
        picked = np.clip(np.searchsorted(self.log_cum[category], target), lo, hi - 1)
        out[ok] = self.post_ids[category][picked]
        return out

    def _edges(self, category: int, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, ...]:
        """Log prefix sums at the end of each range and just before its start (-inf at 0)."""
        log_cum = self.log_cum[category]
        if len(log_cum) == 0:
            return np.empty(0), np.empty(0)
        below = np.where(lo > 0, log_cum[np.maximum(lo - 1, 0)], -np.inf)
        return log_cum[hi - 1], below


class _MixedCatalogue:
    """Posts that fade at different rates (``BlogSpec.slow_decays``): each post follows
    one decay, and is weighted by quality x decay / half-life, so that every post draws
    the same reads over its life for its quality, spent fast or slowly."""

    def __init__(self, posts: _Posts, categories: int, spec: BlogSpec) -> None:
        """A catalogue per decay, of the posts drawn for it (a generator of its own)."""
        main = 1.0 - sum(share for _, share in spec.slow_decays)
        decays = [(spec.half_life_hours, main), *spec.slow_decays]
        rng = np.random.default_rng([spec.seed, 3])
        decay = rng.choice(len(decays), len(posts.quality), p=[share for _, share in decays])
        self.parts = [
            _Catalogue(posts, categories, spec, h, decay == i) for i, (h, _) in enumerate(decays)
        ]
        self.log_share = [-math.log(h) for h, _ in decays]

    def _log_masses(self, category: int, t: np.ndarray) -> np.ndarray:
        """Log weighted mass of each decay's candidates (decays x times)."""
        return np.stack(
            [
                w + part.log_mass(category, t)
                for w, part in zip(self.log_share, self.parts, strict=True)
            ]
        )

    def log_mass(self, category: int, t: np.ndarray) -> np.ndarray:
        """Log of the summed quality x decays of the category's candidates at each time."""
        return np.logaddexp.reduce(self._log_masses(category, t), axis=0)

    def draw(self, category: int, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A decay by its mass (a Gumbel race), then a post from it; -1 if none is live."""
        masses = self._log_masses(category, t)
        pick = np.argmax(masses + rng.gumbel(size=masses.shape), axis=0)
        out = np.full(len(t), -1, dtype=np.int64)
        for i, part in enumerate(self.parts):
            mask = pick == i
            out[mask] = part.draw(category, t[mask], rng)
        return out


_AnyCatalogue = _Catalogue | _MixedCatalogue


def generate_blog(spec: BlogSpec) -> Blog:
    """Generate a blog's posts and its readers' sessions, deterministically from the seed."""
    rng = np.random.default_rng(spec.seed)
    names = _category_names(spec.categories)
    vocabulary = _vocabulary(names, rng)
    popularity = rng.dirichlet(np.full(spec.categories, 2.0))
    posts = _draw_posts(spec, popularity, rng)
    items = _items_table(posts, names, vocabulary, rng)
    log_taste = np.log(_draw_tastes(spec.users, popularity, rng))
    reads = _draw_reads(spec, rng)
    catalogue: _AnyCatalogue = (
        _MixedCatalogue(posts, spec.categories, spec)
        if spec.slow_decays
        else _Catalogue(posts, spec.categories, spec)
    )
    device, bias = _draw_devices(spec, reads) if spec.device_effect > 0 else (None, None)
    chosen = _choose_posts(reads, log_taste, catalogue, rng, bias)
    if spec.end is not None:
        chosen[reads.timestamp > spec.end] = -1  # a session that would run on past the end
    interactions = _interactions_table(reads, chosen, items)
    if device is not None:
        kept = np.sort(np.flatnonzero(chosen >= 0))
        kept = kept[np.argsort(reads.timestamp[kept], kind="stable")]
        names = pa.array(np.array(DEVICES)[device[kept]])
        interactions = interactions.append_column("device", names)
    if spec.follow_ups_per_read > 0:
        interactions = _with_follow_ups(interactions, spec)
    if spec.end is not None:  # posts are in time order: those due after the end go
        items = items.slice(0, int(np.searchsorted(posts.published_at, spec.end, side="right")))
    return Blog(items=items, interactions=interactions)


DEVICES = ("phone", "desktop")


def _with_follow_ups(interactions: pa.Table, spec: BlogSpec) -> pa.Table:
    """The interactions and, after each, a few likes, bookmarks or comments by the same
    reader in the same session on the same post. A generator of its own, so a blog
    without them stays what its seed always made."""
    rng = np.random.default_rng([spec.seed, 2])
    n = interactions.num_rows
    count = rng.geometric(1.0 / (1.0 + spec.follow_ups_per_read), n) - 1
    source = np.repeat(np.arange(n), count)
    delay = 10.0 + rng.exponential(60.0, len(source))
    total = np.cumsum(delay)
    start = np.repeat(np.cumsum(count) - count, count)  # each run's first follow-up
    after = total - total[start] + delay[start]
    kind = rng.choice(len(FOLLOW_UP_TYPES), len(source), p=FOLLOW_UP_SHARES)
    timestamp = np.round(interactions["timestamp"].to_numpy()[source] + after, 3)
    follow = interactions.take(pa.array(source))
    for name, column in (
        ("event_type", pa.array(FOLLOW_UP_TYPES).take(pa.array(kind))),
        ("timestamp", pa.array(timestamp, pa.float64())),
        ("event_value", pa.nulls(len(source), pa.float64())),
    ):
        follow = follow.set_column(follow.column_names.index(name), name, column)
    both = pa.concat_tables([interactions, follow])
    times = both["timestamp"].to_numpy()
    order = np.argsort(times, kind="stable")
    if spec.end is not None:
        order = order[times[order] <= spec.end]
    return both.take(pa.array(order))


def _draw_devices(spec: BlogSpec, reads: _Reads) -> tuple[np.ndarray, np.ndarray]:
    """Each read's device (a reader's sessions are mostly on their own device: 60 % of
    readers use a phone) and the device's log appeal per section (reads × sections). A
    generator of its own, so a blog without devices stays what its seed always made."""
    rng = np.random.default_rng([spec.seed, 1])
    main = (rng.random(spec.users) >= 0.6).astype(np.int64)  # 0 phone, 1 desktop
    sessions = int(reads.session.max(initial=-1)) + 1
    owner = np.zeros(sessions, dtype=np.int64)
    owner[reads.session] = reads.user
    switch = rng.random(sessions) < 0.15
    session_device = np.where(switch, 1 - main[owner], main[owner])
    appeal = rng.normal(0.0, spec.device_effect, (len(DEVICES), spec.categories))
    device = session_device[reads.session]
    return device, appeal[device]


def _category_names(categories: int) -> list[str]:
    """Named categories first, then cat13, cat14, ..."""
    return [
        CATEGORY_NAMES[i] if i < len(CATEGORY_NAMES) else f"cat{i + 1}" for i in range(categories)
    ]


def _vocabulary(names: list[str], rng: np.random.Generator) -> pa.Array:
    """VOCABULARY_SIZE words per category (keywords first, then made-up words), then common ones."""
    syllables = [c + v for c in CONSONANTS for v in VOWELS]
    base = len(syllables)
    codes = rng.choice(base**3, size=len(names) * VOCABULARY_SIZE, replace=False)
    made_up = iter(
        syllables[c // base**2] + syllables[c // base % base] + syllables[c % base] for c in codes
    )
    words: list[str] = []
    for name in names:
        keywords = KEYWORDS.get(name, "").split()
        words += keywords + [next(made_up) for _ in range(VOCABULARY_SIZE - len(keywords))]
    return pa.array(words + list(COMMON_WORDS))


def _zipf(n: int, exponent: float = 0.8) -> np.ndarray:
    """Zipf-like probabilities over n ranked words."""
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    return weights / weights.sum()


def _draw_posts(spec: BlogSpec, popularity: np.ndarray, rng: np.random.Generator) -> _Posts:
    """Posts every day, mostly in the daytime, sorted by publication time."""
    n = spec.days * spec.posts_per_day
    day = np.repeat(np.arange(spec.days), spec.posts_per_day)
    hour = np.where(rng.random(n) < 0.85, rng.uniform(6.0, 22.0, n), rng.uniform(0.0, 24.0, n))
    published_at = np.sort(np.floor(spec.first_day + day * DAY + hour * HOUR))
    primary = rng.choice(spec.categories, size=n, p=popularity)
    other = (primary + rng.integers(1, max(spec.categories, 2), n)) % spec.categories
    has_second = (rng.random(n) < SECONDARY_SHARE) & (spec.categories > 1)
    return _Posts(
        published_at=published_at,
        primary=primary,
        secondary=np.where(has_second, other, -1),
        quality=rng.lognormal(0.0, spec.quality_sigma, n),
    )


def _items_table(
    posts: _Posts, names: list[str], vocabulary: pa.Array, rng: np.random.Generator
) -> pa.Table:
    """The item catalogue: ids, times, categories, tags, authors, titles, texts and urls."""
    n = len(posts.published_at)
    item_id = _labels("p", n)
    name = pa.array(names)
    primary_name = name.take(pa.array(posts.primary))
    second_name = name.take(pa.array(np.maximum(posts.secondary, 0)))
    categories = pc.if_else(
        pa.array(posts.secondary >= 0),
        pc.binary_join_element_wise(primary_name, second_name, "|"),
        primary_name,
    )
    title = _sentences(rng.integers(5, 10, n), posts, vocabulary, rng)
    text = _sentences(rng.integers(20, 41, n), posts, vocabulary, rng)
    return pa.table(
        {
            "item_id": item_id,
            "published_at": pa.array(posts.published_at, pa.float64()),
            "categories": categories,
            "tags": _tags(posts.primary, vocabulary, rng),
            "author": _authors(posts.primary, len(names), rng),
            "title": pc.utf8_capitalize(title),
            "text": pc.binary_join_element_wise(pc.utf8_capitalize(text), ".", ""),
            "url": pc.binary_join_element_wise("https://blog.example/posts/", item_id, ""),
        }
    )


def _labels(prefix: str, n: int) -> pa.Array:
    """Ids like p000123: the prefix and a zero-padded number, for 0..n-1."""
    numbers = pc.cast(pa.array(np.arange(n, dtype=np.int64)), pa.string())
    return pc.binary_join_element_wise(prefix, pc.utf8_lpad(numbers, width=6, padding="0"), "")


def _sentences(
    lengths: np.ndarray, posts: _Posts, vocabulary: pa.Array, rng: np.random.Generator
) -> pa.Array:
    """Space-joined words, mostly from the post's categories' vocabularies, else common ones."""
    total = int(lengths.sum())
    owner = np.repeat(np.arange(len(lengths)), lengths)
    category = posts.primary[owner]
    second = posts.secondary[owner]
    category = np.where((second >= 0) & (rng.random(total) < 0.3), second, category)
    topical = category * VOCABULARY_SIZE + rng.choice(
        VOCABULARY_SIZE, total, p=_zipf(VOCABULARY_SIZE)
    )
    common_start = len(vocabulary) - len(COMMON_WORDS)
    common = common_start + rng.choice(len(COMMON_WORDS), total, p=_zipf(len(COMMON_WORDS)))
    word = np.where(rng.random(total) < TOPICAL_SHARE, topical, common)
    return _joined(lengths, vocabulary.take(pa.array(word)), " ")


def _joined(lengths: np.ndarray, values: pa.Array, separator: str) -> pa.Array:
    """Join consecutive runs of the given lengths of string values into one string each."""
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), values), separator)


def _tags(primary: np.ndarray, vocabulary: pa.Array, rng: np.random.Generator) -> pa.Array:
    """Two to four distinct tags per post from its primary category's tag words."""
    n = len(primary)
    count = rng.integers(2, 5, n)
    picks = np.argsort(rng.random((n, TAG_CHOICES)), axis=1)[:, :4]
    keep = np.arange(4) < count[:, None]
    words = (primary[:, None] * VOCABULARY_SIZE + picks)[keep]
    return _joined(count, vocabulary.take(pa.array(words)), "|")


def _authors(primary: np.ndarray, categories: int, rng: np.random.Generator) -> pa.Array:
    """An author per post from a small pool of writers per primary category."""
    pool = [
        f"{FIRST_NAMES[j % len(FIRST_NAMES)]} {LAST_NAMES[j % len(LAST_NAMES)]}"
        for j in range(categories * AUTHORS_PER_CATEGORY)
    ]
    index = primary * AUTHORS_PER_CATEGORY + rng.integers(0, AUTHORS_PER_CATEGORY, len(primary))
    return pa.array(pool).take(pa.array(index))


def _draw_tastes(users: int, popularity: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-reader category tastes: mostly one to three favourites, a little of everything."""
    categories = len(popularity)
    favourites = np.minimum(rng.integers(1, 4, users), categories)
    keys = rng.gumbel(size=(users, categories)) + np.log(popularity)
    rank = np.argsort(np.argsort(-keys, axis=1), axis=1)
    focus = rng.gamma(1.0, size=(users, categories)) * (rank < favourites[:, None])
    focus /= focus.sum(axis=1, keepdims=True)
    return 0.85 * focus + 0.15 * popularity + 1e-12


def _draw_reads(spec: BlogSpec, rng: np.random.Generator) -> _Reads:
    """Sessions with a daily rhythm, and their interactions a minute or a few apart."""
    user, start = _draw_sessions(spec, rng)
    n_reads = 1 + rng.poisson(spec.reads_per_session - 1.0, len(user))
    session = np.repeat(np.arange(len(user)), n_reads)
    total = len(session)
    first = np.cumsum(n_reads) - n_reads
    position = np.arange(total) - np.repeat(first, n_reads)
    is_view = rng.random(total) < VIEW_SHARE
    seconds = np.round(np.clip(rng.lognormal(math.log(60.0), 0.8, total), 10.0, 300.0), 1)
    step = np.where(is_view, rng.exponential(15.0, total), seconds)
    step += 5.0 + rng.exponential(40.0, total)
    elapsed = np.cumsum(step) - step
    elapsed -= np.repeat(elapsed[first], n_reads)
    return _Reads(
        session=session,
        user=user[session],
        position=position,
        timestamp=np.round(start[session] + elapsed, 3),
        is_view=is_view,
        seconds=seconds,
    )


def _draw_sessions(spec: BlogSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Session owners and start times, numbered by start time; heavy readers come often."""
    sigma = spec.activity_sigma
    activity = spec.sessions_per_user_per_day * rng.lognormal(-(sigma**2) / 2, sigma, spec.users)
    user = np.repeat(np.arange(spec.users), rng.poisson(activity * spec.days))
    weekday = (np.floor(spec.first_day / DAY) + np.arange(spec.days) + 3) % 7  # 0 is a Monday
    day_weight = np.where(weekday >= 5, 0.8, 1.0)
    day = rng.choice(spec.days, size=len(user), p=day_weight / day_weight.sum())
    start = spec.first_day + day * DAY + _daily_rhythm(len(user), rng) * HOUR
    order = np.argsort(start, kind="stable")
    return user[order], start[order]


def _daily_rhythm(n: int, rng: np.random.Generator) -> np.ndarray:
    """Hours of the day with morning, lunch and evening peaks over a flat background."""
    peak = rng.choice(4, size=n, p=[0.3, 0.15, 0.35, 0.2])
    centre = np.array([8.0, 12.5, 20.5, 12.0])[peak]
    spread = np.array([1.5, 1.0, 2.0, 0.0])[peak]
    hour = np.where(peak == 3, rng.uniform(0.0, 24.0, n), rng.normal(centre, spread + 1e-9))
    return np.mod(hour, 24.0)


def _choose_posts(
    reads: _Reads,
    log_taste: np.ndarray,
    catalogue: _AnyCatalogue,
    rng: np.random.Generator,
    bias: np.ndarray | None = None,
) -> np.ndarray:
    """The post of every interaction (-1 where none fits): on topic, rarely one read before.
    ``bias``: per read, a log appeal added to each section (the device's taste)."""
    fresh = _draw_categories(reads.user, reads.timestamp, log_taste, catalogue, rng, bias)
    stay = (reads.position > 0) & (rng.random(len(fresh)) < STAY_PROBABILITY)
    anchor = np.maximum.accumulate(np.where(stay, 0, np.arange(len(fresh))))
    category = fresh[anchor]
    post = _draw_items(category, reads.timestamp, catalogue, rng)
    missing = post < 0
    category[missing] = fresh[missing]
    post[missing] = _draw_items(category[missing], reads.timestamp[missing], catalogue, rng)
    for attempt in range(DEDUP_ROUNDS):
        again = _repeated(reads.user, post)
        if not again.any():
            break
        t = reads.timestamp[again]
        if attempt >= DEDUP_ROUNDS // 2:
            category[again] = _draw_categories(
                reads.user[again],
                t,
                log_taste,
                catalogue,
                rng,
                None if bias is None else bias[again],
            )
        post[again] = _draw_items(category[again], t, catalogue, rng)
    post[_repeated(reads.session, post)] = -1
    return post


def _draw_categories(
    user: np.ndarray,
    t: np.ndarray,
    log_taste: np.ndarray,
    catalogue: _AnyCatalogue,
    rng: np.random.Generator,
    bias: np.ndarray | None = None,
) -> np.ndarray:
    """Categories drawn in proportion to taste x candidate mass (a Gumbel race); -1 if none."""
    best = np.full(len(t), -np.inf)
    chosen = np.full(len(t), -1, dtype=np.int64)
    for category in range(log_taste.shape[1]):
        score = log_taste[user, category] + catalogue.log_mass(category, t)
        if bias is not None:
            score = score + bias[:, category]
        score += rng.gumbel(size=len(t))
        better = score > best
        best[better] = score[better]
        chosen[better] = category
    return chosen


def _draw_items(
    category: np.ndarray, t: np.ndarray, catalogue: _AnyCatalogue, rng: np.random.Generator
) -> np.ndarray:
    """A post per interaction from its category, by quality x decay; -1 if none is live."""
    post = np.full(len(t), -1, dtype=np.int64)
    for value in np.unique(category[category >= 0]):
        mask = category == value
        post[mask] = catalogue.draw(int(value), t[mask], rng)
    return post


def _repeated(owner: np.ndarray, post: np.ndarray) -> np.ndarray:
    """Marks the second and later interactions of one reader (or session) with one post."""
    key = owner.astype(np.int64) * (int(post.max(initial=0)) + 2) + post + 1
    order = np.argsort(key, kind="stable")
    ordered = key[order]
    repeated = np.zeros(len(key), dtype=bool)
    repeated[order[1:]] = ordered[1:] == ordered[:-1]
    return repeated & (post >= 0)


def _interactions_table(reads: _Reads, post: np.ndarray, items: pa.Table) -> pa.Table:
    """The kept interactions as an Arrow table, sorted by timestamp."""
    keep = np.flatnonzero(post >= 0)
    keep = keep[np.argsort(reads.timestamp[keep], kind="stable")]
    users = int(reads.user.max(initial=-1)) + 1
    sessions = int(reads.session.max(initial=-1)) + 1
    is_view = reads.is_view[keep]
    return pa.table(
        {
            "user_id": _labels("u", users).take(pa.array(reads.user[keep])),
            "session_id": _labels("s", sessions).take(pa.array(reads.session[keep])),
            "item_id": items.column("item_id").take(pa.array(post[keep])),
            "event_type": pc.if_else(pa.array(is_view, pa.bool_()), "view", "read"),
            "timestamp": pa.array(reads.timestamp[keep], pa.float64()),
            "event_value": pa.array(reads.seconds[keep], pa.float64(), mask=is_view),
        }
    )


def write_blog(blog: Blog, out_dir: Path, fmt: str = "csv") -> dict[str, Path]:
    """Write items.<fmt> and interactions.<fmt> (csv or parquet) under out_dir."""
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"unsupported format {fmt!r}: use 'csv' or 'parquet'")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, table in (("items", blog.items), ("interactions", blog.interactions)):
        paths[name] = out / f"{name}.{fmt}"
        if fmt == "csv":
            pacsv.write_csv(table, str(paths[name]))
        else:
            pq.write_table(table, str(paths[name]))
    return paths


def blog_interactions_as_events(blog: Blog) -> list[dict]:
    """The interactions as event dicts, without event_value where it is null."""
    events = blog.interactions.to_pylist()
    for event in events:
        if event["event_value"] is None:
            del event["event_value"]
        if "device" in event:
            event["context"] = {"device": event.pop("device")}
    return events
