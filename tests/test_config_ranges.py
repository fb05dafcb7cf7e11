"""Every numeric setting has a range a daemon can run: the whole matrix in process
(each bound, just past each bound, NaN, infinities, booleans), a few through the real
`harvester config` and `harvester run`, and the example config that states them."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, dois, harvester, queue, rows

from harvester.config import Settings, load_settings, settings_from_mapping
from harvester.config_ranges import (
    AGE_RANGES,
    LOWEST_RATE_PER_S,
    RANGES,
    AgeRange,
    Range,
    number,
)
from harvester.errors import ConfigError
from harvester.harvest.ratelimit import FLOOR_PER_S
from harvester.scheduling import parse_age

EXAMPLE = ROOT / "harvester" / "data" / "harvester.example.toml"

# What another key must be for a bound of this one to be valid on its own.
COMPANIONS: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    ("api.timeout_s", "high"): {"workers": {"lease_s": 86_400}},
    ("workers.lease_s", "low"): {"api": {"timeout_s": 0.5}},
    ("quota.original_tweets_at", "high"): {"quota": {"no_twitter_at": 1}},
    ("quota.no_twitter_at", "low"): {"quota": {"original_tweets_at": 1e-9}},
}


def numeric_fields() -> dict[str, type]:
    """Every numeric setting ("section.key": int or float), read off the dataclasses."""
    found = {}
    defaults = Settings()
    for section in dataclasses.fields(defaults):
        value = getattr(defaults, section.name)
        if not dataclasses.is_dataclass(value):
            continue
        for item in dataclasses.fields(value):
            default = getattr(value, item.name)
            if isinstance(default, int | float) and not isinstance(default, bool):
                found[f"{section.name}.{item.name}"] = type(default)
    return found


def document(key: str, value: Any, companions: dict[str, dict[str, Any]] | None = None) -> dict:
    section, name = key.split(".")
    built: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (companions or {}).items()}
    built.setdefault(section, {})[name] = value
    return built


def refused(key: str, value: Any, **companions: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as raised:
        settings_from_mapping(document(key, value, companions))
    return str(raised.value)


def test_every_numeric_setting_has_a_range_and_every_range_a_setting() -> None:
    assert set(numeric_fields()) == set(RANGES)
    schedule_ages = {
        f"schedule.{item.name}"
        for item in dataclasses.fields(Settings().schedule)
        if item.name.endswith(("_every", "_older_than"))
    }
    assert schedule_ages == set(AGE_RANGES)


def test_the_defaults_lie_inside_their_ranges() -> None:
    defaults = settings_from_mapping({})
    for key, allowed in RANGES.items():
        section, name = key.split(".")
        value = getattr(getattr(defaults, section), name)
        assert value is None or allowed.holds(value), key


def test_the_message_names_the_key_its_range_and_the_value() -> None:
    assert refused("workers.lease_s", 1e300) == (
        "workers.lease_s must be between 1 and 86400 (seconds), not 1e+300"
    )
    assert refused("rate.requests_per_s", 1e-300) == (
        'rate.requests_per_s must be between 0.01 and 1000000 (requests a second) or "auto",'
        " not 1e-300"
    )
    assert refused("rate.decrease_factor", 1.0) == (
        "rate.decrease_factor must be more than 0 and less than 1 (a factor), not 1"
    )
    assert refused("workers.concurrency", 5000) == (
        "workers.concurrency must be between 1 and 1024 (requests in flight), not 5000"
    )


def bound_cases() -> list[tuple[str, str, float, bool]]:
    """(key, which bound, value, accepted) for both bounds of every range, and a value
    just past each."""
    cases = []
    for key, allowed in RANGES.items():
        whole = numeric_fields()[key] is int
        below = allowed.low - 1 if whole else allowed.low * (1 - 1e-6) or -1e-9
        above = allowed.high + 1 if whole else allowed.high * (1 + 1e-6)
        for side, bound, is_open, past in (
            ("low", allowed.low, allowed.low_open, below),
            ("high", allowed.high, allowed.high_open, above),
        ):
            cases.append((key, side, bound, not is_open))
            cases.append((key, side, past, False))
    return cases


@pytest.mark.parametrize(
    ("key", "side", "value", "accepted"),
    bound_cases(),
    ids=lambda v: number(v) if isinstance(v, float) else str(v),
)
def test_each_bound_and_just_past_it(key: str, side: str, value: float, accepted: bool) -> None:
    whole = numeric_fields()[key] is int
    raw: float = int(value) if whole else float(value)
    companions = COMPANIONS.get((key, side), {})
    if accepted:
        settings = settings_from_mapping(document(key, raw, companions))
        section, name = key.split(".")
        assert getattr(getattr(settings, section), name) == raw
    else:
        with pytest.raises(ConfigError) as raised:
            settings_from_mapping(document(key, raw, companions))
        message = str(raised.value)
        assert message.startswith(f"{key} must be "), message
        assert RANGES[key].bounds() in message and "\n" not in message


@pytest.mark.parametrize("key", sorted(RANGES))
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, True, False])
def test_nan_infinity_and_booleans_are_refused(key: str, value: Any) -> None:
    message = refused(key, value)
    assert message.startswith(f"{key} must be "), message
    assert message.endswith(f", not {value}"), message


def test_a_range_can_be_open_at_either_end() -> None:
    share = Range(0, 1, "a share", low_open=True)
    assert not share.holds(0) and share.holds(1e-12) and share.holds(1) and not share.holds(1.1)
    assert share.interval() == "(0, 1]"
    assert AgeRange(0, 86_400, "", low_open=True).bounds() == "longer than 0s and at most 1d"


@pytest.mark.parametrize(
    ("key", "text", "message"),
    [
        (
            "discover_every",
            "0.5s",
            "schedule.discover_every must be between 1s and 365d, not '0.5s'",
        ),
        (
            "discover_every",
            "366d",
            "schedule.discover_every must be between 1s and 365d, not '366d'",
        ),
        ("refresh_every", "53w", "schedule.refresh_every must be between 1s and 365d, not '53w'"),
        (
            "refresh_older_than",
            "0s",
            "schedule.refresh_older_than must be longer than 0s and at most 3650d, not '0s'",
        ),
        (
            "refresh_older_than",
            "3651d",
            "schedule.refresh_older_than must be longer than 0s and at most 3650d, not '3651d'",
        ),
        ("refresh_older_than", "9" * 400 + "d", "is longer than 36500d (100 years)"),
    ],
)
def test_schedule_ages_have_ranges(key: str, text: str, message: str) -> None:
    schedule = {"refresh_every": "1d", "refresh_older_than": "30d", key: text}
    with pytest.raises(ConfigError) as raised:
        settings_from_mapping({"schedule": schedule})
    assert message in str(raised.value)


def test_schedule_ages_at_their_bounds_are_accepted() -> None:
    settings = settings_from_mapping(
        {
            "schedule": {
                "discover_every": "1s",
                "refresh_every": "365d",
                "refresh_older_than": "3650d",
            }
        }
    )
    assert settings.schedule.discover_every_s == 1
    assert settings.schedule.refresh_older_than_s == 3650 * 86_400


def test_an_age_has_a_longest_whatever_it_is_for() -> None:
    assert parse_age("36500d") == 36_500 * 86_400
    for text in ("36501d", "9" * 400 + "w"):
        with pytest.raises(ValueError, match="longer than 36500d"):
            parse_age(text)


def test_the_lowest_rate_is_the_rate_controllers_floor() -> None:
    """A slower configured rate would be raised to the floor without a word."""
    assert LOWEST_RATE_PER_S == FLOOR_PER_S == RANGES["rate.requests_per_s"].low


def test_the_example_config_states_every_range() -> None:
    text = EXAMPLE.read_text()
    for key, allowed in {**RANGES, **AGE_RANGES}.items():
        section, name = key.split(".")
        body = text.split(f"[{section}]\n", 1)[1].split("\n[", 1)[0]
        lines = body.splitlines()
        starts = [n for n, line in enumerate(lines) if line.startswith(f"{name} =")]
        assert starts, f"the example config has no line for {key}"
        start = starts[0]
        entry = lines[start]
        for line in lines[start + 1 :]:  # its comment's continuation lines
            if not line.startswith(" "):
                break
            entry += line
        assert allowed.interval() in entry, (key, allowed.interval(), entry)
    load_settings(EXAMPLE)


# -- through the command line, as users meet it -----------------------------------------


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[workers]\nlease_s = 1e300\n", "workers.lease_s must be between 1 and 86400 (seconds)"),
        ("[rate]\nrequests_per_s = 1e-300\n", "rate.requests_per_s must be between 0.01 and"),
        ("[quota]\nwindow_s = nan\n", "quota.window_s must be between 1 and 31536000 (seconds)"),
        ("[rate]\nburst = 100000\n", "rate.burst must be between 1 and 10000 (requests)"),
        ('[schedule]\ndiscover_every = "400d"\n', "schedule.discover_every must be between 1s"),
    ],
)
def test_harvester_config_refuses_a_value_out_of_range_in_one_line(
    tmp_path: Path, toml: str, message: str
) -> None:
    config = tmp_path / "h.toml"
    config.write_text(toml)
    result = harvester("--config", str(config), "config")
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("harvester config: ") and message in line


@pytest.mark.parametrize(
    "toml",
    ["[workers]\nlease_s = 1e300\n", "[rate]\nrequests_per_s = 1e-300\n"],
    ids=["lease-1e300", "rate-1e-300"],
)
def test_run_refuses_at_once_and_touches_nothing(tmp_path: Path, toml: str) -> None:
    """Before: the lease overflowed in the feeder, ending `run` with an OverflowError
    event; the rate waited forever for its first token. Now neither gets started."""
    db = queue(tmp_path / "s.db", dois(3, "10.1000/range."))
    config = tmp_path / "h.toml"
    config.write_text('[api]\nbase_url = "http://127.0.0.1:9/v1"\n' + toml)
    result = harvester(
        "--config", str(config), "--db", str(db), "run", "--drain",
        env={"ALTMETRIC_API_KEY": "k" * 16},
    )  # fmt: skip
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("harvester run: ") and " must be between " in line
    assert rows(db, "SELECT state, count(*) FROM jobs GROUP BY state") == [("pending", 3)]
