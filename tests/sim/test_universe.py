"""The simulator's universe: outputs that depend only on their identifier, sizes with
a long tail, tweets that match their counts, filters that never touch the cache."""

from __future__ import annotations

import hashlib
import os
import re
import statistics
import subprocess
import sys

from helpers import doi_with

from harvester.sim import universe


def test_sizes_have_a_long_tail():
    sizes = []
    for index in range(2000):
        output = universe.output_for("doi", f"10.9999/size.{index}")
        if output is not None:
            sizes.append(len(universe.render(output)))
    assert 0.9 * 2000 < len(sizes) < 2000  # about 5% have no attention data
    assert min(sizes) < 1_000
    assert max(sizes) > 100_000
    assert 1_000 < statistics.median(sizes) < 10_000  # most outputs are small
    assert sum(size > 100_000 for size in sizes) < 0.03 * len(sizes)  # the heavy ones are rare


def test_outputs_do_not_depend_on_the_process():
    script = (
        "import hashlib; from harvester.sim import universe as u; "
        "print(hashlib.sha256(u.render(u.output_for('doi', '10.5555/sim.0'))).hexdigest())"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    here = universe.render(universe.output_for("doi", "10.5555/sim.0"))  # type: ignore[arg-type]
    assert digests == {hashlib.sha256(here).hexdigest()}


def test_tweets_match_counts_and_ids_are_unique():
    seen: set[str] = set()
    retweets = 0
    for index in range(300):
        output = universe.output_for("pmid", str(30_000_000 + index))
        if output is None:
            continue
        ids = universe.tweet_ids(output)
        counted = output["counts"].get("twitter", {}).get("posts_count", 0)
        assert counted == len(ids)
        assert all(re.fullmatch(r"[1-9]\d{18}", tweet_id) for tweet_id in ids)
        assert seen.isdisjoint(ids)
        seen.update(ids)
        retweets += sum(universe.is_retweet(t) for t in output["posts"].get("twitter", []))
        for tweet in output["posts"].get("twitter", [])[:3]:
            assert set(tweet) == {"citation_ids", "author", "tweet_id"}
            assert tweet["citation_ids"] == [output["altmetric_id"]]
    assert len(seen) > 1000
    assert 0.5 < retweets / len(seen) < 0.7  # about 60% are retweets


def test_filters_never_change_the_cached_output():
    doi, output = doi_with(lambda o: len(o["posts"]) > 2)
    full = universe.render(output)
    universe.render(output, exclude_sources={"twitter"}, include_sections={"posts"})
    universe.render(output, include_sources={"news"}, original_tweets_only=True)
    assert universe.render(universe.output_for("doi", doi)) == full  # type: ignore[arg-type]
    assert universe.render(output) == full
