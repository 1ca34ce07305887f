"""Typed readers for environment variables that fail loudly, naming the variable."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(ImproperlyConfigured):
    """A configuration value is missing or malformed; the message names the variable."""


def _raw(name: str, env: Mapping[str, str] | None) -> str | None:
    source = os.environ if env is None else env
    value = source.get(name)
    return None if value is None else value.strip()


def env_str(name: str, default: str | None = None, *, env: Mapping[str, str] | None = None) -> str:
    value = _raw(name, env)
    if value is None or value == "":
        if default is None:
            raise ConfigError(f"{name} is required but not set.")
        return default
    return value


def env_optional(name: str, *, env: Mapping[str, str] | None = None) -> str | None:
    value = _raw(name, env)
    return value or None


def env_bool(name: str, default: bool, *, env: Mapping[str, str] | None = None) -> bool:
    value = _raw(name, env)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name} must be one of true/false/1/0/yes/no/on/off, got an unrecognised value.")


def env_int(
    name: str,
    default: int,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    value = _raw(name, env)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number.") from None
    if minimum is not None and number < minimum:
        raise ConfigError(f"{name} must be at least {minimum}.")
    if maximum is not None and number > maximum:
        raise ConfigError(f"{name} must be at most {maximum}.")
    return number


def env_list(name: str, default: list[str], *, env: Mapping[str, str] | None = None) -> list[str]:
    value = _raw(name, env)
    if value is None or value == "":
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_choice(name: str, default: str, choices: tuple[str, ...], *, env: Mapping[str, str] | None = None) -> str:
    value = env_str(name, default, env=env)
    if value not in choices:
        raise ConfigError(f"{name} must be one of: {', '.join(choices)}.")
    return value


def env_file_or_value(name: str, *, env: Mapping[str, str] | None = None) -> str | None:
    """NAME, or the contents of the file named by NAME_FILE (Docker secrets); NAME_FILE wins when both are set."""
    file_name = env_optional(f"{name}_FILE", env=env)
    if file_name:
        try:
            return Path(file_name).read_text().strip() or None
        except OSError:
            raise ConfigError(f"{name}_FILE names a file that cannot be read.") from None
    return env_optional(name, env=env)


def env_url(name: str, schemes: tuple[str, ...], *, env: Mapping[str, str] | None = None) -> str | None:
    """An optional URL whose scheme must be one of `schemes`, from NAME or NAME_FILE.

    The value itself is never echoed in errors: it may hold a password.
    """
    value = env_file_or_value(name, env=env)
    if value is None:
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ConfigError(f"{name} is not a valid URL.") from None
    if parts.scheme not in schemes:
        raise ConfigError(f"{name} must start with one of: {', '.join(s + '://' for s in schemes)}.")
    if not parts.hostname and "host=" not in parts.query:
        raise ConfigError(f"{name} must name a host.")
    return value


# stun:host[:port], turn:host[:port][?transport=udp|tcp], and their TLS forms (RFC 7064, RFC 7065).
_ICE_URL = re.compile(
    r"(?P<scheme>stuns?|turns?):(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>\d{1,5}))?"
    r"(?:\?transport=(?P<transport>udp|tcp))?"
)


def _ice_url(name: str, url: str) -> str:
    match = _ICE_URL.fullmatch(url)
    if match is None:
        raise ConfigError(f"{name}: {url!r} is not a stun:, stuns:, turn: or turns: URL (host[:port][?transport=...]).")
    if match["port"] is not None and not 0 < int(match["port"]) < 65536:
        raise ConfigError(f"{name}: {url!r} has a port outside 1-65535.")
    if match["transport"] is not None and match["scheme"].startswith("stun"):
        raise ConfigError(f"{name}: {url!r}: a STUN URL takes no transport.")
    return url


def env_ice_servers(*, env: Mapping[str, str] | None = None) -> list[dict[str, list[str]]]:
    """The ICE servers as RTCIceServer dictionaries without credentials: ICE_SERVERS (JSON), or TURN_URLS and
    STUN_URLS (comma-separated). TURN credentials are never configured here: they are minted per participant.

    ICE_SERVERS looks like `[{"urls": ["stun:turn.example.pe:3478"]}, {"urls": "turns:turn.example.pe:443"}]`.
    """
    raw = env_optional("ICE_SERVERS", env=env)
    lists = {name: env_list(name, [], env=env) for name in ("STUN_URLS", "TURN_URLS")}
    if raw is not None:
        if any(lists.values()):
            raise ConfigError("Set either ICE_SERVERS or TURN_URLS/STUN_URLS, not both.")
        try:
            entries = json.loads(raw)
        except ValueError:
            raise ConfigError('ICE_SERVERS must be JSON: a list of {"urls": ...} objects.') from None
        if not isinstance(entries, list):
            raise ConfigError('ICE_SERVERS must be a JSON list of {"urls": ...} objects.')
        servers: list[dict[str, list[str]]] = []
        for position, entry in enumerate(entries, start=1):
            if not isinstance(entry, dict) or set(entry) != {"urls"}:
                # username/credential are refused on purpose: static TURN passwords would never expire.
                raise ConfigError(f'ICE_SERVERS entry {position} must be an object with the single key "urls".')
            urls = entry["urls"] if isinstance(entry["urls"], list) else [entry["urls"]]
            if not urls or not all(isinstance(url, str) for url in urls):
                raise ConfigError(f'ICE_SERVERS entry {position}: "urls" must be a URL or a non-empty list of URLs.')
            servers.append({"urls": [_ice_url("ICE_SERVERS", url.strip()) for url in urls]})
        return servers
    servers = []
    for name in ("STUN_URLS", "TURN_URLS"):
        if lists[name]:
            urls = [_ice_url(name, url) for url in lists[name]]
            expected = "stun" if name == "STUN_URLS" else "turn"
            if not all(url.startswith(expected) for url in urls):
                raise ConfigError(f"{name} must hold only {expected}: or {expected}s: URLs.")
            servers.append({"urls": urls})
    return servers
