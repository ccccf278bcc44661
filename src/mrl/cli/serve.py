"""`mrl serve`: the HTTP embedding and search service (FastAPI on uvicorn) over a data folder.

FastAPI, uvicorn and the backends are imported only when the command runs, so `mrl --help`
stays fast and the CLI works without the [serve] extra until `serve` is used.
"""

from __future__ import annotations

import argparse
import sys

from mrl.errors import ConfigError

LIMIT_FLAGS = ("max_body_bytes", "max_vectors", "max_queries", "max_k", "max_inputs")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve embeddings and collection search over HTTP (FastAPI, OpenAPI at /docs)",
        description="Serve /v1/embeddings (OpenAI-compatible), collections of nested vectors "
        "with items and search, /health, /ready and /metrics. Writes are durable: the memory "
        "backend fsyncs a write-ahead log in --data-dir before answering. Binding anything but "
        "loopback needs API keys (--keys-file or $MRL_API_KEYS).",
    )
    p.add_argument("--data-dir", help="folder the backend owns (required unless --new-key)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--keys-file", help="file of '<read|write> <sha256 hex>' lines (see --new-key)")
    p.add_argument("--model", help="text model folder (default: all-MiniLM-L6-v2 if installed)")
    p.add_argument("--backend", default="memory", choices=("memory", "postgres"))
    p.add_argument("--dsn", help="PostgreSQL DSN (postgres backend; default: embedded server)")
    p.add_argument(
        "--snapshot-bytes",
        type=int,
        default=64 << 20,
        help="log size that triggers a snapshot (memory backend; default 64 MiB)",
    )
    p.add_argument(
        "--fused-rerank",
        action="store_true",
        help="memory backend: run rerank-to-full-D plans as one faiss call (faster one query "
        "per call; keeps a second float32 copy of every collection's vectors in RAM)",
    )
    for name in LIMIT_FLAGS:
        p.add_argument("--" + name.replace("_", "-"), type=int, help="request limit")
    p.add_argument(
        "--new-key",
        choices=("read", "write"),
        help="print a new random key and its keys-file line, then exit",
    )
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from mrl.service.auth import load_keys, new_key

    if args.new_key:
        key, line = new_key(args.new_key)
        print(f"key (give it to the client, store it nowhere else): {key}")
        print(f"keys-file line: {line}")
        return 0
    from mrl.service.limits import Limits
    from mrl.service.settings import Settings, is_loopback

    if not args.data_dir:
        raise ConfigError("--data-dir is required: the folder the server keeps its data in")
    given = {n: getattr(args, n) for n in LIMIT_FLAGS if getattr(args, n) is not None}
    settings = Settings(
        data_dir=args.data_dir,
        host=args.host,
        port=args.port,
        backend=args.backend,
        keys_file=args.keys_file,
        model=args.model,
        dsn=args.dsn,
        limits=Limits(**given),
        snapshot_bytes=args.snapshot_bytes,
        fused_rerank=args.fused_rerank,
    )
    keys = load_keys(settings.keys_file)
    if not keys and not is_loopback(settings.host):
        raise ConfigError(
            f"refusing to serve on {settings.host} without API keys; give --keys-file (or "
            "$MRL_API_KEYS), or bind 127.0.0.1"
        )
    serve(settings, keys, args.log_level)
    return 0


def open_backend(settings):
    """The backend `settings` names, opened on its data folder."""
    if settings.backend == "postgres":
        from mrl.service.postgres import PostgresBackend

        if settings.dsn:
            return PostgresBackend(dsn=settings.dsn)
        return PostgresBackend(data_dir=settings.data_dir)
    from mrl.service.memory import MemoryBackend

    return MemoryBackend(
        settings.data_dir,
        snapshot_bytes=settings.snapshot_bytes,
        fused_rerank=settings.fused_rerank,
    )


def serve(settings, keys, log_level: str = "info") -> None:
    """Open the backend, then run uvicorn until interrupted (the app closes the backend).

    The access log is on at debug level only: /metrics counts every request.
    """
    import uvicorn

    from mrl.service.app import create_app
    from mrl.service.embedder import Embedder

    backend = open_backend(settings)
    app = create_app(
        backend,
        keys=keys,
        embedder=Embedder(settings.model),
        limits=settings.limits,
        backend_name=settings.backend,
    )
    access = "with API keys" if keys else "open (no API keys, loopback only)"
    print(
        f"mrl serve: {settings.backend} backend in {settings.data_dir}, "
        f"http://{settings.host}:{settings.port} {access}; docs at /docs",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        access_log=log_level == "debug",
    )
