"""A realistic Altmetric JSON database dump, for tests (small) and benchmarks (big).

The real dump is a `.tar.gz` of a directory tree of JSON files holding fetch-shaped
records; both file layouts are seen: files named by a running offset in steps of 51
(`3700016.txt.json.json`) holding 51 newline-delimited records, and one file per
output (here a tenth of them pretty-printed). Records are the universe's outputs,
rendered as the simulator answers a fetch, with the dump's quirks on top (`quirks`):
`posts`/`demographics` written as `[]` when empty (and for some others), numbers as
strings or -1, mojibake (UTF-8 read as Latin-1 and written again), keys that come and
go (`images` missing, `history` for `score_history`, `context`, `selected_quotes`,
new sources, tweets with `followers` and `geo`).

Speed: a pool of rendered templates is built once; each record is a template with its
identifiers spliced in (two byte replacements), so 200,000 records take seconds plus
the compression. Identifiers: `altmetric_id` at the top level and the others in
`citation` (`doi`, `pmid`, `arxiv_id`, `ads_id`, `handle`, `isbns` as a list, `uri`),
where the universe's fetch answers carry them; every record has a unique set. They are
drawn afresh: the universe would answer another output (another altmetric_id) for the
same DOI, and no record shares an altmetric_id with any output of the universe.
"""

from __future__ import annotations

import gzip as gzip_module
import io
import random
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec

from harvester.sim import universe

Layout = Literal["ndjson", "per_file", "mixed"]
NDJSON_RECORDS = 51  # records per newline-delimited file, as in the public sample
OFFSET_START = 17  # so that the sample's 3700016 is one of the running offsets
FILES_PER_DIRECTORY = 1000
ROOT = "altmetric-dump"
MTIME_S = 1_717_200_000  # 2024-06-01: the dump's first member; each next one a second later
TEMPLATES = 400
ALTMETRIC_ID_BASE = 20_000_000_000  # above the universe's (10**8 to 10**8 + 10**10): never shared
PRETTY_FRACTION = 0.1  # of one-per-file records
NOT_OBJECTS = (
    b"[1, 2, 3]",
    b'"a string"',
    b"null",
    b"garbage, not JSON",
    b'{"altmetric_id": 1, "cit',
)

_AID = b"\x00aid\x00"  # placeholders: a NUL byte never appears raw in JSON text
_IDS = b"\x00ids\x00"
_CITATION_FIELDS = frozenset(universe.CITATION_KEYS.values()) - {""}


@dataclass(frozen=True)
class PlannedMember:
    """One file of the dump: its bytes, and what a reader must find in it: each record's
    (line, exact bytes) and the lines that are not JSON objects."""

    name: str
    mtime_s: int
    data: bytes
    records: tuple[tuple[int, bytes], ...]
    rejects: tuple[int, ...] = ()


@dataclass(frozen=True)
class DumpSummary:
    """What `write_dump` wrote. A reader must yield `records` records and report the
    `rejects` (member, line) as not objects; with `truncated_member`, at least the
    `records_before_cut` records of the members before it, then the truncation."""

    path: Path
    records: int
    members: int
    rejects: tuple[tuple[str, int], ...]
    truncated_member: str | None
    records_before_cut: int
    size_bytes: int


def write_dump(
    path: str | Path,
    count: int,
    *,
    layout: Layout = "ndjson",
    seed: int = 0,
    quirks: bool = True,
    gzip: bool = True,
    not_objects: int = 0,
    truncate: bool = False,
) -> DumpSummary:
    """Write a dump of `count` records (plus `not_objects` records that are not JSON
    objects) as a `.tar.gz` (or a `.tar` with gzip=False); deterministic for a seed.
    With `truncate`, the file is cut inside its last member's data."""
    target = Path(path)
    members = plan_members(count, layout=layout, seed=seed, quirks=quirks, not_objects=not_objects)
    rejects: list[tuple[str, int]] = []
    written = records = before_cut = 0
    last: PlannedMember | None = None
    with target.open("wb") as raw, _Archive(raw, compress=gzip) as archive:
        archive.add_directory(ROOT)
        archive.add(f"{ROOT}/README.txt", MTIME_S, b"Altmetric data dump (simulated)\n")
        for member in members:
            if last is not None:
                archive.add(last.name, last.mtime_s, last.data)
                records += len(last.records)
            rejects.extend((member.name, line) for line in member.rejects)
            written, last = written + 1, member
        cut_from = archive.position()
        before_cut = records
        if last is not None:
            archive.add(last.name, last.mtime_s, last.data)
            records += len(last.records)
    if truncate and last is not None:
        _cut(target, cut_from, compressed=gzip, data_bytes=len(last.data))
    return DumpSummary(
        path=target,
        records=records,
        members=written,
        rejects=tuple(rejects),
        truncated_member=last.name if truncate and last is not None else None,
        records_before_cut=before_cut if truncate else records,
        size_bytes=target.stat().st_size,
    )


class _Archive:
    """A tar archive written into `raw`, through gzip or not, that can say where in
    `raw` its next member will start."""

    def __init__(self, raw: io.BufferedWriter, *, compress: bool) -> None:
        self.raw = raw
        self.gz: gzip_module.GzipFile | None = None
        if compress:  # no name, no time in the gzip header: the same bytes for a seed
            self.gz = gzip_module.GzipFile("", "wb", compresslevel=1, fileobj=raw, mtime=0)
        target = self.gz or raw  # both closed by __exit__
        self.tar = tarfile.open(fileobj=target, mode="w", format=tarfile.GNU_FORMAT)  # noqa: SIM115

    def __enter__(self) -> _Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.tar.close()
        if self.gz is not None:
            self.gz.close()

    def add(self, name: str, mtime_s: int, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), mtime_s, 0o644
        self.tar.addfile(info, io.BytesIO(data))
        self.tar.members.clear()  # type: ignore[attr-defined]  # else it keeps them all

    def add_directory(self, name: str) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.mtime, info.mode = tarfile.DIRTYPE, MTIME_S, 0o755
        self.tar.addfile(info)

    def position(self) -> int:
        """Where the next member starts in the file (gzip flushed to a byte boundary)."""
        if self.gz is not None:
            self.gz.flush()
        return self.raw.tell()


def _cut(target: Path, cut_from: int, *, compressed: bool, data_bytes: int) -> None:
    """Cut the file inside the last member's data, which starts at `cut_from`: halfway
    through what follows in a .tar.gz (the end blocks compress to a few bytes), past
    the header and half the data in a .tar (whose end is padded to 10 KB)."""
    size = target.stat().st_size
    keep = cut_from + (size - cut_from) // 2 if compressed else cut_from + 512 + data_bytes // 2
    with target.open("r+b") as raw:
        raw.truncate(keep)


def plan_members(
    count: int,
    *,
    layout: Layout = "ndjson",
    seed: int = 0,
    quirks: bool = True,
    not_objects: int = 0,
) -> Iterator[PlannedMember]:
    """The dump's JSON files in archive order, built lazily: `write_dump` writes them,
    and a test reads them to know what a reader must find."""
    rng = random.Random(seed)
    templates = _templates(seed, quirks)
    bad_at = set(rng.sample(range(count + not_objects), not_objects)) if not_objects else set()
    bodies = _bodies(rng, templates, count + not_objects, bad_at, seed)
    chunk_index = 0
    offset = OFFSET_START
    while chunk := _take(bodies, NDJSON_RECORDS):
        per_file = layout == "per_file" or (layout == "mixed" and rng.random() < 0.5)
        directory = f"{ROOT}/part-{chunk_index // FILES_PER_DIRECTORY:05d}"
        mtime_s = MTIME_S + chunk_index
        if per_file:
            for position, body in enumerate(chunk):
                pretty = rng.random() < PRETTY_FRACTION
                yield _single(f"{directory}/{offset + position}.json", mtime_s, body, pretty)
        else:
            yield _delimited(f"{directory}/{offset}.txt.json.json", mtime_s, chunk)
        chunk_index += 1
        offset += NDJSON_RECORDS


Body = tuple[bytes, bool]  # (bytes, is a JSON object)


def _take(bodies: Iterator[Body], size: int) -> list[Body]:
    return [body for _, body in zip(range(size), bodies, strict=False)]


def _single(name: str, mtime_s: int, body: Body, pretty: bool) -> PlannedMember:
    """A file of one record: compact as rendered, or pretty-printed ending in a newline."""
    data, is_object = body
    if pretty and is_object:
        data = msgspec.json.format(data, indent=2) + b"\n"
    if not is_object:
        return PlannedMember(name, mtime_s, data, (), (1,))
    return PlannedMember(name, mtime_s, data, ((1, data),))


def _delimited(name: str, mtime_s: int, chunk: list[Body]) -> PlannedMember:
    """A newline-delimited file; one of a single line is that record, newline and all."""
    data = b"".join(body + b"\n" for body, _ in chunk)
    records: tuple[tuple[int, bytes], ...]
    if len(chunk) == 1:
        records = ((1, data),) if chunk[0][1] else ()
        return PlannedMember(name, mtime_s, data, records, () if chunk[0][1] else (1,))
    records = tuple((line, body) for line, (body, ok) in enumerate(chunk, 1) if ok)
    rejects = tuple(line for line, (_, ok) in enumerate(chunk, 1) if not ok)
    return PlannedMember(name, mtime_s, data, records, rejects)


def _bodies(
    rng: random.Random, templates: list[bytes], total: int, bad_at: set[int], seed: int
) -> Iterator[Body]:
    """Each record's bytes: a template with its identifiers spliced in, or at the
    positions in `bad_at`, something that is not a JSON object."""
    record = 0
    for index in range(total):
        if index in bad_at:
            yield NOT_OBJECTS[index % len(NOT_OBJECTS)], False
            continue
        template = templates[int(rng.random() * len(templates))]
        aid, ids = _identifiers(rng, seed, record)
        yield template.replace(_AID, aid).replace(_IDS, ids), True
        record += 1


def _identifiers(rng: random.Random, seed: int, record: int) -> tuple[bytes, bytes]:
    """The record's altmetric_id and its citation's identifiers (a JSON fragment ending
    in a comma): a DOI for most, a PubMed ID for many, a few others; a URI when none."""
    ids: dict[str, object] = {}
    if rng.random() < 0.88:
        ids["doi"] = f"10.5555/dump.{seed}.{record}"
    if rng.random() < 0.45:
        ids["pmid"] = str(30_000_000 + record)
    if rng.random() < 0.06:
        month = f"{23 + record // 1_200_000 % 3}{record // 100_000 % 12 + 1:02d}"
        ids["arxiv_id"] = f"{month}.{record % 100_000:05d}"
    if rng.random() < 0.04:
        ids["ads_id"] = f"{2000 + record % 25}DumpS{record:010d}"
    if rng.random() < 0.03:
        ids["handle"] = f"20.500.{12000 + seed % 1000}/{record}"
    if rng.random() < 0.02:
        ids["isbns"] = [_isbn13(f"978{record % 10**9:09d}")]
    if not ids:
        ids["uri"] = f"https://repository.example.org/dump/{seed}/{record}"
    altmetric_id = ALTMETRIC_ID_BASE + seed * 100_000_000 + record
    return str(altmetric_id).encode(), msgspec.json.encode(ids)[1:-1] + b","


def _isbn13(first12: str) -> str:
    """An ISBN-13 with its check digit (weights 1, 3, 1, 3, ...)."""
    total = sum(int(digit) * (3 if i % 2 else 1) for i, digit in enumerate(first12))
    return first12 + str(-total % 10)


def _templates(seed: int, quirks: bool) -> list[bytes]:
    """Rendered outputs of the universe's mix, quirks applied to some, with placeholders
    where each record's altmetric_id and identifiers go."""
    rng = random.Random(f"templates {seed}")
    templates: list[bytes] = []
    index = 0
    while len(templates) < TEMPLATES:
        output = universe.output_for("doi", f"10.5555/template.{seed}.{index}")
        index += 1
        if output is None:
            continue
        if quirks:
            output = _with_quirks(rng, output)
        templates.append(_template(output))
    return templates


def _template(output: universe.Json) -> bytes:
    """Render an output with the placeholders in place of its identifiers."""
    aid = output["altmetric_id"]
    citation = {k: v for k, v in output["citation"].items() if k not in _CITATION_FIELDS}
    body = universe.render({**output, "citation": {"\x01ids": 0, **citation}})
    body = body.replace(b'"\\u0001ids":0,', _IDS)
    body = body.replace(b'"altmetric_id":%d' % aid, b'"altmetric_id":' + _AID)
    return body.replace(b'"citation_ids":[%d]' % aid, b'"citation_ids":[' + _AID + b"]")


def _with_quirks(rng: random.Random, output: universe.Json) -> universe.Json:
    """Some of the dump's quirks, each on its share of outputs (the dict is a copy)."""
    if "demographics" not in output or rng.random() < 0.05:
        output["demographics"] = []
    if rng.random() < 0.08:
        output["posts"] = []
    readers = output["counts"]["readers"]
    if rng.random() < 0.05:
        readers["mendeley"] = str(readers["mendeley"])
    if rng.random() < 0.05:
        readers["citeulike"] = -1
    if rng.random() < 0.06:
        output["citation"]["title"] = _mojibake(output["citation"]["title"] + " \u2013 Müller café")
    if rng.random() < 0.1:
        del output["images"]
    if rng.random() < 0.05:
        section = output["altmetric_score"]
        section["history"] = section.pop("score_history")
    if rng.random() < 0.05:
        output["context"] = {"all": {"count": rng.randint(1, 10**7)}}
    if rng.random() < 0.05:
        output["selected_quotes"] = ["an exciting result", "Ørsted would be proud"]
    _new_source_and_tweet_fields(rng, output)
    return output


def _new_source_and_tweet_fields(rng: random.Random, output: universe.Json) -> None:
    """Bluesky posts on some outputs; tweets with `followers` and `geo` on others."""
    posts = output["posts"]
    if not isinstance(posts, dict):
        return
    if rng.random() < 0.05:
        output["posts"] = posts = {**posts, "bluesky": [{"url": "https://bsky.app/p/1"}]}
        output["counts"]["bluesky"] = {"unique_users_count": 1, "posts_count": 1}
    if rng.random() < 0.1 and "twitter" in posts:
        geo = {"lt": 51.5, "ln": -0.12, "country": "GB"}
        tweets = [
            {**tweet, "followers": 10 + i, "geo": geo} for i, tweet in enumerate(posts["twitter"])
        ]
        output["posts"] = {**posts, "twitter": tweets}


def _mojibake(text: str) -> str:
    """UTF-8 read as Latin-1: what a wrongly decoded export turns "é" into ("Ã©")."""
    return text.encode("utf-8").decode("latin-1")
