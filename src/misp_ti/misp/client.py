"""HTTP client for MISP's ``restSearch`` endpoints and its JSON ``GET`` reads (httpx).

One :class:`MispClient` per engine: it owns the connection pool, the
``Authorization`` header, TLS, proxy, the request-rate limit and the retry
policy, one policy for both methods (``search`` POSTs, ``get_json`` GETs, e.g.
``/decayingModel/index`` for the ``decay-model`` policy). It answers with validated data or raises
:class:`~misp_ti.errors.FetchError`; it never returns an empty result for a
response it could not understand.

How failures are classified (facts from MISP's ``AppController`` and
``RestResponseComponent``):

* retried with capped exponential backoff and jitter, at most
  ``misp.max_retries`` times: 429 (waiting ``Retry-After`` or MISP's
  ``X-Rate-Limit-Reset``, which is a number of seconds), 500/502/503/504,
  timeouts, refused or reset connections, truncated bodies, bodies that are
  not JSON (an HTML error page from a proxy) and JSON of the wrong shape;
* not retried: 403 (MISP answers 403, never 401, for a bad key), 404 (wrong
  URL), 405 (MISP's answer to a body it cannot parse, or not a MISP URL),
  other 4xx, redirects (usually a login page: wrong URL or key), TLS
  verification failures, an answer larger than ``misp.max_response_size``
  (counted as received and once decompressed: the same page would come again).

Each request has one deadline, ``misp.request_timeout``, for all of it:
connect, send, headers and the whole body (:mod:`misp_ti.misp.transport`).
An attribute page that is not JSON as a whole is read record by record
(:mod:`misp_ti.misp.lenient`).

The key never appears in a message, a log line or a repr: it lives only in
the httpx client's default headers.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import httpx
import orjson

from misp_ti.config import MispSettings, is_loopback_host
from misp_ti.errors import ConfigError, FetchError
from misp_ti.misp import lenient
from misp_ti.misp import transport as bounded
from misp_ti.misp.records import PATHS, record_timestamp  # noqa: F401  (their old home)

log = logging.getLogger("misp_ti.misp.client")

_RETRY_STATUSES = {500, 502, 503, 504}
#: How much of a non-200 answer is read (for its error message); the rest is dropped.
_ERROR_BODY_LIMIT = 64 * 1024

_T = TypeVar("_T")


class RequestObserver(Protocol):
    """Told of every HTTP request (see :class:`MispClient`'s ``observer``)."""

    def __call__(self, status: int | str, seconds: float, *, retry: bool) -> None: ...


@dataclass(slots=True)
class SearchResult:
    """One answered restSearch request."""

    #: Attribute dicts (scope ``attributes``) or event dicts without their
    #: ``{"Event": ...}`` wrapper (scope ``events``).
    items: list[dict[str, Any]]
    #: ``X-Result-Count`` (``None`` when MISP did not send it).
    result_count: int | None
    #: ``X-Skipped-Elements-Count`` (MISP >= 2.4.196; ``None`` otherwise).
    skipped: int | None
    #: Requests sent for this answer (1 + retries).
    attempts: int


class _Retryable(Exception):
    """A failure worth another try; ``wait`` overrides the backoff delay."""

    def __init__(self, message: str, wait: float | None = None):
        super().__init__(message)
        self.wait = wait


def _preview(body: bytes, limit: int = 120) -> str:
    text = body[:limit].decode("utf-8", "replace")
    text = " ".join(text.split())
    return repr(text + ("..." if len(body) > limit else ""))


def _describe_body(response: httpx.Response) -> str:
    ctype = response.headers.get("content-type", "no content type")
    return f"{ctype}, {len(response.content)} bytes, starting {_preview(response.content)}"


def _misp_message(response: httpx.Response) -> str:
    """MISP's own explanation from a ``{"name", "message", "url"}`` error body, if any."""
    try:
        data = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return ""
    if isinstance(data, dict):
        for key in ("message", "name", "errors"):
            value = data.get(key)
            if isinstance(value, str) and value:
                return f": {value[:300]}"
    return ""


def _header_int(response: httpx.Response, name: str) -> int | None:
    raw = response.headers.get(name)
    if raw is None:
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        raise _Retryable(f"MISP sent a {name} header that is not a whole number: {raw[:40]!r}") from None
    if value < 0:
        raise _Retryable(f"MISP sent a negative {name} header: {value}")
    return value


def _retry_after(response: httpx.Response, *, now: float) -> float | None:
    """Seconds to wait before retrying a 429, from ``Retry-After`` or ``X-Rate-Limit-Reset``.

    ``None`` (the normal backoff) when neither says anything usable: a
    negative number, a date in the past, or a value that does not parse.
    """
    raw = response.headers.get("retry-after", "").strip()
    if raw:
        try:
            return _usable_wait(float(raw))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            when = None
        if when is not None and when.tzinfo is not None:
            return _usable_wait(when.timestamp() - now, zero_ok=False)
        return None
    raw = response.headers.get("x-rate-limit-reset", "").strip()
    if raw:
        try:
            value = float(raw)
        except ValueError:
            return None
        # MISP sends the Redis TTL (seconds left); tolerate an epoch time too
        return _usable_wait(value - now, zero_ok=False) if value > 1_000_000_000 else _usable_wait(value)
    return None


def _usable_wait(seconds: float, *, zero_ok: bool = True) -> float | None:
    """``seconds`` when it is a wait at all (finite, not negative; a moment that
    has already passed is no wait either), else ``None``."""
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not zero_ok):
        return None
    return seconds


def _ssl_context(settings: MispSettings) -> ssl.SSLContext:
    try:
        if settings.verifies_tls:
            context = ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
        else:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"misp.ca_file: cannot load CA bundle {settings.ca_file}: {exc}") from None
    if settings.client_cert is not None:
        try:
            context.load_cert_chain(str(settings.client_cert), str(settings.client_key) if settings.client_key else None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"misp.client_cert / misp.client_key: cannot load {settings.client_cert}: {exc}"
            ) from None
    elif settings.client_key is not None:
        raise ConfigError("misp.client_key is set but misp.client_cert is not")
    return context


class MispClient:
    """Sends restSearch requests to one MISP server.

    :param settings: the ``[misp]`` section.
    :param transport: an httpx transport (tests pass ``httpx.MockTransport``).
    :param sleep: how to wait (tests pass a recorder so retries take no time).
    :param observer: called after every HTTP request as
        ``observer(status, seconds, retry=...)``: the status code (or
        ``"error"`` when no answer came), the request's time, and whether it
        was a retry. Metrics hang here; an observer that raises is logged and ignored.
    """

    def __init__(
        self,
        settings: MispSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
        observer: RequestObserver | None = None,
    ):
        self.settings = settings
        self.observer = observer
        self.sleep = sleep
        self.rng = rng
        key = settings.api_key.get_secret_value() if settings.api_key is not None else ""
        if not key:
            raise ConfigError(
                "misp.api_key: not set (use MISP_TI_MISP__API_KEY, misp.api_key or misp.api_key_file)"
            )
        if not key.isascii() or any(c in key for c in "\r\n\0") or key != key.strip():
            # say what is wrong without showing the key
            raise ConfigError("misp.api_key: contains characters an HTTP header cannot carry (spaces, line breaks or non-ASCII)")
        if not settings.verifies_tls:
            log.warning(
                "TLS certificate verification for %s is OFF (misp.ssl_verification_mode = 'none'): "
                "anyone on the network path can read and alter the indicators",
                settings.shown_url,
            )
        if settings.url.lower().startswith("http://") and not is_loopback_host(httpx.URL(settings.url).host):
            log.warning(
                "misp.url %s is plain http://: the API key and the indicators travel in clear; use https://",
                settings.shown_url,
            )
        self._min_gap = 1.0 / settings.rate_limit if settings.rate_limit else 0.0
        self._next_slot = 0.0
        self._lock = threading.Lock()
        self._http = httpx.Client(
            base_url=settings.url,
            headers={
                "Authorization": key,
                "Accept": "application/json",
                "Content-Type": "application/json",
                "User-Agent": "misp-ti",
            },
            timeout=settings.request_timeout.total_seconds(),
            verify=_ssl_context(settings) if settings.url.startswith("https:") else True,
            proxy=settings.proxy,
            transport=transport,
            follow_redirects=False,
        )
        # every socket operation of a request ends by its deadline (request_timeout as a whole)
        bounded.install_deadline(self._http)

    def __repr__(self) -> str:
        return f"MispClient(url={self.settings.shown_url!r})"

    def close(self) -> None:
        self._http.close()

    # -------------------------------------------------------------------

    def search(
        self, scope: str, body: Mapping[str, Any], cancelled: threading.Event | None = None, *, path: str | None = None
    ) -> SearchResult:
        """POST ``body`` to the restSearch endpoint of ``scope``, with retries.

        ``scope`` (``attributes`` or ``events``) is the shape the answer is
        validated against; ``path`` overrides where it is sent (a stream's
        :attr:`~misp_ti.streams.StreamSpec.path`), default ``PATHS[scope]``.

        ``cancelled``: once set (the engine's cycle is over), no further
        attempt is made and waits end early.

        :raises FetchError: a permanent failure, the retry budget is spent, or cancelled.
        """
        (items, count, skipped), attempts = self._with_retries(
            "POST", path or PATHS[scope], orjson.dumps(body), lambda response: self._parse(scope, response), cancelled
        )
        return SearchResult(items, count, skipped, attempts)

    def get_json(self, path: str, cancelled: threading.Event | None = None) -> Any:
        """GET ``path`` (below ``misp.url``) and return its decoded JSON body.

        Same retries, waits, rate limit, cancellation and error messages as
        :meth:`search`; a body that is not JSON is retried. The shape of the
        JSON is the caller's to check.

        :raises FetchError: a permanent failure, the retry budget is spent, or cancelled.
        """
        if not path.startswith("/") or path.startswith("//"):
            # an absolute URL would carry the key to another host
            raise ValueError(f"get_json wants a path below misp.url starting with one '/', not {path[:80]!r}")
        value, _ = self._with_retries("GET", path, None, _json_body, cancelled)
        return value

    def _with_retries(
        self,
        method: str,
        path: str,
        payload: bytes | None,
        parse: Callable[[httpx.Response], _T],
        cancelled: threading.Event | None,
    ) -> tuple[_T, int]:
        """``(parse(response), attempts)`` of the first answer that parses; the one retry loop."""
        settings = self.settings
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._send(method, path, payload, retry=attempt > 1, cancelled=cancelled)
                return parse(response), attempt
            except _Retryable as exc:
                if attempt > settings.max_retries:
                    raise FetchError(
                        f"{method} {settings.shown_url}{path} failed after {attempt} attempts; last error: {exc}"
                    ) from None
                if cancelled is not None and cancelled.is_set():
                    raise FetchError(f"{method} {settings.shown_url}{path}: the poll was stopped; not retrying ({exc})") from None
                delay = self._delay(attempt, exc.wait)
                log.warning(
                    "%s %s%s: %s; retry %d of %d in %.2fs",
                    method, settings.shown_url, path, exc, attempt, settings.max_retries, delay,
                )
                if cancelled is not None and self.sleep is time.sleep:
                    cancelled.wait(delay)
                else:
                    self.sleep(delay)
                if cancelled is not None and cancelled.is_set():
                    raise FetchError(f"{method} {settings.shown_url}{path}: the poll was stopped; not retrying") from None

    def _delay(self, attempt: int, wait: float | None) -> float:
        cap = self.settings.backoff_max.total_seconds()
        if wait is not None:
            longest = self.settings.max_rate_limit_wait.total_seconds()
            if wait > longest:
                raise FetchError(
                    f"MISP asks to wait {wait:.0f}s before the next request, longer than "
                    f"misp.max_rate_limit_wait ({longest:.0f}s); the poll will be retried at the next interval"
                )
            return wait
        base = min(cap, self.settings.backoff_initial.total_seconds() * 2 ** (attempt - 1))
        # "equal jitter": at least half the delay, so retries never hammer
        return base / 2 + self.rng() * base / 2

    def _pace(self, cancelled: threading.Event | None = None) -> None:
        if not self._min_gap:
            return
        with self._lock:
            now = time.monotonic()
            wait = self._next_slot - now
            self._next_slot = max(now, self._next_slot) + self._min_gap
        if wait > 0:
            if cancelled is not None and self.sleep is time.sleep:
                cancelled.wait(wait)
            else:
                self.sleep(wait)
        if cancelled is not None and cancelled.is_set():
            raise FetchError("the poll was stopped; request not sent")

    def _observe(self, status: int | str, started: float, retry: bool) -> None:
        if self.observer is None:
            return
        try:
            self.observer(status, time.monotonic() - started, retry=retry)
        except Exception as exc:  # metrics never break a poll
            log.debug("request observer failed: %s", exc)

    def _send(
        self, method: str, path: str, payload: bytes | None, *, retry: bool = False, cancelled: threading.Event | None = None
    ) -> httpx.Response:
        url = f"{self.settings.shown_url}{path}"
        request = f"{method} {url}"
        self._pace(cancelled)
        timeout = self.settings.request_timeout.total_seconds()
        started = time.monotonic()
        try:
            try:
                response = self._fetch(method, path, payload, timeout)
            except Exception:
                self._observe("error", started, retry)
                raise
            self._observe(response.status_code, started, retry)
        except httpx.TimeoutException as exc:
            raise _Retryable(f"timed out after {timeout:g}s ({type(exc).__name__})") from None
        except httpx.ConnectError as exc:
            reason = str(exc)
            if "CERTIFICATE_VERIFY_FAILED" in reason or "certificate verify failed" in reason:
                raise FetchError(
                    f"TLS certificate verification of {url} failed ({reason}); "
                    "point misp.ca_file at the CA that signed MISP's certificate"
                ) from None
            raise _Retryable(f"cannot connect: {reason or type(exc).__name__}") from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise _Retryable(f"connection broken: {exc or type(exc).__name__}") from None
        except httpx.TransportError as exc:
            raise _Retryable(f"transport error: {type(exc).__name__}: {exc}") from None

        status = response.status_code
        if status == 200:
            return response
        if status == 429:
            wait = _retry_after(response, now=time.time())
            raise _Retryable("MISP is rate-limiting us (429)", wait=wait)
        if status in _RETRY_STATUSES:
            raise _Retryable(f"MISP answered {status}{_misp_message(response)}")
        if status == 403:
            raise FetchError(
                f"MISP rejected the API key (403 on {request}); check misp.api_key and that its user may use the API"
            )
        if status == 401:
            raise FetchError(f"MISP refused the request as unauthenticated (401 on {request}); check misp.api_key")
        if status == 404:
            raise FetchError(
                f"MISP answered 404 Not Found for {request}: check misp.url "
                "(the MISP base URL, e.g. https://misp.example.org, without /attributes/...)"
            )
        if status == 405:
            raise FetchError(
                f"MISP answered 405 Method Not Allowed for {request}{_misp_message(response)}: "
                "MISP sends this for a request body it cannot parse, or misp.url does not point at MISP"
            )
        if 300 <= status < 400:
            where = response.headers.get("location", "?")
            raise FetchError(
                f"MISP redirected {request} to {where[:200]} ({status}): misp.url is probably wrong "
                "(http instead of https, or a path that ends at a login page)"
            )
        if 400 <= status < 500:
            raise FetchError(f"MISP refused {request} with {status}{_misp_message(response)}")
        raise _Retryable(f"unexpected HTTP status {status} ({_describe_body(response)})")

    def _fetch(self, method: str, path: str, payload: bytes | None, timeout: float) -> httpx.Response:
        """One exchange within ``timeout`` seconds in all (connect, send, headers and
        body), its body bounded by ``misp.max_response_size`` (raw and inflated)."""
        limit = self.settings.max_response_size
        with bounded.deadline(timeout) as end:
            request = self._http.build_request(
                method, path, content=payload, headers={"Accept-Encoding": bounded.ACCEPT_ENCODING}
            )
            response = self._http.send(request, stream=True)
            try:
                ok = response.status_code == 200
                try:
                    body = bounded.read_body(response, limit=limit if ok else _ERROR_BODY_LIMIT, end=end)
                except bounded.BodyTooLarge:
                    if not ok:
                        body = b""  # an error page too long to quote: its status says enough
                    else:
                        raise FetchError(
                            f"{method} {self.settings.shown_url}{path}: MISP's answer is larger than "
                            f"misp.max_response_size ({limit} bytes, counted raw and decompressed); "
                            "lower misp.page_size (or the stream's page_size), or raise misp.max_response_size"
                        ) from None
                except bounded.DeadlinePassed:
                    raise httpx.ReadTimeout("the whole-request deadline passed while reading the body") from None
                except bounded.UnsupportedEncoding as exc:
                    raise _Retryable(f"MISP sent a body in an encoding misp-ti did not ask for: {str(exc)[:40]!r}") from None
                except zlib.error as exc:
                    raise _Retryable(f"MISP sent a compressed body that does not decompress ({exc})") from None
            finally:
                response.close()
        return bounded.answered(response, body)

    # -------------------------------------------------------------------

    def _parse(self, scope: str, response: httpx.Response) -> tuple[list[dict[str, Any]], int | None, int | None]:
        """The validated items and counters of a 200 answer; :class:`_Retryable` if it makes no sense."""
        count = _header_int(response, "X-Result-Count")
        skipped = _header_int(response, "X-Skipped-Elements-Count")
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            records = _records_one_by_one(scope, response, exc)
            if scope == "attributes":
                return records, count, skipped
            data = {"response": records}  # placeholders pass the checks below as they are
        response_part = data.get("response") if isinstance(data, dict) else None
        if scope == "attributes":
            items = response_part.get("Attribute") if isinstance(response_part, dict) else None
            # MISP's JSON export writes {"response": {"Attribute": [...]}}; an
            # empty result is the same shape with an empty list.
            if not isinstance(items, list):
                raise _Retryable(
                    'MISP sent JSON without the {"response": {"Attribute": [...]}} list '
                    f"({_describe_body(response)})"
                )
            for index, item in enumerate(items):
                _check_record(item, f"response.Attribute[{index}]")
            return items, count, skipped
        if not isinstance(response_part, list):
            raise _Retryable(f'MISP sent JSON without the {{"response": [...]}} event list ({_describe_body(response)})')
        events = []
        for index, item in enumerate(response_part):
            if lenient.is_unparsed(item):
                events.append(item)
                continue
            event = item.get("Event") if isinstance(item, dict) else None
            where = f"response[{index}].Event"
            _check_record(event, where)
            for key in ("Attribute", "Object"):
                members = event.get(key, [])  # type: ignore[union-attr]
                if not isinstance(members, list):
                    raise _Retryable(f"MISP sent an event whose {key} is not a list ({where}.{key})")
            for a_index, attribute in enumerate(event.get("Attribute", [])):  # type: ignore[union-attr]
                if not isinstance(attribute, dict):
                    raise _Retryable(f"MISP sent {type(attribute).__name__} where an attribute belongs ({where}.Attribute[{a_index}])")
            for o_index, obj in enumerate(event.get("Object", [])):  # type: ignore[union-attr]
                members = obj.get("Attribute", []) if isinstance(obj, dict) else None
                if not isinstance(members, list) or not all(isinstance(a, dict) for a in members):
                    raise _Retryable(f"MISP sent a malformed object at {where}.Object[{o_index}]")
            events.append(event)
        return events, count, skipped


def _json_body(response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise _Retryable(_not_json(response, exc)) from None


def _not_json(response: httpx.Response, exc: orjson.JSONDecodeError) -> str:
    where = lenient.error_offset(response.content, exc)
    return f"MISP sent a body that is not JSON (at byte {where}: {str(exc).split(':')[0]}; {_describe_body(response)})"


def _records_one_by_one(scope: str, response: httpx.Response, exc: orjson.JSONDecodeError) -> list[dict[str, Any]]:
    """The attribute (or event) list of a body that is not JSON as a whole, read record by
    record: a record that does not parse becomes a placeholder (a ``pipeline_error`` later)."""
    split = lenient.attribute_records if scope == "attributes" else lenient.event_records
    try:
        items = split(response.content)
    except lenient.Unsplittable as split:
        raise _Retryable(f"{_not_json(response, exc)}; it cannot be read record by record either ({split})") from None
    bad = [item for item in items if lenient.is_unparsed(item)]
    log.warning(
        "MISP sent a page that is not JSON as a whole (at byte %d); read record by record: "
        "%d of %d records are not valid JSON and become pipeline_error documents",
        lenient.error_offset(response.content, exc), len(bad), len(items),
    )
    return items


def _check_record(item: Any, where: str) -> None:
    """A record must be a JSON object; anything else means the body has the wrong shape.

    An object lacking a uuid or a numeric timestamp is passed on: one bad
    record must not block the stream. The transform turns it into a counted
    ``pipeline_error`` document, and paging ignores it for its keyset.
    """
    if not isinstance(item, dict):
        raise _Retryable(f"MISP sent {type(item).__name__} where an object belongs ({where})")
