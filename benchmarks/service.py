"""Load benchmark of `mrl serve`: concurrent mixed search + add over loopback, bounded in time.

The load generator is asyncio (not locust): `--clients` coroutines, each with its own
keep-alive HTTP/1.1 connection, loop until `--seconds` have passed, each request a search
(k=10, the collection's default funnel plan) or, with probability `--add-fraction`, an add
of one new item. By default each connection is a minimal asyncio-streams HTTP/1.1 client
(`--client raw`); `--client httpx` uses one `httpx.AsyncClient` instead. The raw client is the
default because httpx's own overhead caps the load here: on this 2-core machine 100
concurrent GET /health reached 46 req/s through one httpx.AsyncClient (6.6 req/s with one
client per coroutine) and 994 req/s through raw streams, so httpx would measure itself, not
the server. httpx does the setup and the checks.

The server is a real `mrl serve` subprocess on 127.0.0.1 (memory backend; `--backend
postgres` or `both` adds the PostgreSQL + pgvector backend with its embedded server, when
mrl.service.postgres is installed), preloaded with `--n` generated nested vectors
(`mrl.data.generated`).

Reports per backend: QPS, p50/p99 latency per operation, errors (must be 0), and the count
check (nothing lost: the collection holds the preloaded items plus every acknowledged add,
and a sample of acknowledged ids is read back). The same queries run in-process on a
`MatryoshkaIndex` over the same vectors, one at a time, and one HTTP client sends them one at
a time too, so the service's added latency per search is their difference (without queueing).

Prints a Markdown table and writes `service.json` + `service.md` to `--out` (atomically).

Usage (loopback only; the run takes about --seconds per backend plus a minute of setup):
    python benchmarks/service.py --seconds 60
    python benchmarks/service.py --seconds 20 --backend both
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from mrl.data.generated import GeneratedNestedSpec, generated_nested_embeddings
from mrl.io import atomic_write_bytes, atomic_write_json
from mrl.nesting import Nesting
from mrl.retrieval.index import MatryoshkaIndex
from mrl.service.backend import CollectionSpec
from mrl.service.spec import resolve_plan

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import run_script, thread_count  # noqa: E402  (the benchmarks' harness)

K = 10


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(backend: str, data_dir: Path, log_path: Path):
    """`mrl serve` on a free loopback port; yields its URL, SIGINT (clean shutdown) after."""
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "mrl.cli.main", "serve", "--data-dir", str(data_dir)]
    cmd += ["--port", str(port), "--backend", backend, "--log-level", "warning"]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mrl serve did not start; see {log_path}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url + "/ready", timeout=1).status_code == 200:
                        break
                time.sleep(0.2)
            yield url
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


def preload(url: str, spec: CollectionSpec, x: np.ndarray, batch: int = 1000) -> float:
    """Create the collection and add `x` with ids 0..n-1; returns seconds."""
    start = time.perf_counter()
    with httpx.Client(base_url=url, timeout=120) as client:
        body = {
            "name": spec.name,
            "dim": spec.dim,
            "nesting": list(spec.nesting),
            "shortlist_dim": spec.shortlist_dim,
        }
        client.post("/v1/collections", json=body).raise_for_status()
        for lo in range(0, len(x), batch):
            ids = list(range(lo, min(lo + batch, len(x))))
            r = client.post(
                f"/v1/collections/{spec.name}/items", json={"ids": ids, "vectors": x[ids].tolist()}
            )
            r.raise_for_status()
    return time.perf_counter() - start


class RawConnection:
    """One keep-alive HTTP/1.1 connection on asyncio streams: POST JSON, read status + body.

    Enough for uvicorn's answers (always Content-Length, never chunked); see the module
    docstring for why the default load does not go through httpx.
    """

    def __init__(self, url: str):
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.reader = self.writer = None

    async def post(self, path: str, body: dict) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        data = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nhost: {self.host}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(data)}\r\n\r\n"
        )
        self.writer.write(head.encode() + data)
        await self.writer.drain()
        lines = (await self.reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
        status = int(lines[0].split()[1])
        fields = (line.partition(b":") for line in lines[1:])
        length = next(int(v) for k, _, v in fields if k.lower() == b"content-length")
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


class HttpxConnection:
    """The same interface over a shared `httpx.AsyncClient`."""

    def __init__(self, client: httpx.AsyncClient):
        self.client = client

    async def post(self, path: str, body: dict) -> tuple[int, bytes]:
        r = await self.client.post(path, json=body)
        return r.status_code, r.content

    async def close(self) -> None:
        pass


async def load(url: str, name: str, queries: list, fresh: np.ndarray, args, first_id: int) -> dict:
    """`args.clients` coroutines for `args.seconds`; latencies by op, errors, acked add ids."""
    lat = {"search": [], "add": []}
    errors: list[str] = []
    acked: list[int] = []
    next_id = [first_id]
    deadline = time.perf_counter() + args.seconds
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)

    async def client_loop(shared: httpx.AsyncClient, c: int) -> None:
        conn = RawConnection(url) if args.client == "raw" else HttpxConnection(shared)
        local = np.random.default_rng([2, c])
        while time.perf_counter() < deadline:
            if local.random() < args.add_fraction:
                op, item = "add", next_id[0]
                next_id[0] += 1
                vec = fresh[item % len(fresh)].tolist()
                req = ("items", {"ids": [item], "vectors": [vec]})
            else:
                op, item = "search", None
                req = ("search", {"vector": queries[int(local.integers(len(queries)))], "k": K})
            t0 = time.perf_counter()
            try:
                status, text = await conn.post(f"/v1/collections/{name}/{req[0]}", req[1])
                ok = status in (200, 201)
                if not ok:
                    errors.append(f"{op} {status}: {text[:200]!r}")
            except (httpx.HTTPError, OSError, asyncio.IncompleteReadError) as e:
                ok = False
                errors.append(f"{op} {type(e).__name__}: {e}")
                await conn.close()
            lat[op].append(time.perf_counter() - t0)
            if ok and op == "add":
                acked.append(item)
        await conn.close()

    start = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        await asyncio.gather(*(client_loop(client, c) for c in range(args.clients)))
    wall = time.perf_counter() - start
    return {"lat": lat, "errors": errors, "acked": acked, "wall": wall}


def sequential_search_ms(url: str, name: str, queries: list) -> np.ndarray:
    """Per-query latency (ms) of one client sending the queries one at a time."""
    out = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for q in queries:
            t0 = time.perf_counter()
            client.post(f"/v1/collections/{name}/search", json={"vector": q, "k": K})
            out.append(time.perf_counter() - t0)
    return np.array(out) * 1e3


def in_process_search_ms(spec: CollectionSpec, x: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Per-query latency (ms) of the same searches on a `MatryoshkaIndex`, one at a time.

    On one thread, as the server runs (OMP_NUM_THREADS=1): on a busy machine OpenMP's
    multi-threaded barriers made single queries 100x slower here. Ten warm-up queries first.
    """
    index = MatryoshkaIndex(shortlist_dim=spec.shortlist_dim).build(x)
    plan = resolve_plan(spec, None, K)
    with thread_count(1):
        for q in queries[:10]:
            index.search(q[None, :], K, plan)
        out = []
        for q in queries:
            t0 = time.perf_counter()
            index.search(q[None, :], K, plan)
            out.append(time.perf_counter() - t0)
    return np.array(out) * 1e3


def count_check(url: str, name: str, expected: int, acked: list[int], sample: int = 200) -> dict:
    with httpx.Client(base_url=url, timeout=60) as client:
        count = client.get(f"/v1/collections/{name}").json()["count"]
        rng = np.random.default_rng(3)
        picked = rng.choice(acked, min(sample, len(acked)), replace=False) if acked else []
        missing = [
            int(i)
            for i in picked
            if client.get(f"/v1/collections/{name}/items/{int(i)}").status_code != 200
        ]
    return {"count": count, "expected": expected, "sample_read": len(picked), "missing": missing}


def _pct(values, q) -> float:
    return float(np.percentile(np.asarray(values) * 1e3, q)) if len(values) else float("nan")


def run_backend(backend: str, args, x, queries, fresh, work: Path) -> dict:
    spec = CollectionSpec("bench", x.shape[1], Nesting.halving(x.shape[1]).dims, args.shortlist_dim)
    qlist = [q.tolist() for q in queries]
    with serve(backend, work / backend, work / f"{backend}.log") as url:
        preload_s = preload(url, spec, x)
        seq_ms = sequential_search_ms(url, spec.name, qlist[: args.sequential])
        res = asyncio.run(load(url, spec.name, qlist, fresh, args, first_id=len(x)))
        check = count_check(url, spec.name, len(x) + len(res["acked"]), res["acked"])
    lat = res["lat"]
    ops = len(lat["search"]) + len(lat["add"])
    return {
        "backend": backend,
        "preload_seconds": preload_s,
        "seconds": res["wall"],
        "requests": ops,
        "qps": ops / res["wall"],
        "search_qps": len(lat["search"]) / res["wall"],
        "add_qps": len(lat["add"]) / res["wall"],
        "search_p50_ms": _pct(lat["search"], 50),
        "search_p99_ms": _pct(lat["search"], 99),
        "add_p50_ms": _pct(lat["add"], 50),
        "add_p99_ms": _pct(lat["add"], 99),
        "errors": len(res["errors"]),
        "error_examples": res["errors"][:5],
        "sequential_search_p50_ms": float(np.median(seq_ms)),
        "count_check": check,
        "nothing_lost": check["count"] == check["expected"] and not check["missing"],
    }


def markdown(result: dict) -> str:
    cfg = result["config"]
    lines = [
        f"# mrl serve load benchmark ({cfg['clients']} clients, {cfg['seconds']} s, "
        f"{cfg['n']} x {cfg['dim']} items, D_s={cfg['shortlist_dim']}, "
        f"{cfg['add_fraction']:.0%} adds)",
        "",
        "| backend | QPS | search p50 / p99 ms | add p50 / p99 ms | errors | nothing lost | "
        "1-client search p50 ms | in-process p50 ms | added ms/search |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["backends"]:
        lines.append(
            f"| {r['backend']} | {r['qps']:.0f} | {r['search_p50_ms']:.1f} / "
            f"{r['search_p99_ms']:.1f} | {r['add_p50_ms']:.1f} / {r['add_p99_ms']:.1f} | "
            f"{r['errors']} | {'yes' if r['nothing_lost'] else 'NO'} | "
            f"{r['sequential_search_p50_ms']:.2f} | {result['in_process_p50_ms']:.2f} | "
            f"{r['sequential_search_p50_ms'] - result['in_process_p50_ms']:.2f} |"
        )
    lines += [
        "",
        f"Machine: {cfg['machine']} (load average {cfg['load_average_at_end'][0]:.1f} at the end, "
        "this benchmark's own processes included); the load generator and the server share its "
        "cores. Latency "
        "under load is mostly queueing (clients / QPS). Command: "
        f"`{cfg['command']}`.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0, help="load duration per backend")
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--n", type=int, default=20_000, help="preloaded items")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--shortlist-dim", type=int, default=16)
    p.add_argument("--add-fraction", type=float, default=0.1)
    p.add_argument("--queries", type=int, default=1000, help="distinct query vectors")
    p.add_argument("--sequential", type=int, default=200, help="queries for the 1-client run")
    p.add_argument("--backend", default="memory", choices=("memory", "postgres", "both"))
    p.add_argument("--client", default="raw", choices=("raw", "httpx"), help="load client")
    p.add_argument("--out", default="docs/results/service")
    args = p.parse_args(argv)
    for name in ("clients", "n", "dim", "queries", "sequential"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if not (0 < args.seconds <= 3600 and 0 <= args.add_fraction <= 1):
        p.error("--seconds must be in (0, 3600] and --add-fraction in [0, 1]")
    backends = ["memory", "postgres"] if args.backend == "both" else [args.backend]

    gen = GeneratedNestedSpec(dim=args.dim)
    x, _ = generated_nested_embeddings(args.n, gen)
    queries, _ = generated_nested_embeddings(args.queries, gen, split="queries")
    fresh, _ = generated_nested_embeddings(5_000, GeneratedNestedSpec(dim=args.dim, seed=7))
    x, queries, fresh = (np.round(a, 5) for a in (x, queries, fresh))  # exact JSON round trip

    results = []
    with tempfile.TemporaryDirectory(prefix="mrl-service-bench-") as tmp:
        for backend in backends:
            results.append(run_backend(backend, args, x, queries, fresh, Path(tmp)))
            print(f"{backend}: done", file=sys.stderr, flush=True)
    spec = CollectionSpec("bench", args.dim, Nesting.halving(args.dim).dims, args.shortlist_dim)
    in_proc = in_process_search_ms(spec, x, queries[: args.sequential])
    result = {
        "config": {
            **{k: v for k, v in vars(args).items() if k != "out"},
            "k": K,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}",
            "command": "python benchmarks/service.py " + " ".join(argv or sys.argv[1:]),
            "load_average_at_end": os.getloadavg(),
            "load_generator": f"asyncio, {args.client} HTTP/1.1 keep-alive connections",
        },
        "in_process_p50_ms": float(np.median(in_proc)),
        "in_process_p99_ms": float(np.percentile(in_proc, 99)),
        "backends": results,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "service.json", result)
    table = markdown(result)
    atomic_write_bytes(out / "service.md", table.encode())
    print(table)
    bad = [r["backend"] for r in results if r["errors"] or not r["nothing_lost"]]
    return 1 if bad else 0


if __name__ == "__main__":
    run_script(main)
