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

import re
import stat
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from misp_ti.config.renamed import Renamed, read_old_spellings
from misp_ti.config.values import (
    ENV_PREFIX,
    MAX_DURATION,
    Duration,
    InsecureConfigWarning,
    Interval,
    PositiveDuration,
    UnknownVariableWarning,
    _backoff_order,
    _one_source,
    check_url,
    format_duration,
    parse_duration,
)
from misp_ti.errors import ConfigError
from misp_ti.redact import redact_url, url_passwords

__all__ = [
    "Config",
    "Duration",
    "ENGINE_CONTROLLED_FILTERS",
    "ENV_PREFIX",
    "ElasticsearchSettings",
    "ExpirySettings",
    "InsecureConfigWarning",
    "Interval",
    "LogSettings",
    "MAX_DURATION",
    "MispSettings",
    "NdjsonSettings",
    "OTHER_PREFIXES",
    "OTHER_VARIABLES",
    "OutputSettings",
    "PluginSettings",
    "PositiveDuration",
    "ServiceSettings",
    "SqliteSettings",
    "StateSettings",
    "StreamSettings",
    "Streams",
    "THREAT_ONLY_CONTROLLED_FILTERS",
    "UnknownVariableWarning",
    "VerificationMode",
    "build_config",
    "check_url",
    "env_overrides",
    "env_variables",
    "format_duration",
    "is_loopback_host",
    "load_config",
    "merge_settings",
    "name_variable",
    "parse_duration",
    "redact_url",
    "url_passwords",
]

M = TypeVar("M", bound=BaseModel)
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


# loading lives in its own module; it needs Config, defined above
from misp_ti.config.loading import (  # noqa: E402
    OTHER_PREFIXES,
    OTHER_VARIABLES,
    _describe_error,  # noqa: F401 (Streams reads it; tests too)
    build_config,
    env_overrides,
    env_variables,
    load_config,
    merge_settings,
    name_variable,
)
