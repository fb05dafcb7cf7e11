"""What to discover and when: the citations call's query (`harvester discover`) and the
`[schedule]` section (discovery, refresh and the Parquet export's periods), with the
ages (`30d`, `12h`) both are written in.

Apart from `config` because it is a concern of its own, read by the command line,
the daemon's scheduler and `status` alike; `config` takes `ScheduleSettings` from here
as one of its sections, and every message still names the key or flag at fault.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from harvester.config_ranges import LONGEST_AGE_S, RANGES, age, check_age_range
from harvester.errors import ConfigError

# The citations call's timeframes and orders; its pages hold at most 100 results.
TIMEFRAMES = ("at", "1d", "2d", "3d", "4d", "5d", "6d", "1w", "1m", "3m", "6m", "1y")
ORDERS = ("score", "at_score", "readers", "first_seen", "pubdate")
DISCOVER_PAGE_SIZE = 100
_SOURCE_NAME = re.compile(r"[a-z][a-z0-9_&]*")
_ISSN = re.compile(r"\d{4}-\d{3}[\dXx]")
_DOI_PREFIX = re.compile(r"10\.\d{4,9}(/\S*)?")
_AGE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_AGE_UNIT_S = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}


@dataclass(frozen=True)
class DiscoverQuery:
    """One discovery: the citations call's timeframe and filters (`harvester discover`,
    or `[schedule]`'s discover_* keys)."""

    timeframe: str = "1d"
    cited_in: tuple[str, ...] = ()
    doi_prefix: str = ""
    issns: tuple[str, ...] = ()
    order_by: str = ""  # empty: the API's default (score gained in the timeframe)
    max_pages: int = 0  # 0: every page

    def params(self, page: int) -> dict[str, str]:
        """The query parameters of one page (the key aside), in a fixed order."""
        filters = {
            "cited_in": ",".join(self.cited_in),
            "doi_prefix": self.doi_prefix,
            "issns": ",".join(issn.upper() for issn in self.issns),
            "order_by": self.order_by,
        }
        return {
            "num_results": str(DISCOVER_PAGE_SIZE),
            "page": str(page),
            **{name: value for name, value in filters.items() if value},
        }

    def identity(self) -> dict[str, object]:
        """What makes two discoveries the same (a resume continues only the same one)."""
        filters = {name: value for name, value in self.params(1).items() if name != "page"}
        return {"timeframe": self.timeframe, **filters, "max_pages": self.max_pages}


@dataclass(frozen=True)
class ScheduleSettings:
    """What a running daemon does by itself; an empty `*_every` is never."""

    discover_every: str = ""  # an age: "1d", "6h"...
    discover_timeframe: str = "1d"
    discover_cited_in: tuple[str, ...] = ()
    discover_doi_prefix: str = ""
    discover_issns: tuple[str, ...] = ()
    discover_order_by: str = ""
    discover_max_pages: int = 0
    refresh_every: str = ""
    refresh_older_than: str = ""  # requeue outputs whose latest snapshot is older
    export_every: str = ""  # write what the store gained into export_dataset
    export_dataset: str = ""  # a Parquet dataset's directory (`export --dataset DIR`)

    def discover_query(self) -> DiscoverQuery:
        return DiscoverQuery(
            self.discover_timeframe,
            self.discover_cited_in,
            self.discover_doi_prefix,
            self.discover_issns,
            self.discover_order_by,
            self.discover_max_pages,
        )

    @property
    def discover_every_s(self) -> float | None:
        return parse_age(self.discover_every) if self.discover_every else None

    @property
    def refresh_every_s(self) -> float | None:
        return parse_age(self.refresh_every) if self.refresh_every else None

    @property
    def refresh_older_than_s(self) -> float:
        return parse_age(self.refresh_older_than)

    @property
    def export_every_s(self) -> float | None:
        return parse_age(self.export_every) if self.export_every else None


def validate_schedule(schedule: ScheduleSettings) -> None:
    for key in ("discover_every", "refresh_every", "refresh_older_than", "export_every"):
        text = getattr(schedule, key)
        if text:
            _check_age(f"schedule.{key}", text)
    if schedule.refresh_every and not schedule.refresh_older_than:
        raise ConfigError(
            'schedule.refresh_every needs schedule.refresh_older_than (e.g. "30d"): '
            "which outputs are due for a new snapshot"
        )
    if schedule.export_every and not schedule.export_dataset.strip():
        raise ConfigError(
            'schedule.export_every needs schedule.export_dataset (e.g. "/srv/altmetric-dataset"):'
            " the directory of the Parquet dataset to keep up to date"
        )
    check_discover_query(schedule.discover_query(), lambda name: f"schedule.discover_{name}")


def _check_age(name: str, text: str) -> None:
    try:
        seconds = parse_age(text)
    except ValueError as error:
        raise ConfigError(f"{name}: {error}") from None
    check_age_range(name, text, seconds)


def parse_age(text: str, *, bounded: bool = True) -> float:
    """Seconds in an age such as `30d`, `12h`, `90m`, `2w`, `1d12h` or `0s`; at most
    a hundred years (`config_ranges.LONGEST_AGE_S`) when `bounded`: a period a daemon
    must wait. `refresh --older-than` is not bounded: an age reaching back before the
    epoch simply selects nothing (a black-box review of issue 10 asked for exit 0)."""
    cleaned = text.strip().lower()
    parts = _AGE.findall(cleaned)
    if not parts or _AGE.sub("", cleaned).strip():
        raise ValueError(f"{text!r} is not an age (try 30d, 12h, 90m or 2w)")
    seconds = sum(float(amount) * _AGE_UNIT_S[unit] for amount, unit in parts)
    if bounded and not seconds <= LONGEST_AGE_S:  # infinity too: `1e400d` has no digits' limit
        raise ValueError(f"{text!r} is longer than {age(LONGEST_AGE_S)} (100 years)")
    return seconds


def check_discover_query(query: DiscoverQuery, name: Callable[[str], str]) -> None:
    """Refuse a discovery the API would refuse or misread, naming the option (`name`
    gives a field's name as the user wrote it: a flag or a config key)."""
    if query.timeframe not in TIMEFRAMES:
        raise ConfigError(
            f"{name('timeframe')} must be one of {' '.join(TIMEFRAMES)}, not {query.timeframe!r}"
        )
    if query.order_by and query.order_by not in ORDERS:
        raise ConfigError(
            f"{name('order_by')} must be one of {', '.join(ORDERS)}, not {query.order_by!r}"
        )
    for source in query.cited_in:
        if not _SOURCE_NAME.fullmatch(source):
            raise ConfigError(f"{name('cited_in')}: {source!r} is not a source name (e.g. news)")
    for issn in query.issns:
        if not _ISSN.fullmatch(issn):
            raise ConfigError(f"{name('issns')}: {issn!r} is not an ISSN (e.g. 0028-0836)")
    if query.doi_prefix and not _DOI_PREFIX.fullmatch(query.doi_prefix):
        raise ConfigError(
            f"{name('doi_prefix')}: {query.doi_prefix!r} is not a DOI prefix (e.g. 10.1101)"
        )
    pages = RANGES["schedule.discover_max_pages"]
    if not pages.holds(query.max_pages):
        raise ConfigError(f"{name('max_pages')} {pages.says(str(query.max_pages))}")
