"""The HTTP service (`mrl serve`): FastAPI routes over a `Backend` (in-process or PostgreSQL).

Modules, one job each (nothing is imported here: `import mrl.service` loads no web stack):

- `backend`: the `Backend` contract, `CollectionSpec`, `SearchHits`;
- `spec`: spec and plan checks every backend shares (the default plan, k against the count);
- `memory`: `MemoryBackend`, a `MatryoshkaIndex` per collection made durable by
- `wal`: the checksummed, fsynced write-ahead log (torn tails dropped, damage refused);
- `postgres`, `sql`, `embedded`: the PostgreSQL + pgvector backend and its embedded server;
- `app`: `create_app`, the routes, error mapping, request ids, body limit;
- `schemas`: the pydantic request/response models (the OpenAPI schema);
- `auth`, `limits`, `settings`: hashed API keys, request limits, server settings;
- `embedder`: the lazily loaded text model; `tuning`: tuned plans for `target_recall`;
- `metrics`: Prometheus counters, latency histograms and item gauges.
"""
