"""Settings: TOML loading, validation messages, where the key may come from, and the
metrics address."""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from pathlib import Path

import pytest
from helpers import ROOT

from harvester.config import Secret, load_api_key, load_settings, settings_from_mapping
from harvester.errors import ConfigError

EXAMPLE = ROOT / "config" / "harvester.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "h.toml"
    path.write_text(text)
    return path


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.api.base_url == "https://api.altmetric.com/v1"
    assert settings.store.path == Path("altmetric.db")
    assert settings.source is None


def test_harvester_toml_in_the_working_directory_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "").rename(tmp_path / "harvester.toml")
    (tmp_path / "harvester.toml").write_text("[workers]\nconcurrency = 3\n")
    assert load_settings().workers.concurrency == 3


def test_the_example_config_documents_every_key_and_loads() -> None:
    settings = load_settings(EXAMPLE)
    text = EXAMPLE.read_text()
    for section in dataclasses.fields(settings):
        value = getattr(settings, section.name)
        if not dataclasses.is_dataclass(value):
            continue
        assert f"[{section.name}]" in text, section.name
        for key in dataclasses.fields(value):
            assert f"\n{key.name} =" in text or f"# {key.name} =" in text, key.name
    assert settings.rate.requests_per_s is not None and settings.rate.requests_per_s > 0


def test_full_config_and_db_override(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[api]
base_url = "http://127.0.0.1:9999/v1"
timeout_s = 5
[rate]
requests_per_s = 12.5
burst = 4
[workers]
concurrency = 32
max_attempts = 7
[store]
path = "a.db"
[filters]
exclude_sources = ["twitter"]
include_sections = "counts, posts"
""",
    )
    settings = load_settings(path, db_override=tmp_path / "b.db")
    assert settings.api.timeout_s == 5.0
    assert settings.rate.requests_per_s == 12.5
    assert settings.rate.burst == 4
    assert settings.workers.concurrency == 32
    assert settings.workers.max_attempts == 7
    assert settings.store.path == tmp_path / "b.db"
    assert settings.filters.as_query() == {
        "exclude_sources": "twitter",
        "include_sections": "counts,posts",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[api]\nkey = 'abc'", "api.key: the API key never goes in the config file"),
        ("[api]\nbase_url = 'ftp://x'", "api.base_url must be an http"),
        ("[api]\nbase_url = 'http://api.example.org/v1'", "plain http to a non-loopback"),
        ("[rate]\nrequests_per_s = 0", "rate.requests_per_s must be between 0.01 and 1000000"),
        ("[rate]\nrequests_per_s = 'fast'", 'must be a number of requests a second or "auto"'),
        ("[rate]\nrequests_per_s = inf", r'a second\) or "auto", not inf'),
        ("[rate]\nrequests_per_s = nan", r'a second\) or "auto", not nan'),
        ("[rate]\nburst = 1.5", "rate.burst must be a whole number"),
        ("[workers]\nconcurrency = 0", "workers.concurrency must be between 1 and 1024"),
        ("[workers]\nconcurrency = 'many'", "workers.concurrency must be a whole number"),
        ("[workers]\nmax_attempts = true", "workers.max_attempts must be a whole number"),
        ("[workers]\nspeed = 3", "unknown key workers.speed"),
        ("[wrkers]\nconcurrency = 3", r"unknown config section \[wrkers\]"),
        ("[filters]\nexclude_sources = ['tweeter']", "filters.exclude_sources has unknown"),
        ("[filters]\npost_types = ['retweets']", "filters.post_types has unknown"),
        ("[workers]\nlease_s = 10", r"lease_s must be longer than api.timeout_s \(30 seconds\)"),
        ("[quota]\noriginal_tweets_at = 0.99", "original_tweets_at must be at most quota.no_tw"),
        ("[log]\nlevel = 'loud'", "log.level must be one of"),
        ("[api\n", "not valid TOML"),
        ("[api]\nendpoint = 'explorer'", "api.endpoint must be one of fetch, counts"),
        (
            "[api]\nendpoint = 'counts'\n[filters]\nexclude_sources = ['twitter']",
            "filters.exclude_sources = 'twitter' is for the fetch call",
        ),
        (
            "[api]\nendpoint = 'counts'\n[quota]\nmode = 'no_twitter'",
            "quota.mode = 'no_twitter' pins a fetch mode",
        ),
    ],
)
def test_bad_settings_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(write(tmp_path, text))


def test_the_counts_endpoint_is_chosen_in_the_config(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, "")).api.endpoint == "fetch"
    assert load_settings(write(tmp_path, "[api]\nendpoint = 'counts'\n")).api.endpoint == "counts"


def test_auto_rate_needs_no_guess(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "[rate]\nrequests_per_s = 'auto'\nburst = 3\n"))
    assert settings.rate.requests_per_s is None
    assert settings.rate.burst == 3


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_key_from_environment() -> None:
    settings = settings_from_mapping({})
    key = load_api_key(settings, {"ALTMETRIC_API_KEY": " s3cret \n"})
    assert key.reveal() == "s3cret"
    assert "s3cret" not in repr(key) and "s3cret" not in str(key)


def test_key_precedence_file_then_environment_then_credential(tmp_path: Path) -> None:
    """The README's order: api.key_file, $ALTMETRIC_API_KEY, the systemd credential."""
    (tmp_path / "key").write_text("from-file\n")
    (tmp_path / "altmetric-api-key").write_text("from-systemd")
    everything = {"ALTMETRIC_API_KEY": "from-env", "CREDENTIALS_DIRECTORY": str(tmp_path)}
    with_file = settings_from_mapping({"api": {"key_file": str(tmp_path / "key")}})
    assert load_api_key(with_file, everything).reveal() == "from-file"
    plain = settings_from_mapping({})
    assert load_api_key(plain, everything).reveal() == "from-env"
    no_env = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    assert load_api_key(plain, no_env).reveal() == "from-systemd"


def test_a_configured_key_file_never_falls_through(tmp_path: Path) -> None:
    missing = settings_from_mapping({"api": {"key_file": str(tmp_path / "missing")}})
    with pytest.raises(ConfigError, match=r"api.key_file .* cannot be read"):
        load_api_key(missing, {"ALTMETRIC_API_KEY": "from-env"})
    (tmp_path / "binary").write_bytes(b"\xff\xfe")
    binary = settings_from_mapping({"api": {"key_file": str(tmp_path / "binary")}})
    with pytest.raises(ConfigError, match=r"api.key_file .* not UTF-8"):
        load_api_key(binary, {"ALTMETRIC_API_KEY": "from-env"})


def test_key_from_key_file_and_credentials_dir(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("from-file\n")
    settings = settings_from_mapping({"api": {"key_file": str(tmp_path / "key")}})
    assert load_api_key(settings, {}).reveal() == "from-file"
    (tmp_path / "altmetric-api-key").write_text("from-systemd")
    plain = settings_from_mapping({})
    assert load_api_key(plain, {"CREDENTIALS_DIRECTORY": str(tmp_path)}).reveal() == "from-systemd"


def test_missing_key_is_an_error_that_points_at_the_demo() -> None:
    with pytest.raises(ConfigError, match=r"no API key.*harvester demo"):
        load_api_key(settings_from_mapping({}), {})


def test_unreadable_key_file_is_an_error(tmp_path: Path) -> None:
    settings = settings_from_mapping({"api": {"key_file": str(tmp_path / "missing")}})
    with pytest.raises(ConfigError, match=r"api.key_file .* cannot be read"):
        load_api_key(settings, {})


def test_secret_hides_itself() -> None:
    assert repr(Secret("abc")) == "Secret('***')"


# -- the metrics endpoint ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("0.0.0.0:9108", "loopback"),
        ("192.168.1.5:9108", "loopback"),
        ("127.0.0.1", "HOST:PORT"),
        ("127.0.0.1:70000", "HOST:PORT"),
        ("localhost:abc", "HOST:PORT"),
    ],
)
def test_a_metrics_address_off_loopback_or_malformed_is_refused(
    tmp_path: Path, address: str, message: str
) -> None:
    config = tmp_path / "h.toml"
    config.write_text(f'[metrics]\naddress = "{address}"\n')
    with pytest.raises(ConfigError, match=message):
        load_settings(config)


def test_metrics_are_off_by_default() -> None:
    with contextlib.chdir(tempfile.gettempdir()):
        assert load_settings(None).metrics.address == ""
