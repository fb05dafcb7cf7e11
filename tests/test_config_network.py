"""The network settings, `api.proxy`, `api.ca_file` and `api.max_answer_bytes`: read
and checked with the rest of the config, a proxy's password never shown, and which of
them a reload applies in flight."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import trustme
from helpers import harvester, write_config

from harvester.config import ApiSettings, Settings, load_settings
from harvester.errors import ConfigError
from harvester.redaction import redact
from harvester.service.reload import applies_in_flight, changes, reloaded


def settings(tmp_path: Path, **api: object) -> Settings:
    return load_settings(write_config(tmp_path / "h.toml", "https://api.example.org/v1", api=api))


def test_the_defaults_reach_the_api_as_usual() -> None:
    api = ApiSettings()
    assert (api.proxy, api.ca_file, api.max_answer_bytes) == ("", None, 64 * 1024 * 1024)


def test_a_proxy_and_a_ca_file_are_read(tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca_file))
    api = settings(
        tmp_path, proxy="http://proxy.example:3128", ca_file=str(ca_file), max_answer_bytes=4096
    ).api
    assert (api.proxy, api.ca_file, api.max_answer_bytes) == (
        "http://proxy.example:3128",
        ca_file,
        4096,
    )


@pytest.mark.parametrize(
    ("proxy", "shown"),
    [
        ("socks5://h:1080", "'socks5://h:1080'"),
        ("http://h:port", "'http://h:port'"),
        ("http://", "'http://'"),
        ("http://h:3128/path", "'http://h:3128/path'"),
        ("http://bob:hunter2-long@h:3128/x", "'http://bob:***@h:3128/x'"),  # never the password
    ],
)
def test_a_proxy_that_is_not_a_proxy_url_is_refused(tmp_path: Path, proxy: str, shown: str) -> None:
    with pytest.raises(ConfigError) as refused:
        settings(tmp_path, proxy=proxy)
    assert str(refused.value) == f'api.proxy must look like "http://host:port", not {shown}'


@pytest.mark.parametrize("content", [None, "not a certificate\n"], ids=["missing", "not-pem"])
def test_a_ca_file_that_is_not_a_ca_bundle_is_refused(tmp_path: Path, content: str | None) -> None:
    ca_file = tmp_path / "ca.pem"
    if content is not None:
        ca_file.write_text(content)
    with pytest.raises(ConfigError, match=rf"^api.ca_file {ca_file}: not a readable PEM bundle"):
        settings(tmp_path, ca_file=str(ca_file))


@pytest.mark.parametrize("size", [0, 1023, 2**31 + 1])
def test_the_bound_on_answers_has_a_range(tmp_path: Path, size: int) -> None:
    with pytest.raises(ConfigError, match=r"^api.max_answer_bytes must be between 1024 and "):
        settings(tmp_path, max_answer_bytes=size)


def test_the_proxy_password_is_a_secret_shown_nowhere(tmp_path: Path) -> None:
    proxy = "http://ann:s3cret-of-ann@proxy.example:3128"
    config = write_config(tmp_path / "h.toml", "https://api.example.org/v1", api={"proxy": proxy})
    load_settings(config)
    assert redact(f"via {proxy}") == "via http://***@proxy.example:3128"
    shown = harvester("--config", str(config), "config")
    assert shown.returncode == 0, shown.stderr
    assert 'proxy = "http://ann:***@proxy.example:3128"' in shown.stdout
    assert "s3cret" not in shown.stdout + shown.stderr


def test_a_reload_applies_the_proxy_and_the_bound_but_not_the_trust(tmp_path: Path) -> None:
    assert applies_in_flight("api.proxy") and applies_in_flight("api.max_answer_bytes")
    assert not applies_in_flight("api.ca_file") and not applies_in_flight("api.base_url")
    running = Settings()
    ca_file = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca_file))
    new = dataclasses.replace(
        running,
        api=ApiSettings(proxy="http://p:1", max_answer_bytes=2048, ca_file=ca_file),
    )
    applied, restart = changes(running, new)
    assert applied == {"api.proxy": "http://p:1", "api.max_answer_bytes": 2048}
    assert restart == ["api.ca_file"]
    merged = reloaded(running, new).api
    assert (merged.proxy, merged.max_answer_bytes, merged.ca_file) == ("http://p:1", 2048, None)
