"""The simulated dump (harvester.sim.dump): deterministic for a seed, the universe's
mix of sizes, identifiers where fetch answers carry them, one set per record."""

from __future__ import annotations

import statistics
import tarfile

import msgspec

from harvester.dump import DumpRecord, iter_records
from harvester.sim.dump import NDJSON_RECORDS, plan_members, write_dump


def test_the_same_seed_writes_the_same_bytes_and_another_seed_others(tmp_path):
    first = write_dump(tmp_path / "a.tar.gz", 300, layout="mixed", seed=4, not_objects=2)
    again = write_dump(tmp_path / "b.tar.gz", 300, layout="mixed", seed=4, not_objects=2)
    other = write_dump(tmp_path / "c.tar.gz", 300, layout="mixed", seed=5, not_objects=2)
    assert first.path.read_bytes() == again.path.read_bytes()
    assert first.path.read_bytes() != other.path.read_bytes()
    assert first.rejects == again.rejects


def test_records_carry_unique_identifiers_in_the_fetch_answers_shape(tmp_path):
    summary = write_dump(tmp_path / "d.tar.gz", 2000, layout="mixed", seed=9)
    records = [
        msgspec.json.decode(item.body)
        for item in iter_records(summary.path)
        if isinstance(item, DumpRecord)
    ]
    ids = [record["altmetric_id"] for record in records]
    assert all(isinstance(i, int) for i in ids) and len(set(ids)) == len(ids)
    citations = [record["citation"] for record in records]
    for key in ("doi", "pmid", "arxiv_id", "ads_id", "handle", "isbns", "uri"):
        values = [c[key] for c in citations if key in c]
        assert values, key
        flat = [v for value in values for v in (value if key == "isbns" else [value])]
        assert len(set(flat)) == len(flat), key
    assert all(isinstance(c["isbns"], list) for c in citations if "isbns" in c)
    assert 0.8 < sum("doi" in c for c in citations) / len(citations) < 0.95
    assert all(
        set(c) & {"doi", "pmid", "arxiv_id", "ads_id", "handle", "isbns", "uri"} for c in citations
    )
    tweeted = [r for r in records if isinstance(r.get("posts"), dict) and r["posts"].get("twitter")]
    assert all(r["posts"]["twitter"][0]["citation_ids"] == [r["altmetric_id"]] for r in tweeted)


def test_the_mix_of_sizes_has_the_universes_long_tail(tmp_path):
    sizes = [
        len(body)
        for member in plan_members(3000, layout="ndjson", seed=1)
        for _, body in member.records
    ]
    assert min(sizes) < 1500
    assert max(sizes) > 100_000
    assert 1_000 < statistics.median(sizes) < 10_000


def test_layouts_and_an_uncompressed_tar(tmp_path):
    summary = write_dump(tmp_path / "d.tar", 110, layout="ndjson", gzip=False)
    assert summary.members == 3 and summary.records == 110
    with tarfile.open(summary.path) as archive:  # a plain tar, with a README and a directory
        names = archive.getnames()
    assert names[:2] == ["altmetric-dump", "altmetric-dump/README.txt"]
    members = list(plan_members(110, layout="ndjson"))
    assert [len(m.records) for m in members] == [NDJSON_RECORDS, NDJSON_RECORDS, 8]
    per_file = list(plan_members(110, layout="per_file"))
    assert len(per_file) == 110 and all(m.name.endswith(".json") for m in per_file)
