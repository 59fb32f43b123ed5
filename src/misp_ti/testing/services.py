"""Services a test may need: an Elasticsearch to talk to, or a model of one.

Where the cluster comes from, in order:

1. ``MISP_TI_TEST_ES_URL`` (e.g. ``http://localhost:9200`` or a URL with
   credentials): used as given;
2. a throw-away container started with testcontainers, when a Docker engine
   answers (image from ``MISP_TI_TEST_ES_IMAGE``, default below);
3. otherwise the test is **skipped with the reason**; with
   ``MISP_TI_TEST_REQUIRE_ES=1`` it **fails** instead, so a CI job that must run
   the Elasticsearch tests cannot pass by skipping them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from misp_ti.testing import env

DEFAULT_ES_IMAGE = "docker.elastic.co/elasticsearch/elasticsearch:8.15.3"
ES_URL_ENV = env.ES_URL
REQUIRE_ES_ENV = env.REQUIRE_ES
ES_IMAGE_ENV = env.ES_IMAGE


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def docker_unavailable_reason() -> str | None:
    """``None`` when a Docker engine answers a ping, else why not (short, for a skip reason)."""
    try:
        import docker
    except ImportError:
        return "the 'docker' package is not installed (pip install 'misp-ti[testing]')"
    try:
        client = docker.from_env(timeout=5)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # DockerException, connection errors, bad DOCKER_HOST...
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"no Docker engine answers ({first_line[:160]})"
    return None


def _no_cluster(reason: str) -> None:
    message = (
        f"no Elasticsearch for this test: {ES_URL_ENV} is not set and {reason}. "
        f"Set {ES_URL_ENV}=http://host:9200 or start Docker"
    )
    if _truthy(env.kit_env(REQUIRE_ES_ENV)):
        pytest.fail(f"{message} ({REQUIRE_ES_ENV}=1 turns this skip into a failure)", pytrace=False)
    pytest.skip(f"{message} ({REQUIRE_ES_ENV}=1 makes this a failure)")


@pytest.fixture(scope="session")
def elasticsearch_url() -> Iterator[str]:
    """The URL of an Elasticsearch cluster the tests may write to (see module docs)."""
    url = env.kit_env(ES_URL_ENV).strip()
    if url:
        yield url
        return
    reason = docker_unavailable_reason()
    if reason is not None:
        _no_cluster(reason)
    try:
        from testcontainers.community.elasticsearch import ElasticSearchContainer
    except ImportError:
        _no_cluster("testcontainers is not installed (pip install 'misp-ti[testing]')")
    image = env.kit_env(ES_IMAGE_ENV, DEFAULT_ES_IMAGE)
    container = ElasticSearchContainer(image, mem_limit="1G")
    # a single test node: no TLS, no auth, small heap
    container.with_env("xpack.security.enabled", "false")
    container.with_env("ES_JAVA_OPTS", "-Xms512m -Xmx512m")
    try:
        container.start()
    except Exception as exc:
        _no_cluster(f"the Elasticsearch container ({image}) did not start: {exc}")
    try:
        yield f"http://{container.get_container_host_ip()}:{container.get_exposed_port(container.port)}"
    finally:
        container.stop()


class ServedModel:
    """A :class:`~misp_ti.testing.es_model.ModelCluster` served on loopback
    (``url`` for the real client), on the test's ``misp_clock``."""

    def __init__(self, cluster: Any, url: str) -> None:
        self.cluster, self.url = cluster, url

    def advance(self) -> None:
        """Let the transforms run what is due at the clock's time."""
        self.cluster.advance()

    def search(self, expression: str, query: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """What a search on ``expression`` returns now (alias filters applied)."""
        from misp_ti.testing.es_model.search import search

        hits: list[dict[str, Any]] = search(self.cluster, expression, query)
        return hits


@pytest.fixture
def misp_es_model(misp_clock: Any) -> Iterator[Callable[..., ServedModel]]:
    """Factory of Elasticsearch MODELS (``misp_ti.testing.es_model``: the server's
    rules as read in its source, not Elasticsearch) served on loopback on
    ``misp_clock``: ``misp_es_model(version=(8, 19), security=None)``."""
    from contextlib import ExitStack

    from misp_ti.testing.es_model import ModelCluster, serve

    with ExitStack() as stack:

        def start(version: tuple[int, int] = (8, 19), *, security: Any = None, builtin_templates: bool = True) -> ServedModel:
            cluster = ModelCluster(version, clock=misp_clock.now, security=security, builtin_templates=builtin_templates)
            return ServedModel(cluster, stack.enter_context(serve(cluster)))

        yield start
