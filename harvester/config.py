"""Settings: one TOML file, loaded once into frozen dataclasses and validated here.

Every other module receives a `Settings` and trusts it, so all the checking lives in
this file and every message names the key that is wrong. The API key is deliberately
not a setting: it comes from the environment or a key file (systemd credentials), is
wrapped in `Secret` so it cannot leak through a repr, and a `key` in the TOML is an error.
"""

# long: every setting, its type and its check in one file, so every message names its key;
# what to discover and when is apart already (`scheduling`).
from __future__ import annotations

import dataclasses
import ipaddress
import os
import ssl
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harvester import redaction
from harvester.config_ranges import check_ranges, number
from harvester.errors import ConfigError
from harvester.model import QuotaMode
from harvester.scheduling import ScheduleSettings, validate_schedule

CONFIG_ENV_VAR = "HARVESTER_CONFIG"  # a config file named by the environment
DB_ENV_VAR = "HARVESTER_DB"  # the store, over store.path (--db wins over both)
KEY_ENV_VAR = "ALTMETRIC_API_KEY"
CREDENTIAL_NAME = "altmetric-api-key"  # systemd LoadCredential= name

# The values `filters.*` accept: the API's source and section names and post types.
# fmt: off
SOURCE_NAMES = frozenset([
    "twitter", "facebook", "blogs", "news", "reddit", "video", "policy", "weibo",
    "peerreview", "qna", "f1000", "gplus", "linkedin", "pinterest", "rh", "forum",
    "bluesky", "wikipedia", "guideline", "patent", "podcast",
])
# fmt: on
SECTION_NAMES = frozenset(
    ["counts", "citation", "altmetric_score", "demographics", "posts", "images"]
)
POST_TYPES = frozenset({"original_tweets"})
ENDPOINTS = ("fetch", "counts")


class Secret:
    """A string that never shows itself in a repr, str, log line or traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True)
class ApiSettings:
    base_url: str = "https://api.altmetric.com/v1"
    key_file: Path | None = None
    timeout_s: float = 30.0
    legacy_type_names: bool = False
    # "fetch" (details and mentions; a commercial or research licence) or "counts"
    # (the free call: scores, counts and readers, no mentions and no tweet quota).
    endpoint: str = "fetch"
    # "http://host:port" (credentials allowed): every request through this proxy; empty:
    # $HTTPS_PROXY / $HTTP_PROXY and $NO_PROXY decide, as for other tools (harvest.network).
    proxy: str = ""
    ca_file: Path | None = None  # a PEM bundle of CAs trusted besides the system's
    max_answer_bytes: int = 64 * 1024 * 1024  # one answer, compressed or not, at most


@dataclass(frozen=True)
class RateSettings:
    # The most the harvester asks for; None ("auto" in the file): no guess, the
    # server's allowance headers and refusals decide (harvest.ratelimit).
    requests_per_s: float | None = 1.0
    burst: int = 1
    # A refusal before the server's rate could be measured multiplies the rate by this
    # (after that, the rate goes just under what the server was seen to accept)...
    decrease_factor: float = 0.5
    increase_after_s: float = 5.0  # ...and each quiet spell this long probes upward


@dataclass(frozen=True)
class WorkerSettings:
    concurrency: int = 8
    max_attempts: int = 5
    backoff_base_s: float = 2.0
    backoff_max_s: float = 600.0
    lease_s: float = 600.0
    drain_deadline_s: float = 30.0


@dataclass(frozen=True)
class StoreSettings:
    path: Path = Path("altmetric.db")
    # Fill the derived tables as each answer is stored (~0.7 ms of CPU per answer);
    # false leaves it to `harvester derive`, for harvests at hundreds per second.
    derive: bool = True


@dataclass(frozen=True)
class FilterSettings:
    """Default fetch filters, sent with every request (empty means: not sent)."""

    include_sources: tuple[str, ...] = ()
    exclude_sources: tuple[str, ...] = ()
    include_sections: tuple[str, ...] = ()
    post_types: tuple[str, ...] = ()

    def as_query(self) -> dict[str, str]:
        """The filters as fetch query parameters, in a fixed order."""
        pairs = {
            "include_sources": self.include_sources,
            "exclude_sources": self.exclude_sources,
            "include_sections": self.include_sections,
            "post_types": self.post_types,
        }
        return {name: ",".join(values) for name, values in pairs.items() if values}


@dataclass(frozen=True)
class QuotaSettings:
    """The tweet-ID quota: unique tweet IDs per key in any rolling window."""

    limit: int = 1_500_000
    window_s: float = 2_592_000.0  # 30 days
    original_tweets_at: float = 0.90  # fraction of the limit where retweets are dropped
    no_twitter_at: float = 0.98  # fraction of the limit where Twitter is excluded
    mode: str = "auto"  # or a QuotaMode's value, to pin that mode


@dataclass(frozen=True)
class MetricsSettings:
    """An optional Prometheus text endpoint, e.g. "127.0.0.1:9108"; empty is off."""

    address: str = ""


@dataclass(frozen=True)
class LogSettings:
    level: str = "info"
    progress_every_s: float = 60.0  # off a terminal: a harvest.progress event this often


@dataclass(frozen=True)
class Settings:
    api: ApiSettings = field(default_factory=ApiSettings)
    rate: RateSettings = field(default_factory=RateSettings)
    workers: WorkerSettings = field(default_factory=WorkerSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    filters: FilterSettings = field(default_factory=FilterSettings)
    quota: QuotaSettings = field(default_factory=QuotaSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    log: LogSettings = field(default_factory=LogSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    source: Path | None = None  # the file these settings came from, if any


_SECTIONS: dict[str, type] = {
    "api": ApiSettings,
    "rate": RateSettings,
    "workers": WorkerSettings,
    "store": StoreSettings,
    "filters": FilterSettings,
    "quota": QuotaSettings,
    "metrics": MetricsSettings,
    "log": LogSettings,
    "schedule": ScheduleSettings,
}


def load_settings(
    path: Path | None = None,
    db_override: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Load settings from the config file `find_config` picks (else the defaults), with
    the store from `db_override` (--db), else $HARVESTER_DB, else `store.path`."""
    environ = os.environ if environ is None else environ
    path = find_config(path, environ)
    document: dict[str, Any] = {}
    if path is not None:
        document = _read_toml(path)
    settings = settings_from_mapping(document, source=path)
    if db_override is None and environ.get(DB_ENV_VAR, "").strip():
        db_override = Path(environ[DB_ENV_VAR].strip()).expanduser()
    if db_override is not None:
        store = dataclasses.replace(settings.store, path=db_override)
        settings = dataclasses.replace(settings, store=store)
    return settings


def find_config(path: Path | None, environ: Mapping[str, str]) -> Path | None:
    """The config file to read: `path` (--config), else $HARVESTER_CONFIG, both of which
    must exist; else the first file found of `config_search_path`; else None (the
    built-in defaults)."""
    if path is not None:
        return path
    named = environ.get(CONFIG_ENV_VAR, "").strip()
    if named:
        return Path(named).expanduser()
    return next((found for found in config_search_path(environ) if found.is_file()), None)


def config_search_path(environ: Mapping[str, str]) -> list[Path]:
    """Where a config file is looked for when none is named, in order: the working
    directory, the user's XDG config directory, the system's."""
    xdg_home = environ.get("XDG_CONFIG_HOME", "").strip() or str(Path.home() / ".config")
    return [
        Path("harvester.toml"),
        Path(xdg_home) / "altmetric-harvester" / "harvester.toml",
        Path("/etc/altmetric-harvester/harvester.toml"),
    ]


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} does not exist (named by --config or ${CONFIG_ENV_VAR})"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    except OSError as error:
        raise ConfigError(f"config file {path} cannot be read: {error.strerror}") from None


def settings_from_mapping(document: dict[str, Any], source: Path | None = None) -> Settings:
    """Build validated Settings from a parsed TOML document."""
    for section in document:
        if section not in _SECTIONS:
            raise ConfigError(f"unknown config section [{section}] (known: {', '.join(_SECTIONS)})")
    if "key" in document.get("api", {}):
        raise ConfigError(
            f"api.key: the API key never goes in the config file; set {KEY_ENV_VAR} "
            "or point api.key_file at a file holding it"
        )
    parts = {
        name: _build_section(name, cls, document.get(name, {})) for name, cls in _SECTIONS.items()
    }
    settings = Settings(**parts, source=source)
    validate_settings(settings)
    return settings


def _build_section(name: str, cls: type, table: Any) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"[{name}] must be a table")
    fields = {item.name: item for item in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, raw in table.items():
        if key not in fields:
            raise ConfigError(f"unknown key {name}.{key} (known: {', '.join(fields)})")
        values[key] = _coerce(f"{name}.{key}", fields[key].default, raw)
    return cls(**values)


def _coerce(key: str, default: Any, raw: Any) -> Any:
    """Check a raw TOML value against the type of the field's default."""
    if key == "rate.requests_per_s" and isinstance(raw, str):
        if raw == "auto":
            return None
        raise ConfigError(f'{key} must be a number of requests a second or "auto", not {raw!r}')
    if isinstance(default, bool):
        if not isinstance(raw, bool):
            raise ConfigError(f"{key} must be true or false, not {raw!r}")
        return raw
    if isinstance(default, int):
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ConfigError(f"{key} must be a whole number, not {raw!r}")
        return raw
    if isinstance(default, float):
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ConfigError(f"{key} must be a number, not {raw!r}")
        return float(raw)
    if isinstance(default, tuple):
        if isinstance(raw, str):
            raw = [part.strip() for part in raw.split(",") if part.strip()]
        if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
            raise ConfigError(f"{key} must be a list of strings, not {raw!r}")
        return tuple(raw)
    if not isinstance(raw, str):
        raise ConfigError(f"{key} must be a string, not {raw!r}")
    if key in ("api.key_file", "api.ca_file", "store.path"):
        if not raw.strip():
            raise ConfigError(f"{key} is empty: give a file's path, or leave the key out")
        return Path(raw).expanduser()
    return raw


def validate_settings(settings: Settings) -> None:
    """Refuse settings a daemon cannot run on, in one line naming the key: every number
    outside its range (`config_ranges`), and every value or combination that is wrong.
    A reload checks the settings it would run on here too (`service.reload`)."""
    check_ranges(_numbers(settings))
    _validate_base_url(settings.api.base_url)
    _validate_network(settings.api)
    if settings.workers.lease_s <= settings.api.timeout_s:
        raise ConfigError(
            f"workers.lease_s must be longer than api.timeout_s ({number(settings.api.timeout_s)}"
            f" seconds), not {number(settings.workers.lease_s)}"
        )
    _validate_filters(settings.filters)
    _validate_quota(settings.quota)
    _validate_endpoint(settings)
    validate_schedule(settings.schedule)
    if settings.metrics.address:
        metrics_host_port(settings.metrics.address)
    if settings.log.level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError("log.level must be one of debug, info, warning, error")


def _numbers(settings: Settings) -> dict[str, object]:
    """Every setting as "section.key": value, for the range checks."""
    return {
        f"{name}.{item.name}": getattr(getattr(settings, name), item.name)
        for name in _SECTIONS
        for item in dataclasses.fields(getattr(settings, name))
    }


def _validate_base_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"api.base_url must be an http(s) URL, not {url!r}")
    if parts.query or parts.fragment:
        raise ConfigError("api.base_url must not carry a query or fragment")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigError(
            "api.base_url uses plain http to a non-loopback host; the key would travel "
            "unencrypted (use https)"
        )


def _validate_network(api: ApiSettings) -> None:
    """The proxy's URL (its credentials become secrets) and the CA bundle, read now so
    that a bad one is refused before any request."""
    if api.proxy:
        redaction.register_url(api.proxy)
        parts = urlsplit(api.proxy)
        try:
            parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
        except ValueError:
            parts = parts._replace(scheme="")
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
        ):
            shown = redaction.shown_url(api.proxy)
            raise ConfigError(f'api.proxy must look like "http://host:port", not {shown!r}')
    if api.ca_file is not None:
        try:
            ssl.create_default_context().load_verify_locations(cafile=api.ca_file)
        except (OSError, ssl.SSLError, ValueError) as error:
            raise ConfigError(
                f"api.ca_file {api.ca_file}: not a readable PEM bundle of CA certificates "
                f"({type(error).__name__}: {error})"
            ) from None


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine: `localhost` or a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _validate_filters(filters: FilterSettings) -> None:
    for key, allowed in (
        ("include_sources", SOURCE_NAMES),
        ("exclude_sources", SOURCE_NAMES),
        ("include_sections", SECTION_NAMES),
        ("post_types", POST_TYPES),
    ):
        unknown = sorted(set(getattr(filters, key)) - allowed)
        if unknown:
            raise ConfigError(
                f"filters.{key} has unknown value(s) {', '.join(unknown)} "
                f"(known: {', '.join(sorted(allowed))})"
            )
    if filters.include_sources and filters.exclude_sources:
        raise ConfigError("filters.include_sources and filters.exclude_sources are exclusive")


def _validate_endpoint(settings: Settings) -> None:
    """The counts call takes no filters and has no tweets: a fetch-only setting with it
    would be silently ignored, so it is an error that says which."""
    endpoint = settings.api.endpoint
    if endpoint not in ENDPOINTS:
        raise ConfigError(f"api.endpoint must be one of {', '.join(ENDPOINTS)}, not {endpoint!r}")
    if endpoint != "counts":
        return
    if filters := settings.filters.as_query():
        name, values = next(iter(filters.items()))
        raise ConfigError(
            f"filters.{name} = {values!r} is for the fetch call; the counts call "
            '(api.endpoint = "counts") takes no filters: remove it'
        )
    if settings.quota.mode != "auto":
        raise ConfigError(
            f"quota.mode = {settings.quota.mode!r} pins a fetch mode; counts answers hold "
            'no tweets (api.endpoint = "counts"): remove it'
        )


def metrics_host_port(address: str) -> tuple[str, int]:
    """The loopback host and port of metrics.address, or a ConfigError."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"metrics.address must be HOST:PORT, not {address!r}")
    if not is_loopback(host):
        raise ConfigError("metrics.address must be a loopback address (127.0.0.1 or ::1)")
    return host, int(port)


def _validate_quota(quota: QuotaSettings) -> None:
    if quota.original_tweets_at > quota.no_twitter_at:
        raise ConfigError(
            f"quota.original_tweets_at must be at most quota.no_twitter_at "
            f"({number(quota.no_twitter_at)}), not {number(quota.original_tweets_at)}"
        )
    if quota.mode not in ("auto", *QuotaMode):
        raise ConfigError(f"quota.mode must be auto or one of {', '.join(QuotaMode)}")


def load_api_key(settings: Settings, environ: dict[str, str] | None = None) -> Secret:
    """Find the API key, first match wins: `api.key_file` (when configured), else
    $ALTMETRIC_API_KEY, else systemd's credential `altmetric-api-key`.

    The file wins because it was named on purpose in this store's config, while the
    variable may be left over in a shell. A configured file that cannot be read is an
    error, never a reason to fall through to another key. A missing key is an error
    too: `run` never falls back to the simulator.
    """
    environ = dict(os.environ) if environ is None else environ
    if settings.api.key_file is not None:
        return _key_from_file(settings.api.key_file, f"api.key_file {settings.api.key_file}")
    from_env = environ.get(KEY_ENV_VAR, "").strip()
    if from_env:
        return _checked_key(from_env, KEY_ENV_VAR)
    credentials_dir = environ.get("CREDENTIALS_DIRECTORY")
    if credentials_dir:
        credential = Path(credentials_dir) / CREDENTIAL_NAME
        return _key_from_file(credential, f"the systemd credential {credential}")
    raise ConfigError(
        f"no API key: set api.key_file or {KEY_ENV_VAR} "
        "(to try the harvester without a key, run `harvester demo`)"
    )


def _key_from_file(path: Path, where: str) -> Secret:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ConfigError(f"{where} cannot be read: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where} is not UTF-8 text") from None
    return _checked_key(text, where)


def _checked_key(value: str, where: str) -> Secret:
    if not value or any(char.isspace() or not char.isprintable() for char in value):
        raise ConfigError(f"the API key from {where} is empty or holds whitespace")
    redaction.register(value)  # from here on, no log line can carry it
    return Secret(value)
