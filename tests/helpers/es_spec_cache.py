"""Obtain Elasticsearch's request specification reproducibly, for the contract tests.

``schema.json`` (Apache-2.0, maintained by Elastic) ships in the npm package
``@elastic/request-converter``. We ``npm pack`` one pinned version into a
cache directory, check the tarball against the registry's published
integrity (sha512) and the extracted file against its sha256, and reuse it
afterwards. Without npm (or with npm failing) the tests skip with the
reason; ``MISP_TI_TEST_REQUIRE_SPEC=1`` (set by ``.ci/run``) makes that a failure.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

PACKAGE = "@elastic/request-converter"
VERSION = "9.5.0"
#: ``npm view @elastic/request-converter@9.5.0 dist.integrity``
INTEGRITY = "sha512-PEcvvCtE/pthy+WWQ4AELymWMOLHTm7yjANDMozcmIY8NT9vTlJmeEGL/0fD3lQ1lCkriPrZwallasDRj3vX+w=="
SCHEMA_MEMBER = "package/dist/schema.json"
SCHEMA_SHA256 = "aca6be2593f4d23252b40c6d142a11d82d1d13b3c5c2b6d62b50ed50d97a7e03"
REQUIRE_ENV = "MISP_TI_TEST_REQUIRE_SPEC"
CACHE_ENV = "MISP_TI_SPEC_CACHE"


def cache_dir() -> Path:
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / ".cache" / "es-spec"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_ENV, "").strip().lower() in {"1", "true", "yes"}:
        pytest.fail(f"Elasticsearch specification unavailable: {reason} ({REQUIRE_ENV}=1 makes this a failure)", pytrace=False)
    pytest.skip(f"Elasticsearch specification unavailable: {reason} (install npm; {REQUIRE_ENV}=1 makes this a failure)")


def fetch_schema() -> Path:
    """Path of the verified ``schema.json``; skips (or fails) when it cannot be had."""
    target = cache_dir() / f"request-converter-{VERSION}" / "schema.json"
    if target.is_file() and _sha256(target) == SCHEMA_SHA256:
        return target
    npm = shutil.which("npm")
    if npm is None:
        _unavailable("npm is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            proc = subprocess.run(
                [npm, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", tmp, "--silent"],
                capture_output=True, text=True, timeout=180, check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            _unavailable(f"npm pack failed: {exc}")
        tarballs = list(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or len(tarballs) != 1:
            _unavailable(f"npm pack {PACKAGE}@{VERSION} failed: {proc.stderr.strip()[-300:]}")
        tarball = tarballs[0]
        algorithm, _, expected = INTEGRITY.partition("-")
        actual = base64.b64encode(hashlib.new(algorithm, tarball.read_bytes()).digest()).decode()
        if actual != expected:
            pytest.fail(f"{tarball.name}: {algorithm} {actual} differs from the pinned integrity; refusing it", pytrace=False)
        with tarfile.open(tarball) as archive:
            member = archive.extractfile(SCHEMA_MEMBER)
            if member is None:
                pytest.fail(f"{tarball.name} has no {SCHEMA_MEMBER}", pytrace=False)
            data = member.read()
        if hashlib.sha256(data).hexdigest() != SCHEMA_SHA256:
            pytest.fail(f"{SCHEMA_MEMBER} in {tarball.name} does not have the pinned sha256", pytrace=False)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"schema.json.{os.getpid()}.partial")
        partial.write_bytes(data)
        partial.replace(target)  # atomic: concurrent test workers see a whole file or none
    return target
