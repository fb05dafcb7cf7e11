"""What a reload (SIGHUP) may change while the daemon runs.

One table, `RELOAD`, says it for every setting, and both sides read it: `reloaded`
builds the settings the pipeline then applies (`Harvest.apply_settings`), and
`changes` lists, for the `harvest.reloaded` event, what was applied and which
changed keys wait for a restart. An entry names a section (`rate`) or one key of it
(`workers.lease_s`); a key's own entry wins over its section's, and a section the
table does not name needs a restart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from enum import StrEnum
from typing import Any

from harvester.config import Settings, validate_settings
from harvester.errors import ConfigError


class Reload(StrEnum):
    IN_FLIGHT = "in flight"  # applied at once, in-flight work untouched
    RESTART = "restart"  # keeps its running value until the daemon restarts


RELOAD: Mapping[str, Reload] = {
    "api": Reload.RESTART,  # the client (base URL, key, timeout, TLS trust) is built once
    "api.proxy": Reload.IN_FLIGHT,  # chosen per request: in-flight ones keep theirs
    "api.max_answer_bytes": Reload.IN_FLIGHT,  # read per answer
    "rate": Reload.IN_FLIGHT,
    "workers": Reload.IN_FLIGHT,
    "workers.lease_s": Reload.RESTART,  # the feeder leases and sweeps on it from start
    "store": Reload.RESTART,  # the store is opened once
    "filters": Reload.IN_FLIGHT,
    "quota": Reload.IN_FLIGHT,
    "metrics": Reload.RESTART,  # the endpoint is bound once
    "log": Reload.RESTART,  # logging is configured once, the progress display chosen once
    "schedule": Reload.IN_FLIGHT,  # periods and the discovery's query, from the next run on
}


def applies_in_flight(dotted_key: str) -> bool:
    """Whether a reload applies `section.key` at once (else it needs a restart)."""
    section = dotted_key.partition(".")[0]
    return RELOAD.get(dotted_key, RELOAD.get(section, Reload.RESTART)) is Reload.IN_FLIGHT


def reloaded(running: Settings, new: Settings) -> Settings:
    """The settings to run on after a reload: `new` where the table allows a change in
    flight, the `running` values everywhere else.

    `new` was checked as it was read, but the mix is checked again: a key applied in
    flight must also agree with the running value of one that waits for a restart (the
    filters of a new file with the counts call still running, say). A ConfigError
    names the clash; the caller keeps the old settings."""
    sections = {}
    for name, before, after in _sections(running, new):
        kept = {key: value for key, value in _fields(after) if applies_in_flight(f"{name}.{key}")}
        sections[name] = dataclasses.replace(before, **kept)
    merged = dataclasses.replace(running, **sections)
    try:
        validate_settings(merged)
    except ConfigError as error:
        raise ConfigError(
            f"{error} (as it would run: keys that need a restart keep their running values)"
        ) from None
    return merged


def changes(running: Settings, new: Settings) -> tuple[dict[str, Any], list[str]]:
    """What a reload changes: ({key: new value} applied in flight, [keys that changed
    but need a restart]), compared key by key."""
    applied: dict[str, Any] = {}
    restart: list[str] = []
    for name, before, after in _sections(running, new):
        old_values = dataclasses.asdict(before)
        for key, value in dataclasses.asdict(after).items():
            dotted = f"{name}.{key}"
            if old_values[key] == value:
                continue
            if applies_in_flight(dotted):
                applied[dotted] = value
            else:
                restart.append(dotted)
    return applied, restart


def _sections(running: Settings, new: Settings) -> Iterator[tuple[str, Any, Any]]:
    """(name, running section, new section) for each section of the settings."""
    for field in dataclasses.fields(running):
        before = getattr(running, field.name)
        if dataclasses.is_dataclass(before):
            yield field.name, before, getattr(new, field.name)


def _fields(section: Any) -> Iterator[tuple[str, Any]]:
    for field in dataclasses.fields(section):
        yield field.name, getattr(section, field.name)
