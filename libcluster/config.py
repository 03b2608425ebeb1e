"""The one YAML configuration file, with typed access that names the wrong key on error.

A :class:`Section` is a read-only view of one mapping of the file that knows its dotted
path, so every error says exactly which key is missing or has the wrong type.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar, overload

import yaml

from libcluster import redact
from libcluster.errors import ConfigError

DEFAULT_CONFIG_PATH = "/etc/ganeti-cookbooks/config.yaml"
"""Where `cookbook` reads its configuration when no -c is given."""

T = TypeVar("T")
_MISSING: Any = object()
_FAST_LOADER: type[yaml.CSafeLoader | yaml.SafeLoader] = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader
"""libyaml's safe loader when PyYAML was built with it: it parses a config file ten times faster."""


class Section(Mapping[str, Any]):
    """A mapping of the configuration file, with typed getters whose errors name the key."""

    def __init__(self, data: Mapping[builtins.str, Any], where: builtins.str, source: builtins.str) -> None:
        """Wrap data found at dotted path `where` of file `source`."""
        self._data = dict(data)
        self.where = where
        self.source = source

    def __getitem__(self, key: builtins.str) -> Any:
        """Return the raw value of key, raising ConfigError naming it when missing."""
        if key not in self._data:
            raise ConfigError(f"{self.source}: missing key '{self.key(key)}'")
        return self._data[key]

    def __iter__(self) -> Iterator[builtins.str]:
        """Iterate over the keys of the section."""
        return iter(self._data)

    def __len__(self) -> builtins.int:
        """Number of keys in the section."""
        return len(self._data)

    def key(self, key: builtins.str) -> builtins.str:
        """The dotted path of key in the file, for messages: `netbox.url`."""
        return f"{self.where}.{key}" if self.where else key

    def _typed(self, key: builtins.str, kind: type | tuple[type, ...], name: builtins.str, default: Any) -> Any:
        if key not in self._data or self._data[key] is None:
            if default is _MISSING:
                raise ConfigError(f"{self.source}: missing key '{self.key(key)}' ({name})")
            return default
        value = self._data[key]
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise ConfigError(f"{self.source}: key '{self.key(key)}' must be {name}, not a boolean")
        if not isinstance(value, kind):
            shown = "*****" if redact.is_secret_key(key) else repr(value)
            raise ConfigError(f"{self.source}: key '{self.key(key)}' must be {name}, got {shown}")
        return value

    # Each getter: the value, of its type, or (key absent or null) default when given, else a ConfigError.

    @overload
    def str(self, key: builtins.str) -> builtins.str: ...
    @overload
    def str(self, key: builtins.str, default: None) -> builtins.str | None: ...
    @overload
    def str(self, key: builtins.str, default: T) -> builtins.str | T: ...
    def str(self, key: builtins.str, default: Any = _MISSING) -> Any:
        """A string value."""
        return self._typed(key, str, "a string", default)

    @overload
    def int(self, key: builtins.str) -> builtins.int: ...
    @overload
    def int(self, key: builtins.str, default: None) -> builtins.int | None: ...
    @overload
    def int(self, key: builtins.str, default: T) -> builtins.int | T: ...
    def int(self, key: builtins.str, default: Any = _MISSING) -> Any:
        """An integer value."""
        return self._typed(key, int, "an integer", default)

    @overload
    def float(self, key: builtins.str) -> builtins.float: ...
    @overload
    def float(self, key: builtins.str, default: None) -> builtins.float | None: ...
    @overload
    def float(self, key: builtins.str, default: T) -> builtins.float | T: ...
    def float(self, key: builtins.str, default: Any = _MISSING) -> Any:
        """A number, integers accepted."""
        value = self._typed(key, (int, float), "a number", default)
        return float(value) if value is not None and value is not default else value

    @overload
    def bool(self, key: builtins.str) -> builtins.bool: ...
    @overload
    def bool(self, key: builtins.str, default: None) -> builtins.bool | None: ...
    @overload
    def bool(self, key: builtins.str, default: T) -> builtins.bool | T: ...
    def bool(self, key: builtins.str, default: Any = _MISSING) -> Any:
        """A boolean value."""
        return self._typed(key, bool, "true or false", default)

    @overload
    def list(self, key: builtins.str) -> builtins.list[Any]: ...
    @overload
    def list(self, key: builtins.str, default: None) -> builtins.list[Any] | None: ...
    @overload
    def list(self, key: builtins.str, default: T) -> builtins.list[Any] | T: ...
    def list(self, key: builtins.str, default: Any = _MISSING) -> Any:
        """A list value (items unchecked: the caller checks them)."""
        return self._typed(key, list, "a list", default)

    def section(self, key: builtins.str, default: Mapping[builtins.str, Any] | None = _MISSING) -> Section:
        """A nested mapping as a Section; an absent key with default={} gives an empty one."""
        value = self._typed(key, dict, "a mapping", default)
        return Section(value or {}, self.key(key), self.source)

    def has(self, key: builtins.str) -> builtins.bool:
        """Whether the key is present and not null."""
        return self._data.get(key) is not None


def _register_secrets(data: Any, key: str = "") -> None:
    if isinstance(data, dict):
        for sub_key, value in data.items():
            _register_secrets(value, str(sub_key))
    elif isinstance(data, list):
        for value in data:
            _register_secrets(value, key)
    elif redact.is_secret_key(key):
        redact.register(data)


_QUOTED = re.compile(r"'([^']*)'")
_SAFE_QUOTED = re.compile(r"<[a-z ]+>|[^\w\s]|\\[a-z]")
"""What PyYAML quotes in a message that is its own wording: a token name (<block end>) or one punctuation
character; anything else quoted (a tag, an alias, an escape letter) comes from the file and may be a secret."""


def _yaml_error(exc: yaml.YAMLError) -> str:
    """Where and what kind of YAML error, never the file's text: PyYAML's own message quotes the offending line."""
    if isinstance(exc, yaml.reader.ReaderError):
        what = f"unacceptable character #x{exc.character:04x}: " if isinstance(exc.character, int) else ""
        return f" at character {exc.position}: {what}{exc.reason}"
    if not isinstance(exc, yaml.MarkedYAMLError):
        return f" ({type(exc).__name__})"
    mark = exc.problem_mark or exc.context_mark
    kind = "; ".join(_QUOTED.sub(lambda quoted: quoted[0] if _SAFE_QUOTED.fullmatch(quoted[1]) else "'...'", text)
                     for text in (exc.problem, exc.context) if text)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{where}: {kind or type(exc).__name__}"


def load(path: str | Path) -> Section:
    """Read the YAML file at path, register its secrets for redaction and return its root."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
    try:
        data = yaml.load(text, Loader=_FAST_LOADER)
    except yaml.YAMLError:
        try:  # the Python parser's messages are the ones to show (they name more), and it is the reference
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML{_yaml_error(exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    _register_secrets(data)
    return Section(data, "", str(path))
