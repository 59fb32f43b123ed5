"""Configuration: one TOML file plus ``MISP_TI_*`` environment overrides.

One schema (the pydantic models below) validates everything up front; the
key reference in ``docs/configuration.md`` is generated from it
(``misp-ti config reference``). Errors name the key, the bad value and what
is allowed. Secrets are :class:`pydantic.SecretStr` and never printed.

Environment overrides: ``MISP_TI_<SECTION>__<KEY>`` with ``__`` between
levels, e.g. ``MISP_TI_MISP__API_KEY`` or
``MISP_TI_STREAMS__THREAT__ENABLED=true``. Values are read as TOML values
when they parse as one (``true``, ``5``, ``["a","b"]``, ``{tags = ["x"]}``),
else as JSON when they start with ``{`` or ``[`` (a table such as
``MISP_TI_STREAMS__THREAT_ATTRIBUTES__FILTERS='{"tags": ["tlp:clear"]}'``),
else as strings. An error in a value a variable set names the variable.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tomllib
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from misp_ti.config.renamed import Renamed, read_old_spellings
from misp_ti.errors import ConfigError
from misp_ti.redact import redact_url, url_passwords

ENV_PREFIX = "MISP_TI_"
M = TypeVar("M", bound=BaseModel)
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> timedelta:
    """``"90d"``, ``"1h30m"``, ``"10m"`` -> timedelta. Units: s, m, h, d, w.

    A bare integer is read as seconds. Anything else is an error (the
    reference silently turned a bad value into 90d).
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '90d', '10m' or '1h30m' (units s, m, h, d, w)")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return _bounded_duration(float(value))
    if isinstance(value, str):
        text = value.strip()
        pos, total = 0, 0.0
        for match in _DURATION_RE.finditer(text):
            if match.start() != pos:
                break
            total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            pos = match.end()
        if text and pos == len(text):
            return _bounded_duration(total)
    raise ValueError("expected a duration such as '90d', '10m' or '1h30m' (units s, m, h, d, w)")


#: The longest duration any key takes: a thousand years after any MISP timestamp is still a date.
MAX_DURATION = timedelta(days=365_000)


def _bounded_duration(seconds: float) -> timedelta:
    if not seconds <= MAX_DURATION.total_seconds():  # also refuses NaN
        raise ValueError("too long: at most 365000d (a thousand years), so that every expiry is a date")
    return timedelta(seconds=seconds)


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return value


def _at_least_a_second(value: timedelta) -> timedelta:
    if value < timedelta(seconds=1):
        raise ValueError("must be at least 1s (a shorter interval hammers MISP)")
    return value


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    if seconds != value.total_seconds():
        return f"{value.total_seconds()}s"
    for unit in ("w", "d", "h", "m"):
        size = _UNIT_SECONDS[unit]
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    Field(json_schema_extra={"format": "duration"}),
]
#: A duration that must not be zero (a timeout).
PositiveDuration = Annotated[Duration, AfterValidator(_positive)]
#: A polling interval: at least one second.
Interval = Annotated[Duration, AfterValidator(_at_least_a_second)]


def check_url(value: str, *, schemes: tuple[str, ...] = ("http", "https")) -> str:
    """``value`` when it is a URL with one of ``schemes``, a host, and a port in 1-65535."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a usable URL ({exc})") from None
    if parts.scheme.lower() not in schemes:
        raise ValueError(f"expected an {' or '.join(s + '://' for s in schemes)} URL")
    if not parts.hostname or any(c.isspace() for c in value):
        raise ValueError("expected a URL with a host name, e.g. https://misp.example.org")
    if port is not None and not 1 <= port <= 65535:
        raise ValueError("the port must be between 1 and 65535")
    if parts.query or parts.fragment:
        raise ValueError("a base URL takes no ?query or #fragment")
    return value


def _backoff_order(section: str, initial: timedelta, longest: timedelta) -> None:
    if longest < initial:
        raise ConfigError(
            f"{section}.backoff_max ({format_duration(longest)}) is shorter than "
            f"{section}.backoff_initial ({format_duration(initial)}): backoff_max caps the doubling delay"
        )


def _one_source(section: str, key: str, value: Any, file: Path | None) -> None:
    if value is not None and file is not None:
        raise ConfigError(
            f"{section}.{key} and {section}.{key}_file are both set (the file, the environment or the "
            "config file): keep one, so that it is clear which secret is used"
        )


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    #: Where this section sits (``misp``, ``output.elasticsearch``), for messages.
    section: ClassVar[str] = ""
    #: Old key -> :class:`Renamed`: the spellings this section still reads.
    renamed: ClassVar[dict[str, Renamed]] = {}

    @model_validator(mode="before")
    @classmethod
    def _old_spellings(cls, data: Any) -> Any:
        return read_old_spellings(cls.section, cls.renamed, data)


#: How a TLS certificate is checked, in Filebeat's words (``ssl.verification_mode``):
#: ``full`` checks the chain and the host name, ``none`` checks nothing.
VerificationMode = Literal["full", "none"]


def _mode_from_verify(value: Any) -> str:
    """The old boolean ``verify``/``verify_certs`` as a verification mode."""
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return "full" if value else "none"


_SSL_RENAMES = {"verify_certs": Renamed("ssl_verification_mode", _mode_from_verify)}


def _warn_if_others_read(path: Path, key: str) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        warnings.warn(
            f"{key}: {path} holds a secret and is readable by other users; run: chmod 600 {path}",
            InsecureConfigWarning,
            stacklevel=2,
        )


def _read_secret_file(path: Path | None, key: str) -> SecretStr | None:
    if path is None:
        return None
    try:
        return SecretStr(path.read_text(encoding="utf-8").strip())
    except OSError as exc:
        raise ValueError(f"cannot read the file given in {key}: {exc.strerror}") from None


class MispSettings(_Section):
    """How to reach MISP."""

    section = "misp"
    renamed = {
        "verify": Renamed("ssl_verification_mode", _mode_from_verify),
        **_SSL_RENAMES,
        "timeout": Renamed("request_timeout"),
    }

    url: str = Field("https://misp.example.org", description="Base URL of the MISP server (no `user:password@`: MISP takes its key in the `Authorization` header, which HTTP Basic auth would replace).")
    api_key: SecretStr | None = Field(
        None, description="MISP automation key (secret). Prefer `MISP_TI_MISP__API_KEY` or `api_key_file`."
    )
    api_key_file: Path | None = Field(None, description="File holding the MISP key (secret).")
    ssl_verification_mode: VerificationMode = Field(
        "full",
        description="`full`: check MISP's TLS certificate and host name; `none`: check nothing (logs a warning on every start). Was `verify`.",
    )
    ca_file: Path | None = Field(None, description="CA bundle used to verify MISP's certificate.")
    client_cert: Path | None = Field(None, description="Client certificate (PEM) for mutual TLS.")
    client_key: Path | None = Field(None, description="Key of the client certificate (PEM).")
    request_timeout: PositiveDuration = Field(timedelta(seconds=30), description="Deadline of one HTTP request as a whole: connect, send, and the whole answer. Was `timeout`.")
    proxy: str | None = Field(None, description="HTTP(S) proxy URL for MISP requests.")
    rate_limit: float | None = Field(None, gt=0, description="Most requests per second sent to MISP (none: no limit).")
    max_retries: int = Field(6, ge=0, le=100, description="Retries of a failed request (429, 5xx, timeouts, resets, bad bodies) before the poll fails.")
    backoff_initial: Duration = Field(timedelta(seconds=1), description="First retry delay; doubles each retry, with jitter.")
    backoff_max: Duration = Field(timedelta(seconds=60), description="Cap of the retry delay.")
    max_rate_limit_wait: Duration = Field(
        timedelta(minutes=15),
        description="A 429's `Retry-After`/`X-Rate-Limit-Reset` is honoured up to this long; a longer wait fails the poll (retried at the next interval).",
    )
    page_size: int = Field(1000, ge=1, le=100_000, description="Records per request (`limit`).")
    paging: Literal["exact", "fast"] = Field(
        "exact",
        description="`exact`: every span MISP was paged through by offset is read again (wider pages), so no hard delete during a poll can skip a row; `fast`: one change probe replaces that re-read, blind to object and event hard deletes.",
    )
    rescan_page_size: int = Field(
        1000,
        ge=1,
        le=100_000,
        description="Records per request of `exact` paging's re-reads (at least `page_size`): lower it with `page_size` when MISP times out on large pages.",
    )
    max_response_size: int = Field(
        256 * 1024 * 1024,
        ge=1024,
        le=2**40,
        description="Most bytes one MISP answer may hold, counted as received and once decompressed (a larger one fails the poll: lower `page_size`).",
    )

    @property
    def verifies_tls(self) -> bool:
        return self.ssl_verification_mode != "none"

    @property
    def shown_url(self) -> str:
        """``url`` as it may appear in a message or log line (a password in it redacted)."""
        return redact_url(self.url)

    @property
    def verify(self) -> bool:
        warnings.warn("MispSettings.verify is deprecated: use ssl_verification_mode", DeprecationWarning, stacklevel=2)
        return self.verifies_tls

    @property
    def timeout(self) -> timedelta:
        warnings.warn("MispSettings.timeout is deprecated: use request_timeout", DeprecationWarning, stacklevel=2)
        return self.request_timeout

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        value = check_url(value).rstrip("/")
        parts = urlsplit(value)
        if parts.username or parts.password:
            # httpx turns URL user-info into an HTTP Basic ``Authorization``
            # header, which replaces the one carrying the MISP key
            raise ValueError(
                "takes no user:password (it would be sent as HTTP Basic auth in place of the MISP key); "
                "put the key in misp.api_key and a proxy's credentials in misp.proxy"
            )
        return value

    @field_validator("proxy")
    @classmethod
    def _proxy(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value, schemes=("http", "https", "socks5", "socks5h"))

    @model_validator(mode="after")
    def _key_file(self) -> MispSettings:
        _backoff_order("misp", self.backoff_initial, self.backoff_max)
        _one_source("misp", "api_key", self.api_key, self.api_key_file)
        if self.api_key is None and self.api_key_file is not None:
            self.api_key = _read_secret_file(self.api_key_file, "misp.api_key_file")
            _warn_if_others_read(self.api_key_file, "misp.api_key_file")
        return self


class StreamSettings(_Section):
    """One stream (`threat_attributes`, `threat`, or a stream a plugin declares).

    A plugin stream may use a subclass with keys of its own
    (:attr:`misp_ti.streams.StreamSpec.settings`).
    """

    enabled: bool = Field(True, description="Poll this stream.")
    initial_interval: Duration = Field(timedelta(hours=120), description="How far back the first poll (and every refetch) reads.")
    interval: Interval = Field(timedelta(minutes=10), description="Time between polls in `misp-ti run` (at least 1s).")
    page_size: int | None = Field(None, ge=1, le=100_000, description="Overrides `misp.page_size` for this stream.")
    filters: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra restSearch filters (e.g. `tags`, `type`, `to_ids`). Keys the engine controls (`page`, `limit`, `order`, `timestamp`...) are refused.",
    )
    enforce_warninglist: bool = Field(False, description="Ask MISP to drop values on its warninglists.")
    include_deleted: bool = Field(True, description="Also read soft-deleted attributes so deletions reach the sinks.")
    overlap: Duration = Field(timedelta(seconds=2), description="How far each poll re-reads before the cursor (MISP timestamps have 1 s resolution).")


class Streams(_Section):
    """The built-in streams, plus one `[streams.<name>]` table per stream a
    plugin declares; those are checked against the loaded plugins (each by its
    stream's settings model) when the engine starts."""

    model_config = ConfigDict(extra="allow", validate_default=True)
    #: The row the generated reference shows for the tables plugins add.
    REFERENCE_EXTRA: ClassVar[tuple[str, str]] = (
        "<name>",
        "A stream a plugin declares (`misp-ti plugins` lists them): the keys above, `enabled` defaulting to the stream's own default (usually off), plus the keys of its settings model; checked when the engine starts.",
    )
    _configured: frozenset[str] | None = PrivateAttr(None)

    threat_attributes: StreamSettings = Field(default_factory=StreamSettings, description="`POST /attributes/restSearch`: one document per attribute.")
    threat: StreamSettings = Field(
        default_factory=lambda: StreamSettings(enabled=False),
        description="`POST /events/restSearch`: one document per event attribute and object attribute.",
    )

    def enabled(self) -> list[str]:
        """The streams to poll: enabled built-ins, then enabled plugin streams
        (those :meth:`bind` validated), in declaration order."""
        names = [name for name in type(self).model_fields if getattr(self, name).enabled]
        names += [name for name, value in (self.model_extra or {}).items() if isinstance(value, StreamSettings) and value.enabled]
        return names

    def settings(self, name: str) -> StreamSettings:
        """The validated settings of the stream ``name``."""
        value = getattr(self, name, None) if name in type(self).model_fields else (self.model_extra or {}).get(name)
        if not isinstance(value, StreamSettings):
            raise ConfigError(f"streams.{name}: not a stream the loaded plugins declare (or not checked yet: Streams.bind)")
        return value

    def bind(self, specs: Any) -> None:
        """Check the `[streams.<name>]` tables against the declared streams.

        ``specs`` maps each declared stream name to its
        :class:`~misp_ti.streams.StreamSpec`. A table naming no declared stream
        is an error listing the streams there are; a plugin stream's table is
        validated by its spec's settings model (``enabled`` defaulting to the
        spec's ``enabled_by_default``) and replaced by the validated settings,
        so ``settings()``, ``enabled()`` and ``getattr`` see it like a
        built-in. Built-in tables were validated when the config was loaded.
        """
        extra = self.__pydantic_extra__ if self.__pydantic_extra__ is not None else {}
        if self._configured is None:
            self._configured = frozenset(extra)  # the tables the configuration itself holds
        builtin = type(self).model_fields
        for name in list(extra):
            if name in specs:
                continue
            if name in self._configured:
                available = [*builtin, *(n for n in specs if n not in builtin)]
                raise ConfigError(f"streams.{name}: unknown stream; available: {', '.join(available)}")
            del extra[name]  # the defaults of a stream an earlier bind knew
        for name, spec in specs.items():
            if name in builtin:
                continue
            raw = extra.get(name, {})
            if type(raw) is spec.settings:
                continue
            extra[name] = _plugin_stream_settings(name, raw, spec)

    @model_validator(mode="before")
    @classmethod
    def _threat_off_unless_enabled(cls, data: Any) -> Any:
        # `threat` is off by default; tuning one of its keys must not switch it on
        if isinstance(data, dict) and isinstance(data.get("threat"), dict) and "enabled" not in data["threat"]:
            data = {**data, "threat": {**data["threat"], "enabled": False}}
        return data

    @model_validator(mode="after")
    def _engine_controlled_filters(self) -> Streams:
        # Raised as ConfigError directly (pydantic lets it through) so that the
        # message names the exact key; a ValueError's location stops at `filters`.
        for name in type(self).model_fields:
            for key in getattr(self, name).filters:
                reason = ENGINE_CONTROLLED_FILTERS.get(key) or (
                    THREAT_ONLY_CONTROLLED_FILTERS.get(key) if name == "threat" else None
                )
                if reason:
                    raise ConfigError(f"streams.{name}.filters.{key}: not allowed: {reason}")
        return self


def _plugin_stream_settings(name: str, raw: Any, spec: Any) -> StreamSettings:
    """``[streams.<name>]`` of a plugin stream, validated by ``spec.settings``; one-line errors."""
    model: type[StreamSettings] = spec.settings
    if isinstance(raw, StreamSettings):  # bound before, to another spec of the same name
        raw = raw.model_dump()
    if not isinstance(raw, dict):
        raise ConfigError(f"streams.{name}: expected a table of settings, got {type(raw).__name__}")
    try:
        settings = model.model_validate({"enabled": spec.enabled_by_default, **raw})
    except ValidationError as exc:
        lines = [_describe_error(err, raw, root=model, prefix=("streams", name)) for err in exc.errors()]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None
    refused = {**ENGINE_CONTROLLED_FILTERS, **spec.refused_filters()}
    for key in settings.filters:
        if key in refused:
            raise ConfigError(f"streams.{name}.filters.{key}: not allowed: {refused[key]}")
    return settings


#: restSearch keys misp-ti sets itself (paging, window, format); a user value would break paging.
ENGINE_CONTROLLED_FILTERS = {
    "page": "misp-ti pages through the results itself",
    "limit": "set the page size with streams.<stream>.page_size or misp.page_size",
    "order": "misp-ti orders by timestamp, then id, so that paging is stable",
    "timestamp": "misp-ti reads the window [cursor - overlap, now] (see initial_interval and overlap)",
    "attribute_timestamp": "misp-ti reads the window [cursor - overlap, now] (see initial_interval and overlap)",
    "returnFormat": "misp-ti reads MISP's JSON format",
    "includeDecayScore": "misp-ti always asks for decay scores (the expiry needs them)",
    "deleted": "use streams.<stream>.include_deleted",
    "enforceWarninglist": "use streams.<stream>.enforce_warninglist",
}
#: The same for the `threat` stream (`/events/restSearch`), where the window is on the event timestamp.
THREAT_ONLY_CONTROLLED_FILTERS = {
    "event_timestamp": "misp-ti reads the window [cursor - overlap, now] on the event timestamp",
    "metadata": "the threat stream needs the attributes of each event",
}


class ExpirySettings(_Section):
    """When an IOC leaves the latest view."""

    policy: str = Field("duration", description="`duration`, `refetch`, `decay-model`, or a policy a plugin declares.")
    ioc_expiration_duration: Duration = Field(timedelta(days=90), description="`duration` policy: validity after `max(timestamp, last_seen)`.")
    refetch_interval: Duration | None = Field(
        None, description="Full re-read period. Default: the period the policy declares (`refetch` 24h, `decay-model` 7d, `duration` none)."
    )
    by_type: dict[str, Duration] = Field(default_factory=dict, description="Per MISP type (or ECS indicator type) validity, overriding `ioc_expiration_duration`.")
    expire_deleted: bool = Field(True, description="A soft-deleted attribute expires at once.")
    expire_when_not_to_ids: bool = Field(False, description="An attribute whose `to_ids` is off expires at once.")
    refetch_grace: Duration | None = Field(
        None,
        description="`refetch` policy: slack added to `ingest + refetch_interval`, so documents outlive the wait until the next refetch re-reads them (it fires at the first poll after it is due). Default: twice the stream's `interval`; `0s` gives the reference's exact behaviour.",
    )
    decay_models_path: Path | None = Field(
        None,
        description="`decay-model` policy: a JSON file holding the answer of MISP's `GET /decayingModel/index`, used instead of asking MISP (offline `misp-ti transform`, or a MISP key without access to the index).",
    )

    @field_validator("policy")
    @classmethod
    def _policy(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", value):
            raise ValueError("expected a policy name such as 'duration', 'refetch' or 'decay-model'")
        return value


class SqliteSettings(_Section):
    path: Path = Field(Path("misp-ti.db"), description="Embedded store file (SQLite, WAL). Also holds the cursor state unless `state.path` is set.")
    retention: Duration = Field(timedelta(days=5), description="Source rows older than this (by ingest time) are deleted.")


class NdjsonSettings(_Section):
    path: str = Field("-", description="File to append NDJSON documents to, or `-` for stdout.")


class ElasticsearchSettings(_Section):
    section = "output.elasticsearch"
    renamed = {**_SSL_RENAMES, "timeout": Renamed("request_timeout")}

    hosts: list[str] = Field(default_factory=lambda: ["https://localhost:9200"], description="Elasticsearch URLs.")
    cloud_id: str | None = Field(None, description="Elastic Cloud id (instead of `hosts`).")
    api_key: SecretStr | None = Field(None, description="Elasticsearch API key, encoded form (secret).")
    api_key_file: Path | None = Field(None, description="File holding the API key (secret).")
    username: str | None = Field(None, description="Basic-auth user.")
    password: SecretStr | None = Field(None, description="Basic-auth password (secret).")
    password_file: Path | None = Field(None, description="File holding the password (secret).")
    ssl_verification_mode: VerificationMode = Field(
        "full",
        description="`full`: check the cluster's TLS certificate and host name; `none`: check nothing (logs a warning). Was `verify_certs`.",
    )
    ca_file: Path | None = Field(None, description="CA bundle for the cluster.")
    ssl_assert_fingerprint: str | None = Field(None, description="SHA-256 fingerprint of the cluster certificate (instead of a CA).")
    request_timeout: PositiveDuration = Field(timedelta(seconds=30), description="Deadline of one request: connect, send and the whole answer (headers are bounded per read).")
    max_response_size: int = Field(
        256 * 1024 * 1024, ge=1024, le=2**40, description="Most bytes one Elasticsearch answer may hold once decompressed."
    )
    max_retries: int = Field(5, ge=0, le=100, description="Retries of a failed request or bulk item (429/5xx).")
    namespace: str = Field("default", description="Data stream namespace: documents go to `logs-ti_misp.<stream>-<namespace>`.")
    chunk_size: int = Field(500, ge=1, le=100_000, description="Most documents per `_bulk` request.")
    chunk_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="Most bytes per `_bulk` request.")
    ilm_rollover_max_age: Duration = Field(timedelta(days=2), description="Source ILM policy: roll over after this age.")
    ilm_delete_after: Duration = Field(timedelta(days=3), description="Source ILM policy: delete this long after rollover.")
    ingested_by: Literal["server", "client"] = Field(
        "server", description="Who sets `event.ingested`: an ingest pipeline on the cluster, or misp-ti."
    )
    mode: Literal["ecs", "beats"] = Field(
        "ecs", description="`ecs`: send our documents; `beats`: send raw MISP JSON as `message` to the ti_misp integration's own pipeline."
    )
    beats_pipeline: str | None = Field(None, description="`beats` mode: the integration's ingest pipeline name (default: the data stream's default pipeline).")
    backoff_initial: Duration = Field(timedelta(seconds=2), description="First wait before retrying rejected bulk items (429/5xx); doubles each retry.")
    backoff_max: Duration = Field(timedelta(seconds=60), description="Cap of the bulk retry wait.")
    transform_frequency: Duration = Field(timedelta(seconds=30), description="How often the `latest` transform checks for new documents (1s to 1h).")
    transform_sync_delay: Duration = Field(timedelta(seconds=120), description="How long the `latest` transform waits for documents to become searchable before it reads them.")
    transform_retention_max_age: Duration = Field(timedelta(minutes=1), description="The latest view drops an indicator this long after its `misp.attribute.decayed_at`.")
    upgrade_wait: Duration = Field(
        timedelta(minutes=10),
        description="After an asset upgrade, how long provision waits for the new latest view's first checkpoint before moving the alias to it; past it the alias stays on the old view until the next provision.",
    )

    @property
    def verifies_tls(self) -> bool:
        return self.ssl_verification_mode != "none"

    @property
    def verify_certs(self) -> bool:
        warnings.warn(
            "ElasticsearchSettings.verify_certs is deprecated: use ssl_verification_mode", DeprecationWarning, stacklevel=2
        )
        return self.verifies_tls

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        for host in value:
            check_url(host)
            parts = urlsplit(host)
            if parts.username or parts.password:
                raise ValueError("put credentials in api_key or username/password, not in the URL")
        return value

    @model_validator(mode="after")
    def _secret_files(self) -> ElasticsearchSettings:
        _backoff_order("output.elasticsearch", self.backoff_initial, self.backoff_max)
        _one_source("output.elasticsearch", "api_key", self.api_key, self.api_key_file)
        _one_source("output.elasticsearch", "password", self.password, self.password_file)
        if self.api_key is None and self.api_key_file is not None:
            self.api_key = _read_secret_file(self.api_key_file, "output.elasticsearch.api_key_file")
            _warn_if_others_read(self.api_key_file, "output.elasticsearch.api_key_file")
        if self.password is None and self.password_file is not None:
            self.password = _read_secret_file(self.password_file, "output.elasticsearch.password_file")
            _warn_if_others_read(self.password_file, "output.elasticsearch.password_file")
        return self


class OutputSettings(BaseModel):
    """Where documents go. A plugin sink's table may still sit here
    (`[output.<sink name>]`, deprecated: its place is `[plugin.<name>]`); it
    is checked against the loaded plugins."""

    model_config = ConfigDict(extra="allow", validate_default=True)

    sinks: list[str] = Field(default_factory=lambda: ["sqlite"], min_length=1, description="Enabled sinks: `sqlite`, `elasticsearch`, `ndjson`, or a plugin's sink.")
    batch_size: int = Field(1000, ge=1, le=100_000, description="Most documents handed to `emit` at once.")
    preserve_original_event: bool = Field(False, description="Keep the raw MISP JSON in `event.original`.")
    dead_letter_path: Path | None = Field(None, description="NDJSON file for documents a sink rejected (default: next to the embedded store).")
    sqlite: SqliteSettings = Field(default_factory=SqliteSettings)
    ndjson: NdjsonSettings = Field(default_factory=NdjsonSettings)
    elasticsearch: ElasticsearchSettings = Field(default_factory=ElasticsearchSettings)

    @field_validator("sinks")
    @classmethod
    def _distinct_sinks(cls, value: list[str]) -> list[str]:
        twice = sorted({name for name in value if value.count(name) > 1})
        if twice:
            raise ValueError(f"names {', '.join(twice)} more than once (each sink receives every document once)")
        return value

    def plugin_section(self, name: str) -> dict[str, Any]:
        """Deprecated: a plugin's settings live in ``[plugin.<name>]``, read with
        :meth:`Config.plugin_settings`."""
        warnings.warn(
            "OutputSettings.plugin_section is deprecated: declare MISP_TI_SETTINGS and read "
            "ctx.config.plugin_settings(name, Model) ([plugin.<name>])",
            DeprecationWarning,
            stacklevel=2,
        )
        return self._plugin_table(name)

    def _plugin_table(self, name: str) -> dict[str, Any]:
        extra = self.model_extra or {}
        value = extra.get(name, {})
        return value if isinstance(value, dict) else {}


class StateSettings(_Section):
    path: Path | None = Field(None, description="File holding cursors and schedules (SQLite). Default: `output.sqlite.path`.")


class ServiceSettings(_Section):
    """`misp-ti run` as a long-lived service: its metrics and health endpoint."""

    section = "service"

    metrics_address: str | None = Field(
        None,
        description="`HOST:PORT` where `run` serves Prometheus metrics (`/metrics`) and its health (`/healthz`, answering like `misp-ti status`), e.g. `127.0.0.1:9464` (port 0: any free port, printed at start). Off when unset. Only a loopback address unless `metrics_allow_remote`.",
    )
    metrics_allow_remote: bool = Field(
        False,
        description="Allow a `metrics_address` that is not loopback (the endpoints have no authentication: put them behind a firewall or a proxy).",
    )
    degraded_after_intervals: int = Field(
        3,
        ge=1,
        le=1000,
        description="`status` and `/healthz` call a stream degraded when no cycle of it completed for more than this many of its poll intervals (a hung or silently stopped `run`).",
    )

    def metrics_endpoint(self) -> tuple[str, int] | None:
        """``(host, port)`` of the metrics server, or ``None`` when it is off."""
        if self.metrics_address is None:
            return None
        host, _, port = self.metrics_address.rpartition(":")
        return host.strip("[]"), int(port)

    @field_validator("metrics_address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError("expected HOST:PORT such as 127.0.0.1:9464")
        return value

    @model_validator(mode="after")
    def _loopback(self) -> ServiceSettings:
        endpoint = self.metrics_endpoint()
        if endpoint is not None and not self.metrics_allow_remote and not is_loopback_host(endpoint[0]):
            raise ValueError(
                f"metrics_address: {endpoint[0]} is not a loopback address; the metrics have no "
                "authentication (set service.metrics_allow_remote = true to serve them there anyway)"
            )
        return self


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class PluginSettings(_Section):
    load: list[str] = Field(default_factory=list, description="Extra plugin modules to register (like `--plugin`).")
    block: list[str] = Field(default_factory=list, description="Plugin names never to register (e.g. `sqlite_sink`).")
    entrypoints: bool = Field(True, description="Load plugins installed under the `misp_ti` entry-point group.")


class LogSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    format: Literal["text", "json"] = Field("text", description="Log line format.")


class Config(BaseModel):
    """The whole configuration. `[plugin.<name>]` tables hold plugins' settings,
    validated by the model each plugin declares (:meth:`plugin_settings`)."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    misp: MispSettings = Field(default_factory=MispSettings)
    streams: Streams = Field(default_factory=Streams)
    expiry: ExpirySettings = Field(default_factory=ExpirySettings)
    output: OutputSettings = Field(default_factory=OutputSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    service: ServiceSettings = Field(default_factory=ServiceSettings)
    plugins: PluginSettings = Field(default_factory=PluginSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    plugin: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Settings of plugins, one table each (`[plugin.<name>]`), checked against the model the plugin declares (`MISP_TI_SETTINGS`).",
    )

    _plugin_settings: dict[str, BaseModel] = PrivateAttr(default_factory=dict)
    #: The ``[misp.<name>]`` sources (:mod:`misp_ti.config.sources`); empty: one ``[misp]``.
    _named: dict[str, Any] = PrivateAttr(default_factory=dict)
    #: The source a :meth:`for_source` view is for.
    _source: str = PrivateAttr("default")

    # sources -----------------------------------------------------------------

    @property
    def named_sources(self) -> bool:
        """Whether the MISP servers are ``[misp.<name>]`` tables (then documents
        carry ``labels.misp_source``), rather than the single ``[misp]``."""
        return bool(self._named)

    @property
    def source(self) -> str:
        """The source this config is the view of (``default`` for a whole single-``[misp]`` config)."""
        return self._source

    def source_names(self) -> list[str]:
        """The sources one engine polls, in the config's order."""
        return list(self._named) if self._named else ["default"]

    def for_source(self, name: str) -> Config:
        """The config as one source sees it: ``misp`` and ``streams`` are that
        source's (its ``[misp.<name>]`` table and its stream overrides)."""
        if not self._named:
            if name != "default":
                raise ConfigError(f"--source {name}: unknown source; the config has one MISP, the source default")
            return self
        named = self._named.get(name)
        if named is None:
            raise ConfigError(f"--source {name}: unknown source; the config's sources: {', '.join(self._named)}")
        view = self.model_copy(update={"misp": named.misp, "streams": named.streams})
        view._source = name
        return view

    def plugin_settings(self, name: str, model: type[M]) -> M:
        """The ``[plugin.<name>]`` table validated by the plugin's ``model``
        (a pydantic model), once per config; a missing table is the model's defaults.

        A plugin sink's table in the old place, ``[output.<name>]``, is still
        read, with a :class:`DeprecationWarning`. A bad value is a one-line
        :class:`~misp_ti.errors.ConfigError` naming the key (``plugin.<name>.<key>``).
        """
        from misp_ti.config.plugin_settings import validate_plugin_table

        cached = self._plugin_settings.get(name)
        if cached is None:
            cached = self._plugin_settings[name] = validate_plugin_table(self, name, model)
        elif not isinstance(cached, model):
            raise ConfigError(f"plugin.{name}: two plugins declare settings under this name")
        return cached

    def state_path(self) -> Path:
        return self.state.path or self.output.sqlite.path

    def secrets(self) -> list[str]:
        """Every secret value in this config, for redaction filters."""
        values = [
            self.output.elasticsearch.api_key,
            self.output.elasticsearch.password,
        ]
        sources = [named.misp for named in self._named.values()] or [self.misp]
        values += [misp.api_key for misp in sources]
        found = [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]
        # a password in a URL's user-info is a secret too
        for misp in sources:
            found += url_passwords(misp.url, misp.proxy)
        return found

    def redacted(self) -> dict[str, Any]:
        """The config as plain data with secrets replaced by ``"**********"``."""
        data = self.model_dump(mode="json")
        data["misp"] = _redacted_misp(self.misp)
        if self._named:
            data["misp"] = {
                name: {**_redacted_misp(named.misp), "streams": named.streams.model_dump(mode="json")}
                for name, named in self._named.items()
            }
        es = data["output"]["elasticsearch"]
        es["api_key"] = "**********" if self.output.elasticsearch.api_key else None
        es["password"] = "**********" if self.output.elasticsearch.password else None
        return data


def _redacted_misp(misp: MispSettings) -> dict[str, Any]:
    data = misp.model_dump(mode="json")
    data["api_key"] = "**********" if misp.api_key else None
    data["url"] = redact_url(misp.url)
    data["proxy"] = redact_url(misp.proxy) if misp.proxy else None
    return data


# ---------------------------------------------------------------------------
# loading


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


class InsecureConfigWarning(UserWarning):
    pass


class UnknownVariableWarning(UserWarning):
    """A ``MISP_TI_`` environment variable that no key or option reads (a typo, usually)."""


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
