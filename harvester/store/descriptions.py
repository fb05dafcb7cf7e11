"""What every table, view and column of the store holds, in the README's words, for
Datasette's metadata (`harvester.web.metadata`) and a Parquet dataset's manifest
(`harvester.dataset`), which say the same. A test opens a real harvested store and
fails for any table or column missing here, and for any described here that the store
lacks: a new column of the schema gets its description in the same change.
"""

from __future__ import annotations

from typing import NamedTuple

from harvester.store.wide import COUNT_COLUMNS, OUTPUT_COLUMNS


class Described(NamedTuple):
    """A table or view: what one row is, and what each column holds."""

    description: str
    columns: dict[str, str]


_JOB = "the output's job (jobs.id)"
_SNAPSHOT = "the snapshot: the answer it was derived from (responses.id)"
_FETCHED_AT = "when the answer arrived, ISO 8601 UTC; for a dump record, the dump's date"
_MODE = (
    "the tweet-quota mode it was fetched in: full, original_tweets or no_twitter; dump for a"
    " record of Altmetric's dump; counts for a counts-shaped answer (no mentions)"
)

_OUTPUT_COLUMNS = {
    "response_id": "primary key: " + _SNAPSHOT,
    "job_id": _JOB,
    "altmetric_id": "Altmetric's own ID of the output",
    "doi": "the DOI, lowercased",
    "pmid": "the PubMed ID",
    "arxiv_id": "the arXiv ID",
    "identifiers": (
        "JSON object of every identifier the answer gave (doi, pmid, pmc, arxiv_id, ads_id,"
        " handle(s), isbn(s), ssrn, repec_id, uri, urn, nct_id, dimensions_publication_id)"
    ),
    "title": "the output's title (citation.title, or the top level in older answers)",
    "journal": "the journal (citation.journal)",
    "pubdate": "publication date (citation.pubdate, or published_on)",
    "output_type": "article, book, chapter, dataset... (citation.type, or type)",
    "score": "the Altmetric score (altmetric_score.score, or score)",
    "score_history": "JSON of the score over 1d ... 1y and at (score_history, or history)",
    "posts_count": ("all posts (counts.total.posts_count; a counts answer's cited_by_posts_count)"),
    "first_seen_at": "when Altmetric first saw the output (first_seen_on, or added_on)",
    "fetched_at": "when the snapshot's answer arrived (as in responses)",
    "mode": "the snapshot's mode (as in responses)",
}

_POST_COLUMNS = {
    "job_id": _JOB,
    "source": "where the post is: twitter, news, blogs, reddit, bluesky, peer_reviews...",
    "post_key": "the post's tweet ID, else its URL, else sha1: of its JSON",
    "url": "the post's URL",
    "title": "the post's title",
    "posted_on": "when it was posted (tweets carry no date in the fetch API)",
    "author_name": "the author's name",
    "author_id": "the author's ID on the source (tweeter_id or id_on_source)",
    "tweet_id": "for tweets, the tweet ID as an integer (joins with tweet_ledger)",
    "first_response_id": "the first snapshot that carried the post (responses.id)",
    "last_response_id": (
        "the last snapshot that carried it (responses.id); a snapshot between may lack it"
    ),
}


def _wide_columns() -> dict[str, str]:
    """outputs_wide's columns: the latest snapshot's, then each source's counts."""
    kinds = {
        "posts_count": "posts from {} (NULL in a counts answer, which has none)",
        "unique_users_count": "accounts that posted from {}",
    }
    return {
        **{name: _OUTPUT_COLUMNS[name] for name in OUTPUT_COLUMNS},
        **{name: kinds[field].format(source) for name, source, field in COUNT_COLUMNS},
        "mendeley_readers": "Mendeley readers (readers, reference_manager mendeley)",
        "score_pct_all": "the score's percentile among all outputs (score_context 'all')",
    }


TABLES: dict[str, Described] = {
    "jobs": Described(
        "The queue: one row per (type, identifier) to harvest, with its state.",
        {
            "id": "integer primary key",
            "id_type": "doi, pmid, arxiv, ads, handle, isbn, ssrn, repec, uri, urn, nct_id, id...",
            "identifier": "the normalised identifier; unique with id_type",
            "state": "pending, in_progress, done, not_found or failed",
            "priority": "higher runs first (enqueue --priority)",
            "attempts": "fetches that counted (rate-limit and key refusals do not count)",
            "next_attempt_at": "not before this time (backoff for retries)",
            "lease_token": "the claim of the run working on it; NULL otherwise",
            "lease_expires_at": "when that claim lapses; NULL otherwise",
            "last_error": "the last failure, kept for failed jobs and for retries",
            "created_at": "when it was queued",
            "updated_at": "when it last changed",
            "needs_full": "1 for a job queued by backfill --twitter (runs in full mode only)",
        },
    ),
    "responses": Described(
        "Every answer stored, oldest first: 200 (a JSON object) or 404 (no attention data)."
        " A job's latest response has the highest id.",
        {
            "id": "integer primary key",
            "job_id": "the job it answers (jobs.id)",
            "http_status": "200, or 404 for no attention data",
            "sha256": "of the bytes as received",
            "size_bytes": "of the bytes as received",
            "request_params": (
                "JSON of the query parameters sent, never the key; for a dump record where"
                " it was in the dump; for a discovery result the citations call's query and page"
            ),
            "mode": _MODE,
            "endpoint": (
                "where the bytes came from: fetch, counts (the free call), citations (a"
                " result of a discovery page) or dump"
            ),
            "fetched_at": _FETCHED_AT,
            "body_id": "its bytes (bodies.id); identical answers share one body",
        },
    ),
    "bodies": Described(
        "Each distinct answer once, compressed; shown here decompressed as JSON."
        " SELECT harvester_body(body_id) FROM responses gives the text in SQL.",
        {
            "id": "integer primary key",
            "sha256": "of the uncompressed bytes; unique",
            "size_bytes": "of the uncompressed bytes",
            "codec": "zstd, or identity when compression would not help (a 404's Not Found)",
            "dictionary_id": "the zstd dictionary it was compressed with, or NULL",
            "data": (
                "the answer: stored compressed (every zstd frame carries a checksum),"
                " shown decompressed"
            ),
        },
    ),
    "zstd_dictionaries": Described(
        "zstd dictionaries trained on the store's own answers (after 1,000 bodies);"
        " only the codec needs them.",
        {
            "id": "integer primary key",
            "trained_at": "when it was trained",
            "sample_count": "bodies it was trained on",
            "size_bytes": "its size",
            "data": "the dictionary",
        },
    ),
    "tweet_charges": Described(
        "Writes that charged tweet IDs against the tweet quota, one row each; rows older"
        " than quota.window_s are pruned. tweet_ledger gives one row per ID.",
        {
            "id": "integer primary key",
            "charged_at_s": "when, in Unix seconds",
            "id_count": "how many tweet IDs it charged",
            "tweet_ids": "the IDs it charged, sorted, as 8-byte big-endian integers",
        },
    ),
    "tweet_ledger": Described(
        "One row per tweet ID charged against the quota within the window (a view over"
        " tweet_charges): count(*) is the window's usage.",
        {
            "tweet_id": "the tweet ID",
            "charged_at_s": "when it was charged, in Unix seconds",
        },
    ),
    "daemon_state": Described(
        "What the running daemon says of itself (heartbeat every 5 s), which status reads,"
        " and where an import or a discovery stopped.",
        {
            "key": (
                "heartbeat, quota, learned_rate, schedule, store_home (the name the store is"
                " opened by), import_position or discover_position:<hash of the query>"
            ),
            "value": "JSON: the figures or position under that key",
            "updated_at": "when it was last written",
        },
    ),
    "aliases": Described(
        "Every identifier an answer names its output by, normalised, with the output's job:"
        " enqueue and import find an output under any of them.",
        {
            "id_type": "doi, pmid, arxiv, ads, handle, isbn, uri... (id: the Altmetric ID)",
            "identifier": "the normalised identifier",
            "job_id": _JOB,
            "shared": "1 when answers of different outputs carry it (a book's ISBN, which its"
            " chapters carry too): it then finds none of them, and job_id is the first's",
        },
    ),
    "outputs": Described(
        "One row per snapshot of an output: re-fetching an output adds a row (a history).",
        {**_OUTPUT_COLUMNS, "is_latest": "1 for the output's latest snapshot, else 0"},
    ),
    "latest_outputs": Described(
        "The latest snapshot of each output (a view over outputs): what most questions are"
        " about. Search searches titles, DOIs and journals.",
        _OUTPUT_COLUMNS,
    ),
    "outputs_wide": Described(
        "One row per output (its latest snapshot) with a column per common source's posts"
        " and accounts, the Mendeley readers and the score's percentile, like rAltmetric's"
        " altmetric_data() (a view).",
        _wide_columns(),
    ),
    "counts": Described(
        "Posts and accounts per snapshot and source. A counts answer gives accounts only"
        " (posts_count NULL).",
        {
            "response_id": _SNAPSHOT,
            "job_id": _JOB,
            "source": "twitter, news, blogs, facebook, reddit, peer_reviews, bluesky...",
            "posts_count": "posts from that source",
            "unique_users_count": "accounts that posted",
        },
    ),
    "readers": Described(
        "Readers per snapshot and reference manager.",
        {
            "response_id": _SNAPSHOT,
            "job_id": _JOB,
            "reference_manager": "mendeley, citeulike, connotea...",
            "readers": "readers there",
        },
    ),
    "score_context": Described(
        "How the score ranks, per snapshot and context.",
        {
            "response_id": _SNAPSHOT,
            "job_id": _JOB,
            "context": "all, this_journal, similar_age_3m or similar_age_this_journal_3m",
            "rank": "the output's rank in that context",
            "percentile": "its percentile there",
            "higher_than": "outputs it scored higher than",
            "mean": "mean score in that context",
            "median": "median score in that context",
            "sample_size": "outputs in that context",
            "rank_type": "exact or approximate",
        },
    ),
    "mentions": Described(
        "One row per output and post, however many snapshots carried it (a view over"
        " tweets and posts).",
        _POST_COLUMNS,
    ),
    "tweets": Described(
        "The plain tweets behind mentions (nine posts in ten): query it directly when"
        " speed matters.",
        {
            "job_id": _JOB,
            "tweet_id": "the tweet ID",
            "author_id": "the tweeter's ID (an integer when it reads back the same)",
            "first_response_id": _POST_COLUMNS["first_response_id"],
            "last_response_id": ("the last snapshot that carried it; NULL while that is the first"),
        },
    ),
    "posts": Described(
        "Every other post behind mentions (news, blogs, reddit, quoted tweets...).",
        {
            **_POST_COLUMNS,
            "url": "the post's URL; '' when it is the post_key too",
            "last_response_id": "the last snapshot that carried it; NULL while that is the first",
        },
    ),
    "_sqlite_migrations": Described(
        "The schema versions applied to this store (sqlite-utils migrations).",
        {
            "id": "integer primary key",
            "migration_set": "altmetric-harvester",
            "name": "the migration (m001_jobs_and_responses...)",
            "applied_at": "when it ran",
        },
    ),
}
