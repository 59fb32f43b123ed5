"""A MODEL of Elasticsearch's server-side rules, for tests. It is not Elasticsearch.

It restates, in Python and from Elasticsearch's (and Kibana's) public source, the rules misp-ti depends on:
built-in ``logs`` templates per version, index template resolution and composition, data streams and
rollover, field mappings (explicit, dynamic templates, dynamic mapping, value checks, ``ignore_malformed``),
ingest pipelines (a few processors), bulk writes, the failure store; other modules add transforms, search
and security. Every rule cites the Elasticsearch class, file or pull request it comes from. What is not
modelled is refused with an error that says so (HTTP 501, ``model_unsupported_exception``), never accepted
silently. Use it where no Elasticsearch can run; run the same tests against a real cluster when one can.

    from misp_ti.testing.es_model import ModelCluster, ManualClock, serve
    cluster = ModelCluster(version=(9, 2))
    cluster.handle("PUT", "/_data_stream/logs-app-default")
    with serve(cluster) as url:  # the real elasticsearch client can talk to it
        ...
"""

from misp_ti.testing.es_model.cluster import ManualClock, ModelCluster
from misp_ti.testing.es_model.http import serve
from misp_ti.testing.es_model.state import Response

__all__ = ["ManualClock", "ModelCluster", "Response", "serve"]
