"""The citations call (``GET {base}/citations/{timeframe}``): outputs with attention lately.

Each timeframe lists a fixed set of ``size`` universe outputs (the simulator's
``citations_per_timeframe``): mostly DOIs under two registrants, 10.1101 and 10.9999, so
``doi_prefix`` has something to filter, and some outputs known only by a PubMed ID, an arXiv
ID, an ISBN or a handle, so a client must pick each result's best identifier. Only identifiers
the universe knows are listed, so the counts and fetch calls answer every one of them too.
Results are counts answers (``harvester.sim.counts``), filtered, ordered, then cut into pages.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from harvester.sim import universe
from harvester.sim.counts import Json, cited_by_name, counts_answer

TIMEFRAMES = ("at", "1d", "2d", "3d", "4d", "5d", "6d", "1w", "1m", "3m", "6m", "1y")
ORDERS = ("score", "at_score", "readers", "first_seen", "pubdate")
DOI_PREFIXES = ("10.1101", "10.9999")
DEFAULT_RESULTS = 25
MAX_RESULTS = 100
MAX_LISTING = 20_000  # beyond, arXiv IDs of the listing would need a sixth digit
# `cited_in` takes the API's filter names; each is a source key of the fetch answer.
CITED_IN_SOURCES = {
    name: universe.SOURCE_KEYS.get(name, name)
    for name in (
        "twitter", "facebook", "blogs", "news", "reddit", "video", "policy", "weibo",
        "peerreview", "qna", "f1000", "gplus", "linkedin", "pinterest", "rh", "forum",
        "wikipedia", "bluesky",
    )
} | {"patents": "patent", "guidelines": "guideline", "podcasts": "podcast"}  # fmt: skip


@dataclass(frozen=True)
class CitationsQuery:
    """One citations call's parameters, checked; empty filters filter nothing."""

    timeframe: str
    num_results: int = DEFAULT_RESULTS
    page: int = 1
    order_by: str = "score"
    cited_in: str = ""
    doi_prefix: str = ""
    issns: tuple[str, ...] = ()


def parse_query(timeframe: str, query: Mapping[str, str]) -> CitationsQuery:
    """The call's parameters, or ValueError with the API's 400 text. Parameters the
    simulator does not model (``nlmid``, ``subject``, the fetch call's filters) are ignored."""
    if timeframe not in TIMEFRAMES:
        raise ValueError("Invalid timeframe")
    order_by = query.get("order_by") or "score"
    if order_by not in ORDERS:
        raise ValueError("Invalid order_by")
    cited_in = query.get("cited_in", "")
    if cited_in and cited_in not in CITED_IN_SOURCES:
        raise ValueError("Invalid cited_in")
    issns = tuple(part.strip().upper() for part in query.get("issns", "").split(","))
    return CitationsQuery(
        timeframe,
        num_results=_whole(query, "num_results", DEFAULT_RESULTS, MAX_RESULTS),
        page=_whole(query, "page", 1, None),
        order_by=order_by,
        cited_in=cited_in,
        doi_prefix=query.get("doi_prefix", "").strip().rstrip("/").lower(),
        issns=tuple(issn for issn in issns if issn),
    )


def _whole(query: Mapping[str, str], name: str, default: int, highest: int | None) -> int:
    """A whole number from 1 to `highest` (None: no bound), or the default when absent."""
    raw = query.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise ValueError(f"Invalid {name}")
    if highest is not None and int(raw) > highest:
        raise ValueError(f"Invalid {name}")
    return int(raw)


def citations_answer(query: CitationsQuery, size: int) -> Json | None:
    """``{"query": {...}, "results": [...]}`` for the page asked for, or None for a page past
    the last one (the API's 404). An empty result set answers every page, with no results.

    Results are ordered by `query.order_by`, highest first; ties keep the listing's order,
    so pages never overlap. They are shared with a cache: callers must not mutate them.
    """
    kept = [answer for answer in listing(query.timeframe, size) if _matches(answer, query)]
    kept.sort(key=_order_key(query), reverse=True)  # stable, reversed or not
    start = (query.page - 1) * query.num_results
    if kept and start >= len(kept):
        return None
    return {"query": _echo(query, len(kept)), "results": kept[start : start + query.num_results]}


@lru_cache(maxsize=32)
def listing(timeframe: str, size: int) -> tuple[Json, ...]:
    """The counts answers of a timeframe's outputs, in listing order (built once: a
    listing of hundreds of outputs takes a fraction of a second)."""
    answers = []
    for id_type, identifier in listed(timeframe, size):
        output = universe.output_for(id_type, identifier)
        assert output is not None, "listed() lists known identifiers only"
        answers.append(counts_answer(output))
    return tuple(answers)


def listed(timeframe: str, size: int) -> list[tuple[str, str]]:
    """The (type, identifier) pairs a timeframe lists: `size` of them, all known."""
    if not 0 <= size <= MAX_LISTING:
        raise ValueError(f"a listing holds 0 to {MAX_LISTING} outputs, not {size}")
    month = TIMEFRAMES.index(timeframe) + 1
    found: list[tuple[str, str]] = []
    index = 0
    while len(found) < size:
        id_type, identifier = _candidate(timeframe, month, index)
        if universe.is_known(id_type, identifier):
            found.append((id_type, identifier))
        index += 1
    return found


def _candidate(timeframe: str, month: int, index: int) -> tuple[str, str]:
    """Of every 20 identifiers, 10 DOIs under 10.1101, 6 under 10.9999, then one each
    of a PubMed ID, an arXiv ID, an ISBN and a handle (no DOI beside them)."""
    kind = index % 20
    if kind < 16:
        return "doi", f"{DOI_PREFIXES[kind // 10]}/cited.{timeframe}.{index}"
    if kind == 16:
        return "pmid", str(30_000_000 + month * 1_000_000 + index)
    if kind == 17:
        return "arxiv", f"24{month:02d}.{index:05d}"
    if kind == 18:
        return "isbn", _isbn13(f"978{month:02d}{index:07d}")
    return "handle", f"2027.{month}/cited-{index}"


def _isbn13(first_12: str) -> str:
    """Append the check digit, so clients that validate ISBNs accept it."""
    weighted = sum(int(digit) * (3 if i % 2 else 1) for i, digit in enumerate(first_12))
    return f"{first_12}{(10 - weighted % 10) % 10}"


def _matches(answer: Json, query: CitationsQuery) -> bool:
    """Whether a result passes the call's filters: posts in the source, a DOI under the
    registrant (a whole prefix: 10.1 is not 10.1101), a journal ISSN among those given."""
    if query.cited_in and not answer.get(cited_by_name(CITED_IN_SOURCES[query.cited_in])):
        return False
    if query.doi_prefix and not answer.get("doi", "").startswith(f"{query.doi_prefix}/"):
        return False
    return not query.issns or bool(set(query.issns) & set(answer.get("issns", ())))


def _order_key(query: CitationsQuery) -> Callable[[Json], float]:
    """What `order_by` sorts on; ``score`` is the score gained in the timeframe."""
    keys: dict[str, Callable[[Json], float]] = {
        "score": lambda answer: answer["history"][query.timeframe],
        "at_score": lambda answer: answer["score"],
        "readers": lambda answer: answer["readers_count"],
        "first_seen": lambda answer: answer["added_on"],
        "pubdate": lambda answer: answer["pubdate"],
    }
    return keys[query.order_by]


def _echo(query: CitationsQuery, total: int) -> Json:
    """The answer's ``query``: the total and page asked for, and the filters given."""
    echo: Json = {
        "total": total,
        "page": query.page,
        "num_results": query.num_results,
        "timeframe": query.timeframe,
        "order_by": query.order_by,
    }
    filters = {"cited_in": query.cited_in, "doi_prefix": query.doi_prefix}
    echo.update({name: value for name, value in filters.items() if value})
    if query.issns:
        echo["issns"] = list(query.issns)
    return echo
