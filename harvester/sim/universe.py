"""The simulator's deterministic universe of Altmetric outputs.

Every (identifier type, identifier) pair maps to one fixed output drawn from the sha256 of the
pair, so tests, benchmarks and the demo agree on what "the API" holds without stored data.
Outputs are shaped like the provider's sample response, with a long tail of sizes because the
tweet quota and the store's size handling only get exercised by big ones: most are a few KB,
``SPARSE_FRACTION`` are bare (under 1 KB), ``MEDIUM_FRACTION`` carry hundreds of tweets and
``HEAVY_FRACTION`` thousands (hundreds of KB). Whether a tweet is a retweet is not in its JSON,
as in the API; it is a fixed property of its tweet ID, read with ``is_retweet``.
"""

import hashlib
import random
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import msgspec

Json = dict[str, Any]

NOT_FOUND_FRACTION = 0.05
HEAVY_FRACTION = 0.01
MEDIUM_FRACTION = 0.10
SPARSE_FRACTION = 0.15
RETWEET_PERCENT = 60  # is_retweet: the tweet ID modulo 100 falls below this
QUIRK_FRACTION = 0.02  # outputs whose Mendeley count arrives as a string, as real ones may

TYPE_ALIASES = {"arxiv_id": "arxiv", "ads_id": "ads"}
CITATION_KEYS = {
    "doi": "doi", "pmid": "pmid", "arxiv": "arxiv_id", "handle": "handle", "ads": "ads_id",
    "ssrn": "ssrn", "repec": "repec_id", "isbn": "isbns", "uri": "uri", "urn": "urn",
    "nct_id": "nct_id", "dimensions_publication_id": "dimensions_publication_id", "id": "",
}  # fmt: skip
ID_TYPES = frozenset(CITATION_KEYS)
SOURCE_KEYS = {"gplus": "googleplus", "peerreview": "peer_reviews", "qna": "q&a"}
SECTIONS = ("counts", "citation", "altmetric_score", "demographics", "posts", "images")
OTHER_SOURCES = (
    "facebook", "blogs", "news", "reddit", "googleplus", "video", "policy", "weibo",
    "peer_reviews", "q&a", "f1000", "linkedin", "pinterest", "rh", "forum",
)  # fmt: skip
_SOURCE_WEIGHT = {"news": 8.0, "blogs": 5.0, "policy": 3.0, "f1000": 1.0, "video": 0.25}
_BADGE_LETTERS = {"twitter": "t", "facebook": "f", "blogs": "b", "news": "n", "reddit": "r"}
_WORDS = (
    "quantum", "cell", "climate", "protein", "network", "evidence", "cohort", "trial",
    "galaxy", "model", "signal", "genome", "ocean", "policy", "risk", "learning", "brain",
    "virus", "soil", "energy", "Müller", "naïve", "Ångström", "東京", "café", "Ørsted",
    "graphene", "lattice", "neuron", "enzyme", "forest", "survey", "outcome", "dynamics",
)  # fmt: skip
_TEXT = tuple(random.Random(0).choices(_WORDS, k=2000))  # fixed, so outputs never change
_JOURNAL_ISSNS = {  # real ones, in every output with a journal (the citations call filters on them)
    "Nature": ["0028-0836", "1476-4687"], "Science": ["0036-8075", "1095-9203"],
    "PLoS ONE": ["1932-6203"], "The Lancet": ["0140-6736", "1474-547X"], "eLife": ["2050-084X"],
    "Zeitschrift für Physik": ["0044-3328"]}  # fmt: skip
_JOURNALS = tuple(_JOURNAL_ISSNS)
_STATUSES = ("PhD Student", "Researcher", "Professor", "Student > Master", "Librarian")
_DISCIPLINES = ("Physics", "Biology", "Medicine", "Computer Science", "Psychology", "Economics")
_COHORTS = ("Members of the public", "Scientists", "Practitioners", "Science communicators")
_COUNTRIES = ("US", "GB", "DE", "FR", "JP", "BR", "IN", "AU", "CA", "ES")
_HISTORY = ("1d", "2d", "3d", "4d", "5d", "6d", "1w", "1m", "3m", "6m", "1y", "at")
_CONTEXTS = ("all", "similar_age_3m", "this_journal", "similar_age_this_journal_3m")
_EPOCH_S = 1_325_376_000  # 2012-01-01, before which there was no altmetric attention
_SPAN_S = 13 * 365 * 86_400
_TWEET_ID_BASE = 10**18  # plus 62 random bits keeps every tweet ID at exactly 19 digits


def canonical_type(id_type: str) -> str:
    """Map legacy spellings to today's type names so both spellings name one output."""
    canonical = TYPE_ALIASES.get(id_type, id_type)
    if canonical not in ID_TYPES:
        raise ValueError(f"unknown identifier type: {id_type!r}")
    return canonical


def _canonical_key(id_type: str, identifier: str) -> tuple[str, str]:
    """Canonical type and identifier naming an output; DOIs fold case as the API does."""
    canonical = canonical_type(id_type)
    return canonical, identifier.lower() if canonical == "doi" else identifier


def _digest(canonical: str, key: str) -> bytes:
    return hashlib.sha256(f"{canonical}:{key}".encode()).digest()


def _known(canonical: str, key: str, digest: bytes) -> bool:
    """The first 8 bytes act as a uniform draw deciding the ~5% of unknown identifiers.

    Fetching by Altmetric ID only makes sense for a decimal number; anything else is unknown.
    """
    if canonical == "id" and not (key.isascii() and key.isdigit()):
        return False
    return int.from_bytes(digest[:8]) / 2**64 >= NOT_FOUND_FRACTION


def is_known(id_type: str, identifier: str) -> bool:
    """Whether the output has attention data (else the API answers 404), without building it."""
    canonical, key = _canonical_key(id_type, identifier)
    return _known(canonical, key, _digest(canonical, key))


def is_heavy(id_type: str, identifier: str) -> bool:
    """Whether the output is one of the ~1% with thousands of tweets, without building it
    (the same first draw `_posts` makes), so a server can render it off its event loop."""
    canonical, key = _canonical_key(id_type, identifier)
    digest = _digest(canonical, key)
    return random.Random(int.from_bytes(digest)).random() < HEAVY_FRACTION


def is_retweet(tweet: Json) -> bool:
    """The hidden retweet flag: a fixed function of the tweet ID, true for 60% of tweets."""
    return int(tweet["tweet_id"]) % 100 < RETWEET_PERCENT


def output_for(id_type: str, identifier: str) -> Json | None:
    """The output for an identifier, or None when it has no attention data (404).

    The top level and each section are fresh copies, so callers may drop or replace sections
    and sources; the lists inside are shared with a cache and must not be mutated (``render``
    never does).
    """
    output = _build(*_canonical_key(id_type, identifier))
    if output is None:
        return None
    return {name: dict(part) if isinstance(part, dict) else part for name, part in output.items()}


@lru_cache(maxsize=1024)
def _build(canonical: str, key: str) -> Json | None:
    """Build the full output once; cached because benchmarks re-fetch the same identifiers.

    A full cache of 1024 outputs holds about 40 MB (a heavy output alone is ~1 MB of objects).
    """
    digest = _digest(canonical, key)
    if not _known(canonical, key, digest):
        return None
    rng = random.Random(int.from_bytes(digest))
    altmetric_id = int(key) if canonical == "id" else 10**8 + int.from_bytes(digest[8:16]) % 10**10
    posts, sparse = _posts(rng, altmetric_id)
    readers = 0 if sparse or rng.random() < 0.2 else int(rng.expovariate(0.05) * len(posts))
    score = round(sum(len(v) * _SOURCE_WEIGHT.get(k, 0.25) for k, v in posts.items()), 3)
    output: Json = {
        "altmetric_id": altmetric_id,
        "counts": _counts(rng, posts, readers),
        "citation": _citation(rng, canonical, key, sparse),
        "altmetric_score": _altmetric_score(rng, score, sparse),
    }
    if not sparse:
        output["demographics"] = _demographics(rng, len(posts.get("twitter", ())), readers)
    output.update(posts=posts, score=score, images=_images(score, posts))
    return output


def _posts(rng: random.Random, altmetric_id: int) -> tuple[dict[str, list[Json]], bool]:
    """Draw the size tier, then the tweets and other sources' posts; True when sparse."""
    tier = rng.random()
    if tier < HEAVY_FRACTION:
        n_tweets, n_sources, per_source = rng.randint(1500, 4000), rng.randint(4, 10), 30
    elif tier < HEAVY_FRACTION + MEDIUM_FRACTION:
        n_tweets, n_sources, per_source = rng.randint(100, 500), rng.randint(2, 6), 8
    elif tier < HEAVY_FRACTION + MEDIUM_FRACTION + SPARSE_FRACTION:
        n_tweets, n_sources, per_source = 1, 0, 0
    else:
        n_tweets, n_sources, per_source = min(int(rng.expovariate(0.2)), 60), rng.randint(0, 3), 3
    posts: dict[str, list[Json]] = {}
    if n_tweets:
        posts["twitter"] = _tweets(rng, altmetric_id, n_tweets)
    for source in rng.sample(OTHER_SOURCES, n_sources):
        posts[source] = [_post(rng, source) for _ in range(rng.randint(1, per_source))]
    if not posts:
        posts["twitter"] = _tweets(rng, altmetric_id, 1)
    return posts, per_source == 0


def _tweets(rng: random.Random, altmetric_id: int, count: int) -> list[Json]:
    """Tweets as the API gives them (IDs only); they share citation list and author dicts
    (some authors tweet twice): half the allocations, the same JSON."""
    bits, rand = rng.getrandbits, rng.random
    authors = [{"tweeter_id": str(bits(31) + 1000)} for _ in range(max(1, count * 9 // 10))]
    size, cited = len(authors), [altmetric_id]
    return [
        {
            "citation_ids": cited,
            "author": authors[int(rand() * size)],
            "tweet_id": str(_TWEET_ID_BASE + bits(62)),
        }
        for _ in range(count)
    ]


def _pick(rng: random.Random, names: tuple[str, ...]) -> str:
    """rng.choice without its overhead; thousands of calls per heavy output add up."""
    return names[int(rng.random() * len(names))]


def _phrase(rng: random.Random, shortest: int, longest: int) -> str:
    """Some words cut from a fixed text: two rng draws instead of one per word."""
    start = int(rng.random() * (len(_TEXT) - longest))
    return " ".join(_TEXT[start : start + shortest + int(rng.random() * (longest - shortest))])


def _post(rng: random.Random, source: str) -> Json:
    """A non-tweet mention with the fields clients read: title, url, date, summary, author."""
    author = _pick(rng, _WORDS).capitalize()
    host = f"{source.replace('&', '')}.example.org"
    return {
        "title": _phrase(rng, 4, 9).capitalize(),
        "url": f"https://{host}/{rng.getrandbits(48):x}",
        "posted_on": _timestamp(rng),
        "summary": _phrase(rng, 12, 30),
        "author": {"name": author, "url": f"https://{host}/u/{author.lower()}"},
    }


def _timestamp(rng: random.Random) -> str:
    """An ISO-8601 UTC timestamp in the API's format, between 2012 and 2025."""
    moment = datetime.fromtimestamp(_EPOCH_S + int(rng.random() * _SPAN_S), UTC)
    return moment.isoformat()


def _counts(rng: random.Random, posts: dict[str, list[Json]], readers: int) -> Json:
    """Per-source counts that agree with the posts; twitter's equals its number of tweets."""
    mendeley: int | str = str(readers) if rng.random() < QUIRK_FRACTION else readers
    counts: Json = {"readers": {"mendeley": mendeley, "citeulike": 0, "connotea": 0}}
    for source, items in posts.items():
        field = "tweeter_id" if source == "twitter" else "name"
        users = len({item["author"][field] for item in items})
        counts[source] = {"unique_users_count": users, "posts_count": len(items)}
    counts["total"] = {"posts_count": sum(len(items) for items in posts.values())}
    return counts


def _citation(rng: random.Random, canonical: str, key: str, sparse: bool) -> Json:
    """Bibliographic metadata carrying the identifier under the key the API uses for it."""
    citation: Json = {
        "title": _phrase(rng, 4, 12).capitalize(),
        "authors": [f"{_pick(rng, _WORDS).capitalize()} {chr(65 + i)}." for i in range(3)],
        "pubdate": _timestamp(rng)[:10] + "T00:00:00+00:00",
    }
    if not sparse:
        citation["journal"] = journal = _pick(rng, _JOURNALS)
        citation["issns"] = list(_JOURNAL_ISSNS[journal])
        citation["altmetric_jid"] = f"{rng.getrandbits(96):024x}"
    field = CITATION_KEYS[canonical]
    if field:
        citation[field] = [key] if field == "isbns" else key
    citation["first_seen_on"] = _timestamp(rng)
    return citation


def _altmetric_score(rng: random.Random, score: float, sparse: bool) -> Json:
    """Score, its history (zero before attention arrived) and four ranking contexts."""
    arrived = int(rng.random() * len(_HISTORY))
    history = {span: score if i >= arrived else 0 for i, span in enumerate(_HISTORY)}
    section: Json = {"score": score, "score_history": history}
    if not sparse:
        section["context_for_score"] = {name: _context(rng, score) for name in _CONTEXTS}
    return section


def _context(rng: random.Random, score: float) -> Json:
    """One ranking context; rank, counts and percentile agree with each other. Higher
    scores rank higher, so a sample of a few hundred outputs has some in the top 1%
    (percentile 99), as real harvests do."""
    size = 20 + int(rng.random() * 300_000)
    share_below = rng.random() ** (1 / (1 + score / 20))
    higher = min(int(share_below * size), size - 1)
    rank = size - higher
    pct = higher * 100 // size
    top = 1 + int(rng.random() * (score + 10) * 4)
    return {
        "rank": rank,
        "mean": round(1 + rng.random() * 40, 3),
        "median": int(rng.random() * 10),
        "sample_size": size,
        "sparkline": [score, *(top >> shift for shift in range(9))],
        "total_number_of_other_articles": size,
        "this_scored_higher_than": higher,
        "this_scored_higher_than_pct": pct,
        "percentile": pct,
        "rank_type": "exact" if size < 10_000 else "approximate",
    }


def _demographics(rng: random.Random, n_tweets: int, readers: int) -> Json:
    """Who paid attention and from where, split roughly across a few categories."""
    status, discipline = _split(rng, _STATUSES, readers), _split(rng, _DISCIPLINES, readers)
    geo = {"twitter": _split(rng, _COUNTRIES, n_tweets // 3)}
    geo["mendeley"] = _split(rng, _COUNTRIES, readers // 2)
    users = {"twitter": {"cohorts": _split(rng, _COHORTS, n_tweets)}}
    users["mendeley"] = {"by_status": status, "by_discipline": discipline}
    return {"users": users, "geo": geo}


def _split(rng: random.Random, names: tuple[str, ...], total: int) -> dict[str, int]:
    """Spread a total over up to three consecutive names (empty when there is nothing)."""
    if total <= 0:
        return {}
    start = int(rng.random() * len(names))
    first = total - int(rng.random() * total / 2)
    second = (total - first) // 2
    parts = (first, second, total - first - second)
    return {names[(start + i) % len(names)]: n for i, n in enumerate(parts) if n}


def _images(score: float, posts: dict[str, list[Json]]) -> dict[str, str]:
    """Badge URLs as the API gives them (never fetched by anyone)."""
    query = f"score={int(score) + 1}&types={''.join(_BADGE_LETTERS.get(s, 'o') for s in posts)}"
    sizes = {"small": 64, "medium": 100, "large": 180}
    return {name: f"https://badges.altmetric.com/?size={px}&{query}" for name, px in sizes.items()}


def render(
    output: Json,
    *,
    include_sources: set[str] | None = None,
    exclude_sources: set[str] | None = None,
    include_sections: set[str] | None = None,
    original_tweets_only: bool = False,
) -> bytes:
    """Apply the API's filters to a fresh copy and return compact UTF-8 JSON.

    Source filters take the API's filter names (gplus, peerreview, qna, ...; response keys
    work too); they cut ``posts`` and the per-source ``counts`` but keep ``counts.readers`` and
    ``counts.total``. ``original_tweets_only`` drops retweets from ``posts.twitter`` and leaves
    counts alone. ``output`` is never mutated.
    """
    body = output
    if include_sections is not None:  # altmetric_id always stays, score rides with its section
        wanted = {"altmetric_id", *include_sections}
        wanted |= {"score"} if "altmetric_score" in wanted else set()
        body = {name: part for name, part in body.items() if name in wanted}
    if include_sources is not None or exclude_sources is not None:
        body = _keep_sources(body, include_sources, exclude_sources)
    posts = body.get("posts")
    if original_tweets_only and isinstance(posts, dict) and "twitter" in posts:
        originals = [tweet for tweet in posts["twitter"] if not is_retweet(tweet)]
        body = {**body, "posts": {**posts, "twitter": originals}}
    return _dumps(body)


def _dumps(body: Json) -> bytes:
    """Compact UTF-8 JSON; msgspec, as serialising is most of the simulator's work per
    answer and a benchmark needs the simulator to be the cheap side of the wire."""
    return msgspec.json.encode(body)


def _keep_sources(body: Json, include: set[str] | None, exclude: set[str] | None) -> Json:
    """Cut ``posts`` and the per-source entries of ``counts`` down to the wanted sources."""
    included = None if include is None else {SOURCE_KEYS.get(n, n) for n in include}
    excluded = {SOURCE_KEYS.get(n, n) for n in exclude or ()}

    def wanted(source: str) -> bool:
        return (included is None or source in included) and source not in excluded

    body = dict(body)
    if isinstance(body.get("posts"), dict):
        body["posts"] = {src: items for src, items in body["posts"].items() if wanted(src)}
    if isinstance(counts := body.get("counts"), dict):
        always = ("readers", "total")
        body["counts"] = {k: part for k, part in counts.items() if k in always or wanted(k)}
    return body


def render_with_query(output: Json, query: dict[str, str]) -> bytes:
    """Render an output with the API's filter parameters taken from the query string."""
    return render(
        output,
        include_sources=_comma_set(query.get("include_sources")),
        exclude_sources=_comma_set(query.get("exclude_sources")),
        include_sections=_comma_set(query.get("include_sections")),
        original_tweets_only="original_tweets" in (_comma_set(query.get("post_types")) or ()),
    )


def _comma_set(value: str | None) -> set[str] | None:
    """A comma list as a set; absent or empty means "no filter", as the API's defaults do."""
    if not value:
        return None
    return {part.strip() for part in value.split(",") if part.strip()} or None


def body_pool(size: int) -> list[bytes]:
    """`size` rendered outputs drawn from the universe, with its mix of sizes."""
    pool: list[bytes] = []
    index = 0
    while len(pool) < size:
        output = output_for("doi", f"10.9999/pool.{index}")
        index += 1
        if output is not None:
            pool.append(render(output))
    return pool


def tweet_ids(body: Json) -> list[str]:
    """The tweet IDs a response body carries: what the server's tweet quota charges for."""
    posts = body.get("posts")
    tweets = posts.get("twitter") if isinstance(posts, dict) else None
    if not isinstance(tweets, list):
        return []
    return [str(t["tweet_id"]) for t in tweets if isinstance(t, dict) and "tweet_id" in t]
