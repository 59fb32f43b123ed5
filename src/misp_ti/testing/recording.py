"""Recorded MISP answers (vcrpy cassettes), replayed by default.

* **Replay only by default**: a request with no recorded answer fails the test
  (vcrpy's ``record_mode="none"``), so no test reaches the network by accident.
* ``pytest --misp-record`` re-records every cassette the selected tests use,
  each from scratch (nothing of the old recording is kept): from the MISP at ``MISP_TI_TEST_MISP_URL`` (key in ``MISP_TI_TEST_MISP_KEY``) if set,
  else from the simulator.
* Requests match on **method, path and JSON body** (restSearch is a POST whose
  body says what is asked), not on host, so a cassette recorded from any
  server replays against any URL.
* **Credentials are scrubbed** before anything is written: ``Authorization``
  and the other credential headers are dropped, and the key itself is
  replaced wherever else it might appear (URL, bodies).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from misp_ti.config import Config

from misp_ti.testing.env import MISP_KEY as MISP_KEY_ENV
from misp_ti.testing.env import MISP_URL as MISP_URL_ENV
from misp_ti.testing.env import kit_env

#: What a replayed test is pointed at: nothing listens there, vcrpy answers.
REPLAY_URL = "http://misp.replay.invalid"
REPLAY_API_KEY = "replayed-cassette-no-key"
KEY_PLACEHOLDER = "<MISP_API_KEY>"
#: Headers never written to a cassette (compared lower-case).
CREDENTIAL_HEADERS = (
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-auth-token",
    "x-misp-key",
)


def _json_or_bytes(body: Any) -> Any:
    if body in (None, b"", ""):
        return None
    raw = body.encode() if isinstance(body, str) else body
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return raw


def json_body_matcher(r1: Any, r2: Any) -> None:
    """vcrpy matcher: bodies equal as JSON (key order and spacing ignored), else byte for byte."""
    left, right = _json_or_bytes(r1.body), _json_or_bytes(r2.body)
    if left != right:
        raise AssertionError(f"request bodies differ: {left!r} != {right!r}")


def _scrub_text(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, KEY_PLACEHOLDER)
    return text


def _scrubber(secrets: list[str]) -> tuple[Any, Any]:
    secrets = [s for s in secrets if s]

    def before_record_request(request: Any) -> Any:
        for name in list(request.headers):
            if name.lower() in CREDENTIAL_HEADERS:
                del request.headers[name]
        request.uri = _scrub_text(request.uri, secrets)
        if isinstance(request.body, bytes) and secrets:
            request.body = _scrub_text(request.body.decode("utf-8", "replace"), secrets).encode()
        return request

    def before_record_response(response: dict[str, Any]) -> dict[str, Any]:
        headers = response.get("headers", {})
        for name in list(headers):
            if name.lower() in CREDENTIAL_HEADERS:
                del headers[name]
        body = response.get("body", {}).get("string")
        if isinstance(body, bytes) and secrets and any(s.encode() in body for s in secrets):
            response["body"]["string"] = _scrub_text(
                body.decode("utf-8", "replace"), secrets
            ).encode()
        return response

    return before_record_request, before_record_response


def cassette_path(request: pytest.FixtureRequest) -> Path:
    """``<dir>/<test module>/<test name>.yaml``; ``<dir>`` is the ini option
    ``misp_cassette_dir`` (relative to the rootdir) or ``cassettes`` next to the test file."""
    test_file = Path(request.node.path)
    configured = request.config.getini("misp_cassette_dir")
    base = (
        Path(request.config.rootpath) / configured if configured else test_file.parent / "cassettes"
    )
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name).strip("_")
    return base / test_file.stem / f"{name}.yaml"


@pytest.fixture
def misp_vcr_config() -> dict[str, Any]:
    """Extra ``vcr.VCR`` options; override this fixture in a conftest to change them."""
    return {}


@pytest.fixture
def misp_vcr(request: pytest.FixtureRequest, misp_vcr_config: dict[str, Any]) -> Any:
    """A ``vcr.VCR`` configured as the module docstring says (record mode from ``--misp-record``)."""
    import vcr

    recording = bool(request.config.getoption("misp_record"))
    secrets = [kit_env(MISP_KEY_ENV), REPLAY_API_KEY]
    from misp_ti.testing.fixtures import DEFAULT_API_KEY

    secrets.append(DEFAULT_API_KEY)
    before_request, before_response = _scrubber(secrets)
    options: dict[str, Any] = {
        "record_mode": "all" if recording else "none",
        "match_on": ("method", "path", "json_body"),
        "filter_headers": list(CREDENTIAL_HEADERS),
        "before_record_request": before_request,
        "before_record_response": before_response,
        "decode_compressed_response": True,
    }
    options.update(misp_vcr_config)

    class Recorder(vcr.VCR):  # type: ignore[misc]
        def use_cassette(self, path: Any = None, **kwargs: Any) -> Any:
            # vcrpy's "all" mode writes the old interactions back beside the
            # new ones: a re-recorded cassette starts empty instead
            if recording and path is not None:
                Path(path).unlink(missing_ok=True)
            return super().use_cassette(path, **kwargs)

    recorder = Recorder(**options)
    recorder.register_matcher("json_body", json_body_matcher)
    return recorder


@dataclass
class MispCassette:
    """What ``misp_cassette`` gives a test: where to send requests, and the cassette."""

    url: str
    api_key: str
    path: Path
    recording: bool
    cassette: Any
    source: str  # "misp", "simulator" or "replay"

    def client_config(
        self, directory: str | Path, overrides: dict[str, Any] | None = None
    ) -> Config:
        """A test config pointed at :attr:`url` (see ``misp_ti.testing.fixtures.make_client_config``)."""
        from misp_ti.testing.fixtures import make_client_config

        return make_client_config(self.url, self.api_key, directory, overrides)


@pytest.fixture
def misp_cassette(request: pytest.FixtureRequest, misp_vcr: Any) -> Iterator[MispCassette]:
    """Record or replay this test's MISP traffic in ``cassettes/<module>/<test>.yaml``.

    While the test runs every HTTP request goes through the cassette. Send
    them to ``misp_cassette.url`` with ``misp_cassette.api_key`` (or use
    ``misp_cassette.client_config(tmp_path)``): when recording that is the real
    MISP or the simulator; when replaying it is an address nothing listens on.
    Freeze time (``misp_data(now=...)``, the default clock is fixed) so that
    request bodies are the same at replay as at recording.
    """
    path = cassette_path(request)
    recording = bool(request.config.getoption("misp_record"))
    if recording:
        real_url = kit_env(MISP_URL_ENV).strip()
        if real_url:
            key = kit_env(MISP_KEY_ENV)
            if not key:
                pytest.fail(
                    f"--misp-record with {MISP_URL_ENV} set needs the key in {MISP_KEY_ENV}",
                    pytrace=False,
                )
            url, api_key, source = real_url.rstrip("/"), key, "misp"
        else:
            factory = request.getfixturevalue("misp_server")
            url, api_key, source = factory().url, factory.api_key, "simulator"
        path.parent.mkdir(parents=True, exist_ok=True)
    else:
        if not path.exists():
            pytest.fail(
                f"no cassette {path}: record it with `pytest --misp-record` "
                f"(from the simulator, or from a real MISP with {MISP_URL_ENV}/{MISP_KEY_ENV})",
                pytrace=False,
            )
        url, api_key, source = REPLAY_URL, REPLAY_API_KEY, "replay"
    with misp_vcr.use_cassette(str(path)) as cassette:
        yield MispCassette(url, api_key, path, recording, cassette, source)
