"""`_dataset.json`, the dataset's manifest: its layout's version, the store it came from
(who, where, at which schema), the last response it includes (the watermark each run
starts after), each table's columns with their types and descriptions, its rows and
files, and the runs that made it.

It is written last, by replacing the file whole: what it lists is always on disk. A run
that cannot continue a dataset (another store, a schema that moved on, rows derived
below the watermark since) says why and that `--rebuild` starts over.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harvester.errors import DatasetError
from harvester.store.increments import StoreMark

MANIFEST = "_dataset.json"
LAYOUT = "altmetric-harvester dataset"
VERSION = 1  # of the layout: folders, files, tables and their kinds
REBUILD = "export --dataset DIR --rebuild starts it over"


@dataclass
class Manifest:
    store_identity: str
    store_path: str
    schema: str
    watermark: int  # the last response included (responses.id)
    outputs_through: int  # snapshots derived at or below it when it was written
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def next_run(self) -> int:
        return len(self.runs) + 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "layout": LAYOUT,
            "version": VERSION,
            "store": {"identity": self.store_identity, "path": self.store_path},
            "schema": self.schema,
            "watermark": {
                "response_id": self.watermark,
                "outputs_through": self.outputs_through,
            },
            "tables": self.tables,
            "runs": self.runs,
        }

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> Manifest:
        return cls(
            value["store"]["identity"],
            value["store"]["path"],
            value["schema"],
            int(value["watermark"]["response_id"]),
            int(value["watermark"]["outputs_through"]),
            value["tables"],
            value["runs"],
        )


def load(directory: Path) -> Manifest | None:
    """The manifest in `directory`, None if there is none; DatasetError if it is not
    one this version can continue."""
    path = directory / MANIFEST
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        value = json.loads(text)
        if value.get("layout") != LAYOUT:
            raise DatasetError(f"{path} is not an altmetric-harvester dataset's manifest")
        if value.get("version") != VERSION:
            raise DatasetError(
                f"{directory} is a dataset of layout version {value.get('version')}, and"
                f" this harvester writes version {VERSION}: {REBUILD}"
            )
        return Manifest.from_dict(value)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise DatasetError(f"{path} cannot be read as a dataset's manifest: {REBUILD}") from None


def check(manifest: Manifest, mark: StoreMark, directory: Path) -> None:
    """Refuse to continue a dataset from another store, or from this one where it
    changed in a way new files alone cannot follow."""
    if manifest.store_identity != mark.identity:
        raise DatasetError(
            f"{directory} was exported from another store ({manifest.store_path}):"
            f" choose another directory, or {REBUILD}"
        )
    if manifest.schema != mark.schema:
        raise DatasetError(
            f"the store's schema moved on since {directory} was written ({manifest.schema}"
            f" then, {mark.schema} now): {REBUILD}"
        )
    if mark.watermark < manifest.watermark:
        raise DatasetError(
            f"{directory} includes responses up to {manifest.watermark:,}, and the store holds"
            f" only {mark.watermark:,} (restored from an older copy?): {REBUILD}"
        )


def check_derived(manifest: Manifest, outputs_through: int, directory: Path) -> None:
    """Snapshots derived below the watermark since the last run (`harvester derive`
    after `store.derive = false`, or a rebuild under way) would be missed."""
    if outputs_through != manifest.outputs_through:
        raise DatasetError(
            f"the store's derived tables changed below the last response {directory}"
            f" includes ({manifest.outputs_through:,} snapshots derived then,"
            f" {outputs_through:,} now: `harvester derive` ran since?): {REBUILD}"
        )


def save(directory: Path, manifest: Manifest) -> None:
    """Replace the manifest whole: written aside, on the disk, then renamed over."""
    write_atomically(directory / MANIFEST, json.dumps(manifest.to_dict(), indent=1) + "\n")


def write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    partial.replace(path)
    descriptor = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
