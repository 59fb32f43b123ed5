"""The Elasticsearch client built from ``output.elasticsearch``, and a safe sender.

Nothing built here ever puts a credential into a message: errors name the
request and Elasticsearch's error type and reason, never headers or URLs
with user info.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from misp_ti.config import Config, ElasticsearchSettings
from misp_ti.errors import ConfigError, SinkError
from misp_ti.sinks.elasticsearch.provision import Answer, Request

JSON_HEADERS = {"accept": "application/json", "content-type": "application/json"}


def client_options(settings: ElasticsearchSettings) -> dict[str, Any]:
    """Keyword arguments for :class:`elasticsearch.Elasticsearch` (tested without a cluster)."""
    from misp_ti.sinks.elasticsearch.bounded import bounded_node_class

    options: dict[str, Any] = {
        "node_class": bounded_node_class(
            timeout=settings.request_timeout.total_seconds(), limit=settings.max_response_size
        ),
        "request_timeout": settings.request_timeout.total_seconds(),
        "max_retries": settings.max_retries,
        "retry_on_timeout": True,
        "verify_certs": settings.verifies_tls,
    }
    if settings.cloud_id:
        options["cloud_id"] = settings.cloud_id
    else:
        for host in settings.hosts:
            parts = urlsplit(host)
            if parts.username or parts.password:
                raise ConfigError("output.elasticsearch.hosts: put credentials in api_key or username/password, not in the URL")
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(f"output.elasticsearch.hosts: {host!r} is not an http:// or https:// URL")
        options["hosts"] = list(settings.hosts)
    if settings.api_key is not None:
        options["api_key"] = settings.api_key.get_secret_value()
    elif settings.username:
        if settings.password is None:
            raise ConfigError("output.elasticsearch.password: required with username (or use password_file)")
        options["basic_auth"] = (settings.username, settings.password.get_secret_value())
    if settings.ca_file is not None:
        options["ca_certs"] = str(settings.ca_file)
    if settings.ssl_assert_fingerprint:
        options["ssl_assert_fingerprint"] = settings.ssl_assert_fingerprint
    if not settings.verifies_tls:
        options["ssl_show_warn"] = False  # warned once, at engine start (startup_warnings)
    return options


def startup_warnings(config: Config) -> list[str]:
    """What the sink warns about when an engine starts with it (declared in ``MISP_TI_SINKS``)."""
    if not config.output.elasticsearch.verifies_tls:
        return ['TLS verification of Elasticsearch is OFF: output.elasticsearch.ssl_verification_mode = "none"']
    return []


def make_client(settings: ElasticsearchSettings) -> Any:
    from elasticsearch import Elasticsearch

    try:
        return Elasticsearch(**client_options(settings))
    except ValueError as exc:  # bad cloud_id, bad host...: the message holds no secret
        raise ConfigError(f"output.elasticsearch: {exc}") from None


def describe_error(exc: BaseException) -> str:
    """Elasticsearch's error type and reason, or the transport error's kind."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        cause = (error.get("root_cause") or [error])[0]
        return f"{error.get('type', 'error')}: {cause.get('reason') or error.get('reason') or ''}"[:500]
    status = getattr(exc, "status_code", None) or getattr(getattr(exc, "meta", None), "status", None)
    if status:
        return f"HTTP {status}"
    from misp_ti.sinks.elasticsearch.bounded import BOUND_HIT

    for cause in (exc, *(getattr(exc, "errors", None) or ())):
        text = f"{getattr(cause, 'message', '')} {cause}"
        if BOUND_HIT in text:  # our own message: the deadline or the size limit
            return f"{type(exc).__name__}: {text[text.index(BOUND_HIT):][:300]}"
    return type(exc).__name__  # connection refused, timeout, TLS failure...


def send(client: Any, req: Request, *, refusals_are_answers: bool = False) -> Answer:
    """Send one planned request; 404 is an answer, every other failure a SinkError
    (with ``refusals_are_answers``, every HTTP status is an answer)."""
    from elasticsearch import ApiError, NotFoundError, TransportError

    try:
        resp = client.perform_request(
            req["method"], req["path"], params=req["params"] or None, body=req["body"],
            headers=JSON_HEADERS if req["body"] is not None else {"accept": "application/json"},
        )
    except NotFoundError as exc:
        return Answer(404, exc.body)
    except ApiError as exc:
        if refusals_are_answers:
            return Answer(exc.status_code, exc.body)
        raise SinkError(f"Elasticsearch refused {req['method']} {req['path']} (HTTP {exc.status_code}): {describe_error(exc)}") from None
    except TransportError as exc:
        raise SinkError(f"Elasticsearch is unreachable ({describe_error(exc)}) on {req['method']} {req['path']}") from None
    return Answer(resp.meta.status, resp.body)
