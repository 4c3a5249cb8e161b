"""Typed, frozen config dataclasses: dict/JSON/YAML round-trip and dotted-path replace.

Every component's config is a ``@dataclass(frozen=True)`` that subclasses :class:`Config`.
Conversion from plain data is driven by the type hints, so a new component only declares
its fields and validates them in ``__post_init__``. Unknown keys are rejected with the
closest valid names (a typo must never silently become a default).
"""
from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping, TypeVar, Union, get_args, get_origin

from archlab.errors import ConfigError

C = TypeVar("C", bound="Config")


def _suggest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"accepted keys: {', '.join(sorted(valid))}{hint}"


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, path: str) -> Any:
    """Convert plain data (from JSON/YAML/kwargs) to the annotated type ``tp``."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{path}: None is not accepted; expected {_type_name(tp)}")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, path)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{path}: {value!r} matches none of {_type_name(tp)}")
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{path}: {value!r} is not accepted; choose one of {', '.join(map(repr, allowed))}{hint}")
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping for {tp.__name__}, got {type(value).__name__}")
        return tp.from_dict(value, path=path)
    if origin is tuple:
        args = get_args(tp)
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{path}: expected {len(args)} items, got {len(value)}")
        return tuple(_convert(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin in (dict, collections.abc.Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__}")
        args = get_args(tp) or (str, Any)
        return types.MappingProxyType(
            {_convert(k, args[0], path): _convert(v, args[1], f"{path}.{k}") for k, v in value.items()}
        )
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    return value


def _plain(value: Any) -> Any:
    """The JSON-ready form of a config value."""
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


class Config:
    """Mixin for frozen dataclass configs.

    Subclasses set ``_section`` (the dotted prefix used in error messages). Before a
    subclass's own ``__post_init__`` runs, every field is checked against its type hint
    (Literal membership, numbers, nested configs) and normalised (lists -> tuples), so a
    config built directly in Python is held to the same rules as one read from a file.
    """

    _section: typing.ClassVar[str] = ""

    def __deepcopy__(self, memo: dict) -> "Config":
        # frozen and built of immutable values (tuples, read-only mappings): a copy is the same object
        return self

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("__post_init__")
        if own is None and getattr(cls, "__post_init__", None) is not None:
            return  # inherits an already-wrapped __post_init__

        def __post_init__(self: "Config") -> None:
            self._check_types()
            if own is not None:
                own(self)

        cls.__post_init__ = __post_init__  # type: ignore[attr-defined]

    def _check_types(self) -> None:
        hints = self._hints()
        prefix = f"{self._section}." if self._section else ""
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if not f.init:
                continue
            value = getattr(self, f.name)
            converted = _convert(value, hints[f.name], prefix + f.name)
            if converted is not value:
                object.__setattr__(self, f.name, converted)

    @classmethod
    def _hints(cls) -> dict[str, Any]:
        cached = cls.__dict__.get("_hints_cache")
        if cached is None:
            cached = typing.get_type_hints(cls)
            setattr(cls, "_hints_cache", cached)
        return cached

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any], path: str = "") -> C:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path or cls.__name__}: expected a mapping, got {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls) if f.init]
        hints = cls._hints()
        kwargs = {}
        for key, value in data.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in names:
                raise ConfigError(f"{where}: unknown key in {cls.__name__}; {_suggest(str(key), names)}")
            kwargs[key] = _convert(value, hints[key], where)
        missing = [f.name for f in dataclasses.fields(cls) if f.init and f.name not in kwargs
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            where = f"{path}." if path else (f"{cls._section}." if cls._section else "")
            raise ConfigError(f"{where}{missing[0]}: required in {cls.__name__} (missing: {', '.join(missing)})")
        try:
            return cls(**kwargs)
        except ConfigError as e:
            if path and not str(e).startswith(path):
                raise ConfigError(f"{path}.{e}") from None
            raise

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.init}

    def to_json(self, path: str | Path | None = None, indent: int = 2) -> str:
        text = json.dumps(self.to_dict(), indent=indent, sort_keys=False)
        if path is not None:
            _atomic_write(Path(path), text + "\n")
        return text

    def to_yaml(self, path: str | Path | None = None) -> str:
        import yaml

        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            _atomic_write(Path(path), text)
        return text

    @classmethod
    def from_json(cls: type[C], text_or_path: str | Path) -> C:
        text, where = _read(text_or_path)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{where}: not valid JSON ({e})") from None
        return cls.from_dict(data)

    @classmethod
    def from_yaml(cls: type[C], text_or_path: str | Path) -> C:
        import yaml

        text, where = _read(text_or_path)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"{where}: not valid YAML ({e})") from None
        return cls.from_dict(data or {})

    def replace(self: C, **changes: Any) -> C:
        """A new config with dotted-path overrides, e.g. ``replace(**{"attention.kv_heads": 1})``.

        A value may be a plain dict/list (converted by type) or an already-typed config.
        Setting a dotted path inside a section that is ``None`` creates it from defaults.
        """
        nested: dict[str, dict[str, Any]] = {}
        direct: dict[str, Any] = {}
        for key, value in changes.items():
            head, _, rest = key.partition(".")
            if rest:
                nested.setdefault(head, {})[rest] = value
            else:
                direct[head] = value
        names = [f.name for f in dataclasses.fields(self) if f.init]
        hints = self._hints()
        kwargs: dict[str, Any] = {}
        for key, value in direct.items():
            if key not in names:
                raise ConfigError(f"{key}: unknown key in {type(self).__name__}; {_suggest(key, names)}")
            kwargs[key] = _convert(value, hints[key], key)
        for head, sub in nested.items():
            if head not in names:
                raise ConfigError(f"{head}: unknown key in {type(self).__name__}; {_suggest(head, names)}")
            current = kwargs.get(head, getattr(self, head))
            if current is None:
                cls = _config_class(hints[head])
                if cls is None:
                    raise ConfigError(f"{head}: is not a config section, cannot set {', '.join(sub)} inside it")
                # create the section from the plain keys given (its required fields must be among them)
                plain = {k: v for k, v in sub.items() if "." not in k}
                sub = {k: v for k, v in sub.items() if "." in k}
                current = cls.from_dict(plain, path=head)
                if not sub:
                    kwargs[head] = current
                    continue
            if not isinstance(current, Config):
                raise ConfigError(f"{head}: is not a config section, cannot set {', '.join(sub)} inside it")
            try:
                kwargs[head] = current.replace(**sub)
            except ConfigError as e:
                if str(e).startswith(f"{head}.") or str(e).startswith(f"{current._section}."):
                    raise
                raise ConfigError(f"{head}.{e}") from None
        return dataclasses.replace(self, **kwargs)

    def get(self, dotted: str) -> Any:
        """The value at a dotted path, e.g. ``cfg.get("attention.kv_heads")``."""
        obj: Any = self
        for part in dotted.split("."):
            if not dataclasses.is_dataclass(obj) or not hasattr(obj, part):
                raise ConfigError(f"{dotted}: no such field (stopped at {part!r})")
            obj = getattr(obj, part)
        return obj


def _config_class(tp: Any) -> type | None:
    if isinstance(tp, type) and issubclass(tp, Config):
        return tp
    for arg in get_args(tp):
        if isinstance(arg, type) and issubclass(arg, Config):
            return arg
    return None


def _read(text_or_path: str | Path) -> tuple[str, str]:
    if isinstance(text_or_path, Path) or (
        isinstance(text_or_path, str) and "\n" not in text_or_path and text_or_path.endswith((".json", ".yaml", ".yml"))
    ):
        p = Path(text_or_path)
        if not p.is_file():
            raise ConfigError(f"{p}: no such config file")
        return p.read_text(), str(p)
    return str(text_or_path), "<text>"


def _atomic_write(path: Path, text: str) -> None:
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
