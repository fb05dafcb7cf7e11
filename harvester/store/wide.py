"""Schema m011: `outputs_wide`, a view with one row per output (its latest snapshot) and
a column per common source's posts and accounts, like rAltmetric's `altmetric_data()`:
the table people load into pandas or R without pivoting `counts` themselves.

A view, so it costs no space and is never out of date. Each count is a scalar subquery
that reads one row of `counts` by its primary key (response_id, source), not a
conditional aggregation over a join (`max(CASE WHEN source = ... END) ... GROUP BY`).
Measured on 478,000 latest outputs with 2.4 million counts rows (CPU time, Python
reading every row; the aggregation's in brackets):

- SQLite flattens the view into the query that reads it, so `SELECT count(*)` reads
  only `outputs` (0.12 s [3.7 s]), a query naming three columns computes only those
  (0.5 s [4.1 s]), and a filter on an output column uses its index: `doi`, `job_id`,
  `altmetric_id`, and the latest outputs' `journal` and `score` (`score > 300`:
  0.13 s [3.6 s]).
- Each column keeps the declared type of the column it reads (INTEGER, REAL), so the
  Parquet export types it; an aggregate has no declared type, and would be text.
- Reading every column of every row is the one thing it does slower: 7.1 s [6.2 s].

`o.response_id > 0` is always true: it steers SQLite to read `outputs` in rowid order
when no filter picks an index. Without it, SQLite walks the partial index of latest
scores and reads the table (and `counts`) in score order, a random read per output:
11.4 s instead of 7.1 s with the file in memory, and far worse from disk.

m011 creates the view from this text: changing it needs a migration of its own that
drops and creates it again (a shipped migration never changes).
"""

from __future__ import annotations

# (name in `counts`, stem of its columns) in the order of the view's columns. The
# counts call's `cited_by_<name>_count` fields are stored under the fetch call's names
# (`snapshot.CITED_BY_SOURCES`), so each column reads both kinds of answer.
SOURCES: tuple[tuple[str, str], ...] = (
    ("twitter", "twitter"), ("news", "news"), ("blogs", "blogs"),
    ("facebook", "facebook"), ("reddit", "reddit"), ("video", "video"),
    ("policy", "policy"), ("wikipedia", "wikipedia"), ("bluesky", "bluesky"),
    ("patent", "patent"), ("peer_reviews", "peer_reviews"), ("q&a", "qna"),
    ("googleplus", "googleplus"), ("f1000", "f1000"), ("weibo", "weibo"),
    ("linkedin", "linkedin"), ("pinterest", "pinterest"), ("forum", "forum"),
    ("podcast", "podcast"), ("guideline", "guideline"), ("rh", "rh"),
)  # fmt: skip

# From `outputs`: who the output is, and of which snapshot.
OUTPUT_COLUMNS = (
    "response_id", "job_id", "altmetric_id", "doi", "pmid", "arxiv_id", "title",
    "journal", "pubdate", "output_type", "score", "posts_count", "first_seen_at",
    "fetched_at", "mode",
)  # fmt: skip

# Per source: posts (`counts.posts_count`, NULL in a counts answer, which has none)
# and accounts (`counts.unique_users_count`, in both kinds of answer).
COUNT_COLUMNS = tuple(
    (f"{stem}_{kind}", source, field)
    for source, stem in SOURCES
    for kind, field in (("posts", "posts_count"), ("accounts", "unique_users_count"))
)

COLUMNS = (
    *OUTPUT_COLUMNS,
    *(name for name, _, _ in COUNT_COLUMNS),
    "mendeley_readers",
    "score_pct_all",
)


def _count(name: str, source: str, field: str) -> str:
    return (
        f"(SELECT c.{field} FROM counts AS c"
        f" WHERE c.response_id = o.response_id AND c.source = '{source}') AS {name}"
    )


_SELECTED = (
    *(f"o.{name}" for name in OUTPUT_COLUMNS),
    *(_count(*column) for column in COUNT_COLUMNS),
    "(SELECT r.readers FROM readers AS r WHERE r.response_id = o.response_id"
    " AND r.reference_manager = 'mendeley') AS mendeley_readers",
    "(SELECT s.percentile FROM score_context AS s WHERE s.response_id = o.response_id"
    " AND s.context = 'all') AS score_pct_all",
)

CREATE_VIEW = (
    "CREATE VIEW outputs_wide AS SELECT\n    "
    + ",\n    ".join(_SELECTED)
    + "\nFROM outputs AS o WHERE o.is_latest AND o.response_id > 0"
)
