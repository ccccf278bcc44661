"""Every route of `mrl serve` and every error code, over uvicorn on 127.0.0.1, on each backend."""

import base64

import httpx
import numpy as np
import pytest
from pg_helpers import pg_database, postgres_dsn  # noqa: F401 (fixtures)
from service_helpers import DIM, collection_body, open_backend, threaded_server, vectors

from mrl.errors import UnavailableError
from mrl.service.app import create_app
from mrl.service.embedder import Embedder
from mrl.service.limits import Limits
from mrl.service.memory import MemoryBackend

LIMITS = Limits(max_body_bytes=200_000, max_vectors=50, max_queries=5, max_k=100, max_inputs=4)
N = 60  # items in the shared collection "docs"


@pytest.fixture(scope="module", params=["memory", "postgres"])
def server(request, tmp_path_factory, tiny_bert_path):
    backend = open_backend(request.param, request, tmp_path_factory)
    app = create_app(
        backend,
        embedder=Embedder(str(tiny_bert_path)),
        limits=LIMITS,
        backend_name=request.param,
    )
    with threaded_server(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        client.backend_name = request.param
        assert client.post("/v1/collections", json=collection_body("docs")).status_code == 201
        x = vectors(N)
        for start in range(0, N, 30):  # max_vectors=50 per request
            ids = list(range(start, start + 30))
            body = {"ids": ids, "vectors": x[ids].tolist(), "payloads": [{"n": i} for i in ids]}
            assert client.post("/v1/collections/docs/items", json=body).status_code == 201
        yield client


def assert_error(r: httpx.Response, status: int, *fragments: str) -> dict:
    """The status, our error body (type, one-line message, request id), each fragment in it."""
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["request_id"] == r.headers["x-request-id"]
    assert "\n" not in error["message"] and "Traceback" not in error["message"]
    for fragment in fragments:
        assert fragment in error["message"], error["message"]
    return error


# ---------------------------------------------------------------- probes and docs
def test_probes_docs_and_openapi(server):
    assert server.get("/health").json() == {"status": "ok"}
    ready = {"status": "ready", "backend": server.backend_name, "collections": 1}
    assert server.get("/ready").json() == ready
    assert "swagger" in server.get("/docs").text.lower()
    paths = server.get("/openapi.json").json()["paths"]
    assert {"/v1/embeddings", "/v1/collections/{name}/search", "/metrics"} <= set(paths)


def test_metrics_count_requests_per_route_and_items_per_collection(server):
    server.get("/v1/collections/docs")
    text = server.get("/metrics").text
    assert 'mrl_collection_items{collection="docs"}' in text
    assert 'mrl_requests_total{method="GET",route="/v1/collections/{name}",status="200"}' in text
    assert 'mrl_request_seconds_bucket{le="0.005",method="GET",route="/health"}' in text


# ---------------------------------------------------------------- collections
def test_collection_crud(server):
    r = server.post("/v1/collections", json={"name": "tmp", "dim": 32, "dtype": "float16"})
    assert r.status_code == 201
    info = r.json()
    assert info["nesting"] == [8, 16, 32] and info["shortlist_dim"] == 16 and info["count"] == 0
    assert "tmp" in [c["name"] for c in server.get("/v1/collections").json()["collections"]]
    assert server.get("/v1/collections/tmp").json()["dtype"] == "float16"
    assert_error(server.post("/v1/collections", json={"name": "tmp", "dim": 32}), 409, "exists")
    assert server.delete("/v1/collections/tmp").json() == {"deleted": 1}
    assert_error(server.get("/v1/collections/tmp"), 404, "collection 'tmp'")
    assert_error(server.delete("/v1/collections/tmp"), 404, "collection 'tmp'")


@pytest.mark.parametrize(
    "body, fragments",
    [
        ({"name": "bad name!", "dim": 8}, ["name"]),
        ({"name": "c", "dim": 0}, ["dim"]),
        ({"name": "c", "dim": 8, "nesting": [4, 16]}, ["nesting", "ends at 16"]),
        ({"name": "c", "dim": 8, "nesting": [8, 4]}, ["increasing"]),
        ({"name": "c", "dim": 8, "nesting": [4, 8], "shortlist_dim": 2}, ["not in the nesting"]),
        ({"name": "c", "dim": 8, "metric": "l2"}, ["metric"]),
        ({"name": "c", "dim": 8, "backend": "other"}, ["runs the '", "backend"]),
        ({"name": "c", "dim": 8, "default_plan": "fast"}, ["cannot read plan 'fast'"]),
        ({"name": "c", "dim": 8, "colour": "red"}, ["colour", "Extra inputs"]),
    ],
)
def test_bad_collection_specs_are_named_422s(server, body, fragments):
    if body.get("backend") == "other":  # the backend this server does not run
        body = {**body, "backend": {"memory": "postgres"}.get(server.backend_name, "memory")}
    assert_error(server.post("/v1/collections", json=body), 422, *fragments)
    assert server.get("/v1/collections/c").status_code == 404  # nothing half-created


# ---------------------------------------------------------------- items
def test_items_add_get_delete(server):
    x = vectors(3, seed=5)
    body = {"ids": [1000, 1001, 1002], "vectors": x.tolist(), "payloads": [{"a": [1]}, None, {}]}
    assert server.post("/v1/collections/docs/items", json=body).json() == {"added": 3}
    item = server.get("/v1/collections/docs/items/1000").json()
    assert item["payload"] == {"a": [1]}
    np.testing.assert_allclose(item["vector"], x[0], rtol=1e-6)
    assert server.get("/v1/collections/docs/items/1001").json()["payload"] is None
    r = server.request("DELETE", "/v1/collections/docs/items", json={"ids": [1000, 1001, 1002]})
    assert r.json() == {"deleted": 3}
    assert_error(server.get("/v1/collections/docs/items/1000"), 404, "1000", "'docs'")
    assert server.get("/v1/collections/docs").json()["count"] == N


def test_items_from_texts_are_embedded_at_the_collection_width(server):
    assert server.post("/v1/collections", json={"name": "txt", "dim": 32}).status_code == 201
    body = {"ids": [1, 2], "texts": ["a text editor", "a strategy game"]}
    assert server.post("/v1/collections/txt/items", json=body).status_code == 201
    hits = server.post("/v1/collections/txt/search", json={"text": "a text editor", "k": 2}).json()
    assert hits["results"][0]["ids"][0] == 1
    assert server.delete("/v1/collections/txt").status_code == 200


def _add(ids, rows, **extra):
    return {"ids": ids, "vectors": rows, **extra}


@pytest.mark.parametrize(
    "body, status, fragments",
    [
        (_add([2000], [[0.1] * 3]), 422, ["3 numbers per row", "dim 16"]),
        (_add([2000], [["0.1"] * DIM]), 422, ["vectors.0.0", "valid number"]),
        (_add([2000], [[None] * DIM]), 422, ["valid number"]),
        (_add([2000], [[True] * DIM]), 422, ["valid number"]),
        (_add([2000, 2001], [[0.1] * DIM, [0.1] * 5]), 422, ["rectangular"]),
        (_add([2000, 2000], [[0.1] * DIM] * 2), 422, ["duplicate id 2000"]),
        (_add([2000, 5], [[0.1] * DIM] * 2), 409, ["id 5", "already in collection 'docs'"]),
        (_add([2000], [[0.1] * DIM] * 2), 422, ["1 ids for 2 vectors"]),
        (_add([-1], [[0.1] * DIM]), 422, ["ids.0"]),
        (_add([1.5], [[0.1] * DIM]), 422, ["ids.0"]),
        (_add([2000], [[1e39] * DIM]), 422, ["overflows float32"]),
        (_add([2000], [[0.1] * DIM], payloads=[{}, {}]), 422, ["2 payloads for 1"]),
        ({"ids": [2000]}, 422, ["either vectors or texts"]),
        (_add(list(range(2000, 2051)), [[0.1] * DIM] * 51), 413, ["max_vectors=50"]),
    ],
)
def test_bad_items_are_refused_and_nothing_is_stored(server, body, status, fragments):
    assert_error(server.post("/v1/collections/docs/items", json=body), status, *fragments)
    assert server.get("/v1/collections/docs").json()["count"] == N
    assert server.get("/v1/collections/docs/items/2000").status_code == 404


@pytest.mark.parametrize(
    "raw",
    [
        b'{"ids": [2000], "vectors": [[NaN' + b", 0.1" * 15 + b"]]}",
        b'{"ids": [2000], "vectors": [[Infinity' + b", 0.1" * 15 + b"]]}",
    ],
)
def test_nan_and_inf_tokens_are_refused(server, raw):
    r = server.post(
        "/v1/collections/docs/items", content=raw, headers={"content-type": "application/json"}
    )
    assert_error(r, 422, "finite number")


def test_malformed_json_is_a_422(server):
    r = server.post(
        "/v1/collections/docs/items",
        content=b'{"ids": [',
        headers={"content-type": "application/json"},
    )
    assert_error(r, 422, "JSON")


def test_deleting_absent_or_repeated_ids_deletes_nothing(server):
    r = server.request("DELETE", "/v1/collections/docs/items", json={"ids": [3, 99999]})
    assert_error(r, 404, "99999", "nothing was deleted")
    r = server.request("DELETE", "/v1/collections/docs/items", json={"ids": [3, 3]})
    assert_error(r, 422, "same id")
    assert server.get("/v1/collections/docs/items/3").status_code == 200


def test_unknown_collection_and_route(server):
    assert_error(
        server.post("/v1/collections/nope/items", json=_add([1], [[0.1] * DIM])),
        404,
        "collection 'nope'",
    )
    assert_error(server.get("/v1/nothing"), 404, "no route GET /v1/nothing")
    assert_error(server.put("/v1/collections"), 405, "no route PUT")
    assert_error(server.get("/v1/collections/docs/items/notanint"), 422, "item_id")


# ---------------------------------------------------------------- search
def test_search_one_query_a_batch_and_exact_plans_agree_with_brute_force(server):
    x = vectors(N)
    one = server.post("/v1/collections/docs/search", json={"vector": x[7].tolist(), "k": 3})
    hits = one.json()
    assert hits["results"][0]["ids"][0] == 7 and hits["plan_source"] == "default"
    assert hits["results"][0]["payloads"][0] == {"n": 7}
    assert all(isinstance(v, float) for v in hits["stats"].values())
    q = x[:4]
    body = {"vectors": q.tolist(), "k": 5, "plan": "single:16", "include_payloads": False}
    hits = server.post("/v1/collections/docs/search", json=body).json()
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    truth = np.argsort(-(unit[:4] @ unit.T), axis=1, kind="stable")[:, :5]
    assert [r["ids"] for r in hits["results"]] == truth.tolist()
    assert hits["results"][0]["payloads"] is None and hits["plan"] == "single:16"


@pytest.mark.parametrize(
    "plan, spelled",
    [
        ("rerank:4:16:30", "rerank:4:16:30"),
        (
            {"kind": "rerank", "shortlist_dim": 4, "rerank_dim": 16, "shortlist": 30},
            "rerank:4:16:30",
        ),
        (
            {"kind": "funnel", "shortlist_dim": 4, "steps": [[8, 40], [16, 10]], "exact": True},
            "funnel:4:8x40,16x10:exact",
        ),
        ({"kind": "single", "dim": 8}, "single:8"),
    ],
)
def test_search_plans_as_cli_spelling_or_json(server, plan, spelled):
    body = {"vector": vectors(N)[9].tolist(), "k": 3, "plan": plan}
    hits = server.post("/v1/collections/docs/search", json=body).json()
    assert hits["plan"] == spelled and hits["plan_source"] == "request"
    assert hits["results"][0]["ids"][0] == 9


def _q(**extra):
    return {"vector": [0.1] * DIM, **extra}


@pytest.mark.parametrize(
    "body, status, fragments",
    [
        (_q(k=0), 422, ["k"]),
        (_q(k=-3), 422, ["k"]),
        (_q(k=N + 1), 422, [f"k={N + 1} exceeds the {N} items"]),
        (_q(k=101), 422, ["max_k=100"]),
        (_q(plan="funnel:4:8x"), 422, ["cannot read plan"]),
        (_q(plan="rerank:16:4:100"), 422, ["strictly increase"]),
        (_q(plan="single:64"), 422, ["dim 64", "only 16"]),
        (_q(plan="rerank:4:16:2", k=3), 422, ["smaller than k=3"]),
        (_q(plan="funnel", target_recall=0.9), 422, ["not both"]),
        ({"vector": [0.1] * 5}, 422, ["5 numbers per row"]),
        ({"vector": ["x"] * DIM}, 422, ["valid number"]),
        ({"k": 3}, 422, ["exactly one of vector, vectors, text, texts"]),
        (_q(text="both"), 422, ["exactly one"]),
        ({"vectors": [[0.1] * DIM] * 6}, 413, ["max_queries=5"]),
    ],
)
def test_bad_searches_are_named(server, body, status, fragments):
    assert_error(server.post("/v1/collections/docs/search", json=body), status, *fragments)


def test_search_of_an_empty_collection_is_a_422(server):
    assert server.post("/v1/collections", json=collection_body("empty")).status_code == 201
    r = server.post("/v1/collections/empty/search", json=_q(k=1))
    assert_error(r, 422, "collection 'empty' is empty")
    server.delete("/v1/collections/empty")


def test_target_recall_without_a_tuned_table_runs_the_default_plan(server):
    assert server.post("/v1/collections", json=collection_body("untuned")).status_code == 201
    body = {"ids": list(range(20)), "vectors": vectors(20).tolist()}
    assert server.post("/v1/collections/untuned/items", json=body).status_code == 201
    r = server.post("/v1/collections/untuned/search", json=_q(k=3, target_recall=0.95))
    assert r.json()["plan_source"] == "default"
    server.delete("/v1/collections/untuned")


def test_tuning_then_target_recall(server):
    body = {"vectors": vectors(8, seed=9).tolist(), "k": 5}
    r = server.post("/v1/collections/docs/tune", json=body)
    assert r.status_code == 200, r.text
    rows = r.json()["rows"]
    assert r.json()["k"] == 5 and len(rows) > 3
    assert any(row["plan"] == "single:16" and row["recall_bound"] == 1 for row in rows)
    for target in (0.5, 1.0):
        hits = server.post("/v1/collections/docs/search", json=_q(k=5, target_recall=target))
        assert hits.json()["plan_source"] == "target_recall", hits.text
        chosen = next(row for row in rows if row["plan"] == hits.json()["plan"])
        assert chosen["recall_bound"] >= target
    r = server.post("/v1/collections/docs/search", json=_q(k=3, target_recall=0.9))
    assert_error(r, 422, "tuned for k=5, not k=3")
    assert_error(server.post("/v1/collections/docs/tune", json={**body, "k": 500}), 422, "k=500")


# ---------------------------------------------------------------- embeddings
def test_embeddings_float_base64_and_dimensions(server):
    r = server.post("/v1/embeddings", json={"input": ["a text editor", "chess"], "model": "x"})
    body = r.json()
    assert body["object"] == "list" and body["usage"]["prompt_tokens"] > 0
    full = np.array([d["embedding"] for d in body["data"]])
    assert full.shape == (2, 32) and [d["index"] for d in body["data"]] == [0, 1]
    np.testing.assert_allclose(np.linalg.norm(full, axis=1), 1, atol=1e-5)
    r = server.post(
        "/v1/embeddings", json={"input": "chess", "dimensions": 8, "encoding_format": "base64"}
    )
    short = np.frombuffer(base64.b64decode(r.json()["data"][0]["embedding"]), dtype="<f4")
    expected = full[1, :8] / np.linalg.norm(full[1, :8])  # truncate, then re-normalise
    np.testing.assert_allclose(short, expected, atol=1e-5)


@pytest.mark.parametrize(
    "body, status, fragments",
    [
        ({"input": "x", "dimensions": 33}, 422, ["dimensions=33", "width 32"]),
        ({"input": ""}, 422, ["input"]),
        ({"input": []}, 422, ["input"]),
        ({"input": "x", "encoding_format": "int8"}, 422, ["encoding_format"]),
        ({"input": ["a"] * 5}, 413, ["max_inputs=4"]),
    ],
)
def test_bad_embedding_requests(server, body, status, fragments):
    assert_error(server.post("/v1/embeddings", json=body), status, *fragments)


def test_no_text_model_is_a_503_naming_the_fix(tmp_path):
    app = create_app(MemoryBackend(tmp_path), embedder=Embedder(str(tmp_path / "no-model")))
    with threaded_server(app) as url:
        r = httpx.post(url + "/v1/embeddings", json={"input": "x"})
    assert_error(r, 503, "no text model", "--model")


# ---------------------------------------------------------------- limits and 500s
def test_a_body_over_the_limit_is_a_413(server):
    big = b'{"ids": [1], "vectors": [[' + b"0.1," * 60_000 + b"0.1]]}"
    assert_error(
        server.post(
            "/v1/collections/docs/items", content=big, headers={"content-type": "application/json"}
        ),
        413,
        "max_body_bytes=200000",
    )

    def chunks():  # no Content-Length: counted as it arrives
        yield b'{"ids": [1], "vectors": [['
        for _ in range(100):
            yield b"0.1," * 1000
        yield b"0.1]]}"

    r = server.post(
        "/v1/collections/docs/items", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_error(r, 413, "max_body_bytes")


def test_an_unexpected_error_is_a_500_with_only_a_request_id(tmp_path, caplog):
    class Broken(MemoryBackend):
        def collections(self):
            raise RuntimeError("secret internal detail")

    with threaded_server(create_app(Broken(tmp_path))) as url:
        r = httpx.get(url + "/v1/collections")
    error = assert_error(r, 500, "internal error", r.headers["x-request-id"])
    assert "secret" not in r.text and error["type"] == "InternalError"
    assert "secret internal detail" in caplog.text  # the trace is logged server-side


def test_a_backend_that_is_down_is_a_503_with_its_reason(tmp_path):
    class Down(MemoryBackend):
        def collections(self):
            raise UnavailableError("cannot reach the database (connection refused); retry later")

        info = collections

    with threaded_server(create_app(Down(tmp_path))) as url:
        ready = httpx.get(url + "/ready")
        listed = httpx.get(url + "/v1/collections")
        metrics = httpx.get(url + "/metrics")
    assert_error(ready, 503, "cannot reach the database")
    assert_error(listed, 503, "retry later")
    assert metrics.status_code == 200  # the scrape still answers, without the item gauges
