"""Schema m006: tweets in a compact table of their own; `mentions` becomes a view.

Tweets are nine mentions in ten and all alike: an output, a tweet ID and a tweeter
ID (the fetch API gives a tweet no URL, title, date or author name). Stored as the
general `mentions` row (source text, the ID again as a text key, the tweeter ID as
text) one took ~86 bytes, more than the raw JSON it came from. In `tweets`, keyed by
the integers `(job_id, tweet_id)`, one takes about 30.

- `tweets`: every twitter post in the common shape (a tweet ID that reads as a whole
  number, a tweeter ID, citation IDs, nothing else). `author_id` has no declared
  type: the tweeter ID is stored as an integer when its text reads back the same from
  one, else as the text, so the view gives back the very same text. The snapshot
  columns are not declared foreign keys (the job is): SQLite would look up two
  responses per tweet stored, a third of the time of storing one, and the rows are
  written with their responses in one transaction, so they cannot point nowhere.
- `posts`: everything else, in the columns `mentions` had (the snapshot columns no
  longer declared foreign keys either). Its `url` is '' when it is the `post_key` too
  (most posts are keyed by their URL; a URL is 60 bytes), which the view puts back.
- In both, `last_response_id` is NULL while the first snapshot that carried a post is
  also the last (the view gives the first); most posts are seen once.
- `mentions`: a view over both with the columns documented since m005, so users'
  queries keep working.
- m005's index of mentions by (source, posted_on) is gone: no query of ours used it,
  the view's own example query (mentions per source and month) scans posts anyway,
  and it took 90 bytes a post and a random page write per post stored.

Rows move in ranges of jobs, with a progress display; the migration is one
transaction, so a store is either upgraded whole or not at all.
"""

from __future__ import annotations

from sqlite_utils import Database

from harvester.store.upgrade import UpgradeProgress

JOBS_PER_STEP = 20_000

TWEETS_TABLE = """
    CREATE TABLE tweets (
        job_id INTEGER NOT NULL REFERENCES jobs (id),
        tweet_id INTEGER NOT NULL,
        author_id,
        first_response_id INTEGER NOT NULL,
        last_response_id INTEGER,
        PRIMARY KEY (job_id, tweet_id)
    ) WITHOUT ROWID"""

POSTS_TABLE = """
    CREATE TABLE posts (
        job_id INTEGER NOT NULL REFERENCES jobs (id),
        source TEXT NOT NULL,
        post_key TEXT NOT NULL,
        url TEXT,
        title TEXT,
        posted_on TEXT,
        author_name TEXT,
        author_id TEXT,
        tweet_id INTEGER,
        first_response_id INTEGER NOT NULL,
        last_response_id INTEGER,
        PRIMARY KEY (job_id, source, post_key)
    ) WITHOUT ROWID"""

# The first SELECT reads no row (WHERE 0, decided once, before any scan): it is there
# because a view's columns take their declared types from its first SELECT, and
# only plain column references carry one. Exports (Parquet) and Datasette read them.
MENTIONS_VIEW = """
    CREATE VIEW mentions AS
        SELECT job_id, source, post_key, url, title, posted_on, author_name, author_id,
               tweet_id, first_response_id, last_response_id
        FROM posts WHERE 0
        UNION ALL
        SELECT job_id, 'twitter', CAST(tweet_id AS TEXT), NULL, NULL, NULL, NULL,
               CAST(author_id AS TEXT), tweet_id, first_response_id,
               coalesce(last_response_id, first_response_id)
        FROM tweets
        UNION ALL
        SELECT job_id, source, post_key, iif(url = '', post_key, url), title, posted_on,
               author_name, author_id, tweet_id, first_response_id,
               coalesce(last_response_id, first_response_id)
        FROM posts"""

# A general mention row that is a plain tweet: the key is the tweet ID itself, and it
# has no URL, title, date or author name (no tweet in the fetch API has).
_IS_TWEET = """
    source = 'twitter' AND tweet_id IS NOT NULL AND post_key = CAST(tweet_id AS TEXT)
    AND url IS NULL AND title IS NULL AND posted_on IS NULL AND author_name IS NULL"""


def compact_author(value: str) -> str:
    """SQL for the tweeter ID as `tweets` keeps it: an integer when its text reads back
    the same from one ("42"; not "042", " 42" or "1e3"), else the value as it is. Used
    by this migration; every insert applies the same rule in Python
    (`posts.stored_author`)."""
    return f"iif(CAST({value} AS INTEGER) || '' == {value}, CAST({value} AS INTEGER), {value})"


def migrate(db: Database) -> None:
    db.execute(TWEETS_TABLE)
    db.execute(POSTS_TABLE)
    _move_mentions(db)
    db.execute("DROP TABLE mentions")  # and its index by (source, posted_on): see above
    db.execute(MENTIONS_VIEW)


def _move_mentions(db: Database) -> None:
    last_job = db.execute("SELECT coalesce(max(job_id), 0) FROM mentions").fetchone()[0]
    with UpgradeProgress("mentions into tweets and posts", last_job) as progress:
        for first in range(1, last_job + 1, JOBS_PER_STEP):
            jobs = (first, first + JOBS_PER_STEP - 1)
            db.execute(
                f"""INSERT INTO tweets
                    SELECT job_id, tweet_id, {compact_author("author_id")}, first_response_id,
                           nullif(last_response_id, first_response_id)
                    FROM mentions WHERE job_id BETWEEN ? AND ? AND {_IS_TWEET}""",
                jobs,
            )
            db.execute(
                f"""INSERT INTO posts
                    SELECT job_id, source, post_key, iif(url = post_key, '', url), title,
                           posted_on, author_name, author_id, tweet_id, first_response_id,
                           nullif(last_response_id, first_response_id)
                    FROM mentions WHERE job_id BETWEEN ? AND ? AND NOT ({_IS_TWEET})""",
                jobs,
            )
            progress.advance(min(jobs[1], last_job) - first + 1)
