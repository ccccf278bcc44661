"""schemathesis against /openapi.json of a live server, on each backend: no 500s, and every
response matches the schema (documented status, content type, body)."""

import httpx
import hypothesis
import pytest
import schemathesis
from pg_helpers import pg_database, postgres_dsn  # noqa: F401 (fixtures)
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from service_helpers import collection_body, open_backend, threaded_server, vectors

from mrl.service.app import create_app
from mrl.service.embedder import Embedder

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module", params=["memory", "postgres"])
def live(request, tmp_path_factory, tiny_bert_path):
    backend = open_backend(request.param, request, tmp_path_factory)
    app = create_app(backend, embedder=Embedder(str(tiny_bert_path)), backend_name=request.param)
    with threaded_server(app) as url:
        httpx.post(url + "/v1/collections", json=collection_body("docs")).raise_for_status()
        body = {"ids": list(range(30)), "vectors": vectors(30).tolist()}
        httpx.post(url + "/v1/collections/docs/items", json=body).raise_for_status()
        yield url


# The schema is read at collection time from an app without a backend (building the OpenAPI
# document needs none); the cases run against the live server.
schema = schemathesis.openapi.from_dict(create_app(backend=None).openapi())


@schema.parametrize()
@hypothesis.settings(
    max_examples=20, deadline=None, suppress_health_check=list(hypothesis.HealthCheck)
)
def test_no_500s_and_every_response_matches_the_schema(case, live):
    case.call_and_validate(base_url=live, checks=CHECKS)
