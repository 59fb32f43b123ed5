"""Loading a configuration: the TOML file, ``MISP_TI_*`` overrides, validation,
and errors that name the key (or the variable) at fault."""

from __future__ import annotations

import json
import os
import stat
import tomllib
import warnings
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from misp_ti.config import Config
from misp_ti.config.values import ENV_PREFIX, InsecureConfigWarning, UnknownVariableWarning
from misp_ti.errors import ConfigError
from misp_ti.redact import redact_url


def _env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    if raw.lstrip()[:1] in ("{", "["):  # JSON, e.g. MISP_TI_STREAMS__THREAT__FILTERS='{"tags": ["tlp:clear"]}'
        try:
            return json.loads(raw)
        except ValueError:
            pass
    return raw


def env_variables(environ: dict[str, str] | os._Environ[str]) -> dict[tuple[str, ...], str]:
    """Where each override of :func:`env_overrides` comes from: key path -> variable name."""
    found: dict[tuple[str, ...], str] = {}
    for name in environ:
        if name.startswith(ENV_PREFIX) and "__" in name[len(ENV_PREFIX):]:
            parts = tuple(p.lower() for p in name[len(ENV_PREFIX):].split("__"))
            if all(parts):
                found[parts] = name
    return found


def name_variable(line: str, variables: dict[tuple[str, ...], str]) -> str:
    """``misp.page_size: bad value...`` -> ``MISP_TI_MISP__PAGE_SIZE (misp.page_size): ...``
    when an environment variable set that key (or a table holding it)."""
    key, sep, rest = line.partition(": ")
    if not sep:
        return line
    parts = tuple(key.split("."))
    for length in range(len(parts), 0, -1):
        variable = variables.get(parts[:length])
        if variable is not None:
            return f"{variable} (environment, {key}): {rest}"
    return line


def env_overrides(environ: dict[str, str] | os._Environ[str]) -> dict[str, Any]:
    """Nested dict built from ``MISP_TI_A__B__C=value`` variables."""
    tree: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name[len(ENV_PREFIX):]:
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        if not all(parts):
            continue
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            # secrets are never parsed as TOML: a key that looks like a number stays text
            node[parts[-1]] = raw if parts[-1] in {"api_key", "password"} else _env_value(raw)
    return tree


def merge_settings(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` laid over ``base``, table by table (a nested dict merges, any
    other value replaces); neither argument is changed."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_settings(out[key], value)
        else:
            out[key] = value
    return out


def _describe_error(err: Any, data: dict[str, Any], *, root: type[BaseModel] | None = None, prefix: tuple[str, ...] = ()) -> str:
    """One line for one pydantic error; ``prefix`` is where ``root`` (default
    :class:`Config`) sits in the whole configuration."""
    key = ".".join(str(p) for p in (*prefix, *err["loc"]))
    kind = err["type"]
    if kind == "extra_forbidden":
        parent = err["loc"][:-1]
        allowed = _allowed_keys(parent, root or Config)
        hint = f"; allowed keys here: {', '.join(allowed)}" if allowed else ""
        return f"{key}: unknown key{hint}"
    if kind == "missing":
        return f"{key}: required"
    msg = err["msg"].removeprefix("Value error, ")
    value = err.get("input")
    if _is_secret_key(key):
        shown = "(hidden)"
    else:
        shown = redact_url(repr(value))
        if len(shown) > 80:
            shown = shown[:77] + "..."
    return f"{key}: bad value {shown}: {msg}"


def _is_secret_key(key: str) -> bool:
    return key.endswith("api_key") or key.endswith("password")


def _allowed_keys(loc: tuple[Any, ...], root: type[BaseModel]) -> list[str]:
    model: Any = root
    for part in loc:
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None:
            return []
        model = field.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
    return sorted(model.model_fields)


def build_config(data: dict[str, Any], *, source: str = "config", variables: dict[tuple[str, ...], str] | None = None) -> Config:
    """Validate ``data``; ``variables`` (from :func:`env_variables`) makes an
    error on a key an environment variable set name that variable."""
    from misp_ti.config.sources import SourceErrors, split_sources, validate_sources

    variables = variables or {}
    try:
        data, tables = split_sources(data)
        config = Config.model_validate(data)
        if tables:
            config._named = validate_sources(tables, data.get("misp", {}), data.get("streams", {}))
            config.misp = next(iter(config._named.values())).misp  # for code that knows one MISP
        return config
    except (ValidationError, SourceErrors) as exc:
        lines = exc.lines if isinstance(exc, SourceErrors) else [_describe_error(err, data) for err in exc.errors()]
        named = [name_variable(line, variables) for line in lines]
        if all(a != b for a, b in zip(lines, named, strict=True)):
            source = "environment override" + ("s" if len(named) > 1 else "")  # the file is not at fault
        raise ConfigError(f"invalid {source}:\n  " + "\n  ".join(named)) from None
    except ConfigError as exc:
        if not variables:
            raise
        raise ConfigError(name_variable(str(exc), variables)) from None


def load_config(
    path: str | Path | None = None,
    *,
    environ: dict[str, str] | os._Environ[str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Read ``path`` (TOML; none: defaults), apply env overrides, validate.

    ``MISP_TI_CONFIG`` names the file when ``path`` is ``None``.
    """
    environ = os.environ if environ is None else environ
    if path is None and environ.get("MISP_TI_CONFIG"):
        path = environ["MISP_TI_CONFIG"]
    data: dict[str, Any] = {}
    source = "configuration"
    if path is not None:
        path = Path(path)
        source = f"configuration {path}"
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file {path} is not UTF-8 text ({_not_utf8(exc)}): save it as UTF-8") from None
        except OSError as exc:
            raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
        _warn_if_world_readable(path, data)
    _warn_unknown_variables(environ)
    data = merge_settings(data, env_overrides(environ))
    if overrides:
        data = merge_settings(data, overrides)
    return build_config(data, source=source, variables=env_variables(environ))


def _not_utf8(exc: UnicodeDecodeError) -> str:
    where = f"byte {exc.start} is {exc.object[exc.start:exc.start + 1]!r}"
    return where + ("; it looks like UTF-16" if exc.object[:2] in (b"\xff\xfe", b"\xfe\xff") else "")


def _contains_secret(data: dict[str, Any]) -> bool:
    for key, value in data.items():
        if isinstance(value, dict):
            if _contains_secret(value):
                return True
        elif key in {"api_key", "password"} and value:
            return True
    return False


#: ``MISP_TI_`` variables that are not ``<SECTION>__<KEY>`` overrides, and who reads them.
OTHER_VARIABLES = {"MISP_TI_CONFIG": "the config file", "MISP_TI_SIMULATOR_API_KEY": "misp-ti simulator"}
#: Prefixes of variables read elsewhere (the pytest kit's ``MISP_TI_TEST_*``).
OTHER_PREFIXES = ("MISP_TI_TEST_",)


def _warn_unknown_variables(environ: dict[str, str] | os._Environ[str]) -> None:
    """Warn about ``MISP_TI_X`` variables that override nothing (a missing ``__`` between
    section and key, or an empty level); the ``__`` ones are checked as keys, by name."""
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in OTHER_VARIABLES or name.startswith(OTHER_PREFIXES):
            continue
        parts = name[len(ENV_PREFIX):].split("__")
        if len(parts) < 2 or not all(parts):
            warnings.warn(
                f"environment variable {name} matches no configuration key and is ignored "
                f"(overrides are spelled MISP_TI_<SECTION>__<KEY>, e.g. MISP_TI_MISP__URL)",
                UnknownVariableWarning,
                stacklevel=3,
            )


def _warn_if_world_readable(path: Path, data: dict[str, Any]) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRGRP | stat.S_IROTH) and _contains_secret(data):
        warnings.warn(
            f"{path} contains secrets and is readable by other users; run: chmod 600 {path}",
            InsecureConfigWarning,
            stacklevel=3,
        )
