"""Reading the YAML config: every mapping remembers the line of each key, every mistake is reported as
``file:line: key: what is wrong``. Shared by the gateway's config and each PABX driver's own options."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from .urls import redact_url


class ConfigError(ValueError):
    """A mistake in the config: ``str()`` names the file, line and key."""


class Map(dict):
    """A YAML mapping that remembers the line of each key."""

    lines: dict[str, int]
    line: int


class Loader(yaml.SafeLoader):
    source = "<config>"


def _construct_map(loader: Loader, node: yaml.MappingNode) -> Map:
    lines: dict[str, int] = {}
    for k, _ in node.value:
        key, line = str(k.value), k.start_mark.line + 1
        if key in lines:   # YAML would silently keep the last one
            raise ConfigError(f"{loader.source}:{line}: {key}: given twice, at lines {lines[key]} and {line}; "
                              f"keep one")
        lines[key] = line
    m = Map(loader.construct_mapping(node, deep=True))
    m.line = node.start_mark.line + 1
    m.lines = lines
    return m


Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)


def split_listen(value: str) -> tuple[str, int]:
    """``"0.0.0.0:8080"`` -> ("0.0.0.0", 8080); ``"[::1]:8080"`` works too."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


_ENV_VAR = re.compile(r"\$\{([^}]*)\}")


class Reader:
    def __init__(self, source: str):
        self.source = source

    def fail(self, m: Any, key: str, path: str, message: str) -> ConfigError:
        line = getattr(m, "lines", {}).get(key) or getattr(m, "line", None)
        where = f"{self.source}:{line}" if line else self.source
        return ConfigError(f"{where}: {path}: {message}")

    def mapping(self, value: Any, path: str, parent: Any = None, key: str = "") -> Map:
        if value is None:
            value = Map()
            value.lines, value.line = {}, getattr(parent, "lines", {}).get(key, 0)
        if not isinstance(value, dict):
            raise self.fail(parent, key, path, "must be a mapping (key: value lines)")
        return value

    def section(self, root: Map, name: str, allowed: set[str]) -> Map | None:
        """The top-level mapping ``name`` with only ``allowed`` keys; None when the config has none."""
        if root.get(name) is None:
            return None
        m = self.mapping(root[name], name, root, name)
        self.check_keys(m, name, allowed)
        return m

    def check_keys(self, m: Map, path: str, allowed: set[str]) -> None:
        for k in m:
            if k not in allowed:
                raise self.fail(m, str(k), f"{path}.{k}" if path else str(k),
                                f"unknown key; allowed here: {', '.join(sorted(allowed))}")

    def expand(self, m: Map, key: str, full: str, value: str) -> str:
        """Each ``${VAR}`` in ``value`` -> that environment variable (``http://cti:${NGC_PASSWORD}@ngc/RPC2``);
        ``${VAR:-text}`` -> ``text`` when VAR is not set."""
        def var(match: re.Match) -> str:
            name, sep, fallback = match.group(1).partition(":-")
            if name in os.environ:
                return os.environ[name]
            if sep:
                return fallback
            raise self.fail(m, key, full, f"environment variable {name} is not set")
        return _ENV_VAR.sub(var, value)

    def get(self, m: Map, key: str, path: str, kind: type, default: Any, *, check=None, env: bool = True) -> Any:
        full = f"{path}.{key}" if path else key
        if key not in m or m[key] is None:
            return default
        value = m[key]
        if env and isinstance(value, str) and "${" in value:
            value = self.expand(m, key, full, value)
            # a number from the environment (port: ${AMI_PORT:-5038}) is a number
            if (kind is int and re.fullmatch(r"\d+", value.strip())) or \
                    (kind is float and re.fullmatch(r"\d+(\.\d+)?", value.strip())):
                value = kind(value.strip())
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is str and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(m, key, full, f"must be {kind.__name__}, got {type(value).__name__} {value!r}")
        if check is not None:
            problem = check(value)
            if problem:
                raise self.fail(m, key, full, problem)
        return value


def listen_problem(v: str) -> str | None:
    try:
        split_listen(v)
    except ValueError as e:
        return str(e)
    return None


def url_problem(v: str) -> str | None:
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return f"{redact_url(v)!r} is not an http:// or https:// URL"
    return None


def between(low: float, high: float, unit: str = "seconds"):
    """A check for Reader.get: the value lies between ``low`` and ``high``."""
    def check(v: float) -> str | None:
        return None if low <= v <= high else f"must be between {low:g} and {high:g}{' ' + unit if unit else ''}"
    return check


def load_yaml(path: str | Path) -> tuple[Any, str]:
    """The YAML document of ``path`` (mappings as ``Map``) and the path as given; ConfigError on any problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file: {e.strerror}") from None
    loader = None
    try:
        loader = Loader(text)
        loader.source = str(path)
        data = loader.get_single_data()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, str(path)
