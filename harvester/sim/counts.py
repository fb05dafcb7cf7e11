"""The counts call's answer (``GET {base}/{type}/{identifier}``), derived from a universe output.

The free counts call answers a flat summary of the same output the fetch call details: no
posts, so no tweet IDs, and numbers under the provider's older names (``cited_by_msm_count``
for news, ``cited_by_feeds_count`` for blogs, ...). It is computed from the fetch-shaped output
rather than drawn on its own, so both calls agree on every number a client could compare:
altmetric_id, score and its history, readers, and per source the unique accounts.
"""

from datetime import datetime
from typing import Any

from harvester.sim import universe

Json = dict[str, Any]

# The fetch answer's source keys and the counts answer's names for them; a source not
# listed keeps its own name (weibo, f1000, linkedin, rh, wikipedia, bluesky).
CITED_BY_NAMES = {
    "twitter": "tweeters", "news": "msm", "blogs": "feeds", "facebook": "fbwalls",
    "reddit": "rdts", "video": "videos", "policy": "policies", "googleplus": "gplus",
    "peer_reviews": "peer_review_sites", "q&a": "qna", "forum": "forums", "pinterest": "pinners",
    "patent": "patents", "guideline": "guidelines", "podcast": "podcasts",
}  # fmt: skip
_CONTEXT_NAMES = {
    "all": "all",
    "this_journal": "journal",
    "similar_age_3m": "similar_age_3m",
    "similar_age_this_journal_3m": "similar_age_journal_3m",
}
_COHORT_CODES = {
    "Members of the public": "pub",
    "Scientists": "sci",
    "Practitioners": "doc",
    "Science communicators": "com",
}
# Identifier fields copied as they are; a handle becomes the list ``handles``.
_ID_FIELDS = tuple(f for f in universe.CITATION_KEYS.values() if f and f != "handle")
DETAILS_URL = "https://www.altmetric.com/details.php?citation_id={}"


def cited_by_name(source: str) -> str:
    """The ``cited_by_<name>_count`` field for a source key of the fetch answer."""
    return f"cited_by_{CITED_BY_NAMES.get(source, source)}_count"


def counts_answer(output: Json) -> Json:
    """The counts answer for a full universe output (``universe.output_for``), never mutated.

    Fields appear only where the output has what they summarise, as the API's do: no
    ``context``, ``cohorts`` or ``journal`` for a sparse output.
    """
    citation: Json = output["citation"]
    answer: Json = {"title": citation["title"], "altmetric_id": output["altmetric_id"]}
    answer.update(_identifiers(citation))
    answer.update(_metadata(citation))
    answer.update(_dates(output))
    answer["type"] = _output_type(citation)
    answer.update(_score(output["altmetric_score"]))
    answer.update(_cited_by(output["counts"]))
    answer.update(_readers(output["counts"]["readers"]))
    answer.update(_audience(output.get("demographics")))
    answer["images"] = dict(output["images"])
    answer["details_url"] = DETAILS_URL.format(output["altmetric_id"])
    return answer


def _identifiers(citation: Json) -> Json:
    found = {name: citation[name] for name in _ID_FIELDS if name in citation}
    if "isbns" in found:
        found["isbns"] = list(found["isbns"])
    if "handle" in citation:
        found["handles"] = [citation["handle"]]
    return found


def _metadata(citation: Json) -> Json:
    """Journal, its ISSNs and the authors, in fresh lists."""
    names = ("journal", "issns", "altmetric_jid", "authors")
    found = {name: citation[name] for name in names if name in citation}
    return {name: list(v) if isinstance(v, list) else v for name, v in found.items()}


def _unix_s(timestamp: str) -> int:
    return int(datetime.fromisoformat(timestamp).timestamp())


def _dates(output: Json) -> Json:
    """Unix seconds: published, first seen, and last mentioned (posts with a date)."""
    citation = output["citation"]
    added_on = _unix_s(citation["first_seen_on"])
    posted = [
        _unix_s(post["posted_on"])
        for items in output["posts"].values()
        for post in items
        if "posted_on" in post
    ]
    pubdate = _unix_s(citation["pubdate"])
    return {"pubdate": pubdate, "added_on": added_on, "last_updated": max([added_on, *posted])}


def _output_type(citation: Json) -> str:
    if "isbns" in citation:
        return "book"
    return "clinical_trial" if "nct_id" in citation else "article"


def _score(section: Json) -> Json:
    """Score, its history under the counts call's name, and the ranking contexts."""
    found: Json = {"score": section["score"], "history": dict(section["score_history"])}
    contexts = section.get("context_for_score")
    if contexts:
        found["context"] = {
            _CONTEXT_NAMES[name]: {
                "count": context["total_number_of_other_articles"],
                "mean": context["mean"],
                "rank": context["rank"],
                "pct": context["this_scored_higher_than_pct"],
                "higher_than": context["this_scored_higher_than"],
            }
            for name, context in contexts.items()
        }
    return found


def _cited_by(counts: Json) -> Json:
    """Unique accounts per source, then all posts and all accounts."""
    per_source = {
        source: part["unique_users_count"]
        for source, part in counts.items()
        if source not in ("readers", "total")
    }
    found: Json = {cited_by_name(source): users for source, users in per_source.items()}
    found["cited_by_posts_count"] = counts["total"]["posts_count"]
    found["cited_by_accounts_count"] = sum(per_source.values())
    return found


def _readers(readers: Json) -> Json:
    """The readers as the fetch answer has them (a count may be a string) and their sum."""
    total = sum(max(0, int(value)) for value in readers.values())
    return {"readers": dict(readers), "readers_count": total}


def _audience(demographics: Json | None) -> Json:
    """Twitter cohorts by the API's codes, and subjects from Mendeley's disciplines."""
    if not demographics:
        return {}
    users = demographics["users"]
    found: Json = {}
    cohorts = users["twitter"]["cohorts"]
    if cohorts:
        found["cohorts"] = {_COHORT_CODES[name]: n for name, n in cohorts.items()}
    disciplines = users["mendeley"]["by_discipline"]
    if disciplines:
        found["subjects"] = sorted(name.lower() for name in disciplines)
    return found
