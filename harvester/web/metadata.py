"""Datasette's metadata for a store: a title and description, every table, view and
column described (`store.descriptions`), the README's example queries as canned queries,
full-text search on `latest_outputs`, and the tables nobody browses hidden.

A pure function of the database's name: the same store always reads the same way.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from harvester.store.descriptions import TABLES

# The FTS5 table of latest titles (`harvester.web.search`), in a file of its own attached
# to every connection of the store as `search`; SQLite finds it by its bare name.
FTS_TABLE = "titles_fts"

# Shown under "hidden tables" and in SQL, not in the list: the migrations are
# sqlite-utils' bookkeeping of schema versions, and the dictionaries are the codec's
# binary internals (bodies are shown decompressed already).
HIDDEN_TABLES = frozenset(("_sqlite_migrations", "zstd_dictionaries"))


class CannedQuery(NamedTuple):
    name: str  # the URL: /<database>/<name>
    title: str
    sql: str  # as the README prints it (it runs as is in `harvester query`)
    # What Datasette asks for instead of a value the README writes in: (parameter,
    # the README's literal). The form's field is the parameter; `?journal=Nature`.
    params: tuple[tuple[str, str], ...] = ()
    description: str = ""

    @property
    def served_sql(self) -> str:
        """The SQL Datasette runs: the README's, each literal a named parameter."""
        sql = self.sql
        for name, literal in self.params:
            sql = sql.replace(literal, f":{name}")
        return sql


# The README's "Example queries", word for word but for line breaks (a test compares
# them), in its order.
README_QUERIES = (
    CannedQuery(
        "top-in-journal",
        "The 20 highest-scoring outputs in a journal",
        """SELECT doi, title, score FROM latest_outputs
WHERE journal = 'Nature' ORDER BY score DESC LIMIT 20""",
        params=(("journal", "'Nature'"),),
        description="journal: its name as latest_outputs gives it (Nature, PLoS ONE, eLife...)",
    ),
    CannedQuery(
        "mentions-per-month",
        "Mentions per source per month",
        """SELECT source, substr(posted_on, 1, 7) AS month, count(*) AS mentions
FROM mentions WHERE posted_on IS NOT NULL
GROUP BY source, month ORDER BY month, source""",
    ),
    CannedQuery(
        "score-rise",
        "Outputs whose score rose most between their first and latest snapshots",
        """SELECT o.doi, o.title, first.score AS was, o.score AS now, o.score - first.score AS rise
FROM latest_outputs AS o
JOIN outputs AS first ON first.response_id =
     (SELECT min(response_id) FROM outputs WHERE job_id = o.job_id)
WHERE o.response_id != first.response_id
ORDER BY rise DESC LIMIT 20""",
    ),
    CannedQuery(
        "readers-against-score",
        "Mendeley readers against score, per journal",
        """SELECT o.journal, count(*) AS outputs, avg(r.readers) AS mean_readers,
       avg(o.score) AS mean_score
FROM latest_outputs AS o JOIN readers AS r
  ON r.response_id = o.response_id AND r.reference_manager = 'mendeley'
GROUP BY o.journal ORDER BY outputs DESC""",
    ),
    CannedQuery(
        "top-percentile",
        "Outputs in the top 1% of everything Altmetric has seen",
        """SELECT o.doi, o.score, c.rank, c.sample_size FROM latest_outputs AS o
JOIN score_context AS c ON c.response_id = o.response_id AND c.context = 'all'
WHERE c.percentile >= 99 ORDER BY o.score DESC""",
    ),
    CannedQuery(
        "harvest-progress",
        "How far along is the harvest?",
        "SELECT state, count(*) FROM jobs GROUP BY state",
    ),
    CannedQuery(
        "failures",
        "Why did jobs fail?",
        "SELECT last_error, count(*) FROM jobs WHERE state = 'failed' GROUP BY 1 ORDER BY 2 DESC",
    ),
)

# One of ours: the answer as `harvester show` prints it, through the SQL function the
# plugin adds (`harvester.web.plugin`).
LATEST_ANSWER = CannedQuery(
    "latest-answer",
    "The latest answer stored for an identifier",
    """SELECT j.id_type, j.identifier, r.http_status, r.fetched_at,
       harvester_body(r.body_id) AS answer
FROM jobs AS j JOIN responses AS r ON r.job_id = j.id
WHERE j.identifier = :identifier ORDER BY r.id DESC LIMIT 1""",
)

DESCRIPTION = (
    "Answers of the Altmetric API harvested by altmetric-harvester, opened read-only."
    " Start with latest_outputs (one row per output; its search box searches titles,"
    " DOIs and journals), counts, readers, score_context and mentions; the raw answers"
    " are in responses and bodies, shown decompressed."
)


def _canned(query: CannedQuery) -> dict[str, Any]:
    canned: dict[str, Any] = {"title": query.title, "sql": query.served_sql}
    if query.params:
        canned["params"] = [name for name, _ in query.params]
    if query.description:
        canned["description"] = query.description
    return canned


def store_metadata(database: str, *, searchable: bool = True) -> dict[str, Any]:
    """Datasette's metadata for the store served as `database`; with `searchable`, the
    `latest_outputs` page searches the FTS table attached to its connections."""
    tables: dict[str, dict[str, Any]] = {}
    for name, described in TABLES.items():
        table: dict[str, Any] = {
            "description": described.description,
            "columns": dict(described.columns),
        }
        if name in HIDDEN_TABLES:
            table["hidden"] = True
        tables[name] = table
    tables["jobs"]["label_column"] = "identifier"  # a job_id shows as its identifier
    if searchable:
        tables["latest_outputs"].update(fts_table=FTS_TABLE, fts_pk="response_id")
    queries = {query.name: _canned(query) for query in (*README_QUERIES, LATEST_ANSWER)}
    return {
        "title": f"altmetric-harvester: {database}",
        "description": DESCRIPTION,
        "databases": {database: {"description": DESCRIPTION, "tables": tables, "queries": queries}},
    }
