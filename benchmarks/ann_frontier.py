"""ANN frontier, ann-benchmarks style: `MatryoshkaIndex` against faiss at full dimension.

For each data set and each method, parameters are swept and every point is timed on the same
held-out queries; only the Pareto frontier of recall@10 (against exact full-D search) vs
queries/s is kept, in two modes: batched (all threads) and one query per call (1 thread).
Build time and resident memory are reported per index. Each point's time is the fastest of
`--repeats` passes (default 3) over the same queries, for every method alike, which damps
the noise of a shared machine.

Methods, all in one run and one process (so ratios are same-machine, same-load):

- `MatryoshkaIndex`: candidate indexes (`--ours`; default IVF over the float and the SQ8
  codes of the 64- and 128-d prefixes, IVF over SQ8 codes of the 32-d prefix (the lean
  pick), HNSW over the 32-d prefix) tuned by
  `mrl.retrieval.tune.choose_index` on held-out *tuning* queries (distinct from the timed
  ones), once per mode (batched; one query per call on one thread, as a service tunes); the
  union of the candidates' Pareto sets of a mode, with each candidate's fastest rows near
  each target (`_rows_to_time`), is then timed on the timed queries.
  The plan chosen for each target (0.95, 0.985) is checked on the timed queries (does it
  hold its target?; its timings join the frontier like any other point) and, saved and
  memory-mapped, in lean-memory mode (only the prefix
  structure and norms resident; cold after evicting the vectors file from the page cache,
  then warm);
- faiss `IndexHNSWFlat` (M=32, efConstruction 40) at full D, efSearch swept;
- faiss `IndexHNSWSQ` (8-bit scalar codes) at full D, efSearch swept;
- faiss `IndexIVFFlat` and OPQ + `IndexIVFPQ` at full D, nprobe swept;
- with `--pgvector`, one query per call only: pgvector's HNSW over the full vector and our SQL
  funnel over an HNSW index of the `--pgvector-dim` prefix, in an embedded PostgreSQL
  (`pgvector_frontier.py`; the `[postgres]` extra).

Data: generated nested embeddings (`mrl.data.generated`; say "generated" when quoting), one
`--data ROWSxDIM` per set, or a real `.npy`/`mrl embed` folder with `--database`.
Resident memory of a faiss index is its serialised size (codes, graph, lists, transforms);
ours is the ANN structure + ids + tombstones + norms, plus the vectors unless memory-mapped.

Writes `frontier.json` (every point), `frontier.md` and one `frontier_<set>.png` per set to
`--out`, atomically. Thread counts are restored when the run ends.

Usage:
    python benchmarks/ann_frontier.py --data 200000x1024 --data 100000x2048 \
        --out docs/results/ann_frontier
    python benchmarks/ann_frontier.py --data 1000000x2048 --out reports/ann-1m   # 24+ GB
    python benchmarks/ann_frontier.py --database emb/train --out reports/ann-real

`--ours` names candidates as `ANN@D_s[/LISTS][/mM][/efcE][+fused]`: `ivf_sq8@128/2048+fused` is
IVF over SQ8 codes of the 128-d prefix with 2,048 cells (default about 4 sqrt(N)) and the
fused rerank; `hnsw_sq8@384/m16/efc100` an HNSW graph of degree 16 built with beam 100.
On a VM that backs memory lazily (the first write to a page costing tens of us),
give builds backed pages with `GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.
trim_threshold=1099511627776` and `--prefault-gib` about the peak resident memory the
previous run logged (`prefault_memory` in the harness says why).
"""

from __future__ import annotations

import argparse
import faulthandler
import io
import logging
import math
import os
import resource
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import faiss
import numpy as np
from tqdm import tqdm

from mrl.checks import check_int
from mrl.data.generated import GeneratedNestedSpec, generated_nested_embeddings
from mrl.data.npy import load_npy
from mrl.errors import ConfigError, InputError
from mrl.io import atomic_open, atomic_write_bytes, atomic_write_json
from mrl.retrieval import MatryoshkaIndex
from mrl.retrieval.index import default_ivf_lists as library_ivf_lists
from mrl.retrieval.search import HNSW_KINDS, IVF_KINDS
from mrl.retrieval.storage import unit_prefix
from mrl.retrieval.tune import (
    choose_index,
    default_plans,
    neighbor_recall,
    pareto_front,
    time_search,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import prefault_memory, run_script, thread_count  # noqa: E402  (the benchmarks' harness)
from pgvector_frontier import (  # noqa: E402
    check_pgvector_args,
    full_hnsw_name,
    pgvector_points,
)

log = logging.getLogger("benchmarks.ann_frontier")

TARGETS = (0.95, 0.985)
QUERIES, TUNE_QUERIES = 1000, 500  # held out of the database: timed and tuning queries
EF_SWEEP = (16, 20, 24, 32, 40, 48, 64, 96, 128, 256, 512)
NPROBE_SWEEP = (1, 2, 4, 8, 16, 32, 64, 128)
# The efforts the tuner tries per candidate kind. IVF steps of 1.25-1.5x: at 0.985 one query
# per call, nprobe 24 met the target where 16 fell short and 32 cost a third more; batched at
# D = 2,048 the 0.985 point fell between 16 (0.982) and 24 (0.988), hence 20.
IVF_EFFORTS = (4, 8, 12, 16, 20, 24, 32, 48, 64)
# HNSW steps of 1.25x up to 48 for both ours and faiss's full-D sweep (EF_SWEEP): on the
# Debian set (D = 384) a graph's 0.95 point fell between efSearch 16 (0.951 on the tuning
# queries, under the target on the timed ones) and 24 (0.968).
HNSW_EFFORTS = (16, 20, 24, 32, 40, 48, 64, 128)


# ---------------------------------------------------------------------------------- helpers
def index_bytes(index: faiss.Index) -> int:
    """Serialised size of a faiss index, counted through a writer (never copied whole)."""
    total = 0

    def count(chunk) -> int:
        nonlocal total
        total += len(chunk)
        return len(chunk)

    faiss.write_index(index, faiss.PyCallbackIOWriter(count))
    return total


def ours_bytes(index: MatryoshkaIndex, with_vectors: bool) -> int:
    """Resident bytes of a `MatryoshkaIndex`: ANN + ids + live + norms (+ the vectors and
    the fused-rerank copy of them)."""
    store = index.store_
    norms = sum(n.nbytes for n in store.cached_norms.values())
    extra = store.vectors.nbytes + index.fused_bytes if with_vectors else 0
    return index_bytes(index.ann_) + store.ids.nbytes + store.live.nbytes + norms + extra


def frontier(points: list[dict]) -> list[dict]:
    """The Pareto points (higher recall, higher queries/s), by increasing recall."""
    if not points:
        return []
    qps = np.array([p["qps"] for p in points])
    rec = np.array([p["recall"] for p in points])
    keep = pareto_front(1 / qps, rec)
    return sorted((p for p, k in zip(points, keep, strict=True) if k), key=lambda p: p["recall"])


def best_qps_at(points: list[dict], recall: float) -> dict | None:
    """The fastest point reaching `recall` (the cheapest operating point at that recall)."""
    ok = [p for p in points if p["recall"] >= recall]
    return max(ok, key=lambda p: p["qps"]) if ok else None


def _time_faiss(index: faiss.Index, q: np.ndarray, k: int, per_query: bool, repeats: int):
    """Ids and the best-of-`repeats` seconds of searching `q` (the same as ours gets)."""
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        if per_query:
            ids = np.concatenate([index.search(q[i : i + 1], k)[1] for i in range(len(q))])
        else:
            ids = index.search(q, k)[1]
        best = min(best, time.perf_counter() - t0)
    return ids, best


def sweep_faiss(name, index, set_param, values, queries, truth, k, modes, bar) -> list[dict]:
    """Time `index` at every parameter value in each mode: one point per (value, mode)."""
    points = []
    for value in values:
        set_param(index, value)
        for mode, (threads, n, repeats) in modes.items():
            with thread_count(threads):
                ids, took = _time_faiss(index, queries[:n], k, mode == "single", repeats)
            points.append(
                {
                    "method": name,
                    "mode": mode,
                    "param": value,
                    "recall": neighbor_recall(ids, truth[:n]),
                    "qps": n / took,
                }
            )
        bar.update()
    return points


def set_ef(index, ef):
    index.hnsw.efSearch = ef


def _set_nprobe(index, nprobe):
    faiss.extract_index_ivf(index).nprobe = nprobe


def _ivf_lists(n: int) -> int:
    """About sqrt(N) cells as a power of two (512 at 200k rows): k-means at full D stays
    within a minute on 2 shared cores (8 sqrt(N), the sibling harness's choice at the 32-d
    prefix, would take ~30x longer here)."""
    return max(16, 2 ** round(math.log2(math.sqrt(n))))


def _train_sample(x: np.ndarray, n: int) -> np.ndarray:
    rows = np.linspace(0, len(x) - 1, min(len(x), n)).astype(np.int64)
    return np.ascontiguousarray(x[rows])


# ---------------------------------------------------------------------------------- baselines
def build_faiss(kind: str, xn: np.ndarray, lists: int, pq_m: int) -> faiss.Index:
    """A trained, filled full-D faiss index of `kind` over the unit rows `xn`.

    IVF k-means runs 10 iterations on 40 points per cell, OPQ 10 iterations on 20k points,
    without polysemous training, and both train on one thread: on a shared, oversubscribed
    2-core machine faiss's many short OpenMP regions (PQ k-means) ran 8x slower on two
    threads than on one.
    """
    d = xn.shape[1]
    ip = faiss.METRIC_INNER_PRODUCT
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, 32, ip)
    elif kind == "hnsw_sq8":
        index = faiss.IndexHNSWSQ(d, faiss.ScalarQuantizer.QT_8bit, 32, ip)
        index.train(_train_sample(xn, 65536))
    elif kind == "ivf":
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, lists, ip)
        index.cp.niter = 10
        index.train(_train_sample(xn, 40 * lists))
    else:
        index = faiss.index_factory(d, f"OPQ{pq_m},IVF{lists},PQ{pq_m}", ip)
        opq = faiss.downcast_VectorTransform(index.chain.at(0))
        opq.niter, opq.max_train_points = 10, 20_000
        ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
        ivf.cp.niter = 10
        # The factory turns on polysemous training (simulated annealing over the codes),
        # which only Hamming-filtered search uses: it was most of a 4-minute OPQ build.
        ivf.do_polysemous_training = False
        index.train(_train_sample(xn, 40 * lists))
    if kind.startswith("hnsw"):
        index.hnsw.efConstruction = 40
    index.add(xn)
    return index


def faiss_baselines(xn, queries, truth, k, modes, args, bar) -> tuple[list, dict, object]:
    """Full-D faiss indexes: build time, bytes, the swept points of each, and the full-D
    `IndexHNSWFlat` itself when `--head-to-head` times it again (else None)."""
    n, d = xn.shape
    points, builds, kept = [], {}, None
    lists = _ivf_lists(n)
    specs = [
        ("faiss HNSWFlat M=32 (full D)", "hnsw", EF_SWEEP),
        ("faiss HNSW-SQ8 M=32 (full D)", "hnsw_sq8", EF_SWEEP),
        (f"faiss IVF{lists}-Flat (full D)", "ivf", NPROBE_SWEEP),
        (f"faiss OPQ{args.pq_m}+IVF{lists}-PQ{args.pq_m} (full D)", "ivfpq", NPROBE_SWEEP),
    ]
    for name, kind, sweep in specs:
        if kind not in args.baselines:
            bar.update(len(sweep))
            continue
        bar.set_description(f"build {kind}")
        t0 = time.perf_counter()
        with thread_count(1 if kind in ("ivf", "ivfpq") else args.threads):
            index = build_faiss(kind, xn, lists, args.pq_m)
        build_s = time.perf_counter() - t0
        builds[name] = {"build_seconds": build_s, "bytes": index_bytes(index)}
        log.info("%s: built in %.1f s, %.0f MiB", name, build_s, builds[name]["bytes"] / 2**20)
        bar.set_description(f"sweep {kind}")
        setter = set_ef if kind.startswith("hnsw") else _set_nprobe
        found = sweep_faiss(name, index, setter, sweep, queries, truth, k, modes, bar)
        for p in found:
            p.update(builds[name])
        points += found
        if name == HNSW and args.head_to_head:
            kept = index
        del index
    return points, builds, kept


# ---------------------------------------------------------------------------------- ours
class Candidate(NamedTuple):
    """One `--ours` spec (`SPEC_FORM`), parsed and checked."""

    kind: str  # the ANN kind
    dim: int  # D_s
    lists: int | None  # IVF cells; None: about 4 sqrt(N) (`default_ivf_lists`)
    fused: bool  # whether `use_fused_rerank` is on
    hnsw_m: int | None = None  # HNSW graph degree; None: the library's default (32)
    ef_construction: int | None = None  # HNSW build beam; None: the library's default (40)
    graph_dim: int | None = None  # the prefix the HNSW graph is built over; None: D_s


SPEC_FORM = (
    "ANN@D_s[/LISTS][/mM][/efcE][/gW][+fused] (hnsw_sq8@192+fused, ivf_sq8@128/2048, "
    "hnsw_sq8@384/m16/efc100/g128)"
)
_SPEC_OPTIONS = {  # prefix -> param
    "": "ivf_lists",
    "m": "hnsw_m",
    "efc": "ef_construction",
    "g": "graph_dim",
}


def parse_candidate(spec: str) -> Candidate:
    """`SPEC_FORM` (`ivf_sq8@128/2048+fused`, `hnsw_sq8@384/m16/efc100`) as a `Candidate`:
    /LISTS sets an IVF kind's cells, /m and /efc an HNSW kind's degree and build beam, /g
    the prefix its graph is built over (`MatryoshkaIndex.graph_dim`)."""
    body, plus, suffix = spec.partition("+")
    head, *options = body.split("/")
    kind, at, dim = head.partition("@")
    params = {}
    for option in options:
        prefix = option.rstrip("0123456789")
        value = option[len(prefix) :]
        name = _SPEC_OPTIONS.get(prefix)
        if name is None or not value or name in params:
            params = None
            break
        params[name] = int(value)
    if not at or not dim.isdigit() or (plus and suffix != "fused") or params is None:
        raise ConfigError(f"--ours takes {SPEC_FORM}, got {spec!r}")
    MatryoshkaIndex(shortlist_dim=int(dim), ann=kind, **params).check_params(max(int(dim), 1))
    if "ivf_lists" in params and kind not in IVF_KINDS:
        raise ConfigError(f"--ours {spec!r}: /LISTS (IVF cells) applies to IVF kinds only")
    if params.keys() & {"hnsw_m", "ef_construction"} and kind not in HNSW_KINDS:
        raise ConfigError(f"--ours {spec!r}: /m and /efc (the graph) apply to HNSW kinds only")
    return Candidate(
        kind,
        int(dim),
        params.get("ivf_lists"),
        bool(plus),
        params.get("hnsw_m"),
        params.get("ef_construction"),
        params.get("graph_dim"),
    )


def default_ivf_lists(n: int) -> int:
    """About 4 sqrt(N) cells as a power of two (1,024 at 100k rows), the cell count of the
    earlier sessions' runs (the library's default is about 6 sqrt(N); `/LISTS` sets any)."""
    return library_ivf_lists(n, per_sqrt_n=4.0)


def candidate_indexes(xn, args, bar) -> list[tuple[MatryoshkaIndex, list[int], dict]]:
    """The candidate `MatryoshkaIndex`es the tuner chooses among, each with its efforts."""
    out = []
    for spec in args.ours:
        c = parse_candidate(spec)
        params = {"shortlist_dim": c.dim, "ann": c.kind}
        if c.kind in IVF_KINDS:
            lists = c.lists or default_ivf_lists(len(xn))
            params.update(ivf_lists=lists)
            efforts = [e for e in IVF_EFFORTS if e <= lists]
        else:
            graph = {
                "hnsw_m": c.hnsw_m,
                "ef_construction": c.ef_construction,
                "graph_dim": c.graph_dim,
            }
            params.update({key: v for key, v in graph.items() if v is not None})
            efforts = list(HNSW_EFFORTS)
        bar.set_description(f"build ours {spec}")
        t0 = time.perf_counter()
        index = MatryoshkaIndex(**params).build(xn).use_fused_rerank(c.fused)
        build = {"build_seconds": time.perf_counter() - t0, "bytes": ours_bytes(index, True)}
        build["lean_bytes"] = ours_bytes(index, False)
        if c.kind in IVF_KINDS:
            build["ivf_lists"] = lists
        else:  # the graph as built (faiss's own count of links per node at level 0: 2 M)
            build["hnsw_m"] = index.ann_.hnsw.nb_neighbors(0) // 2
            build["ef_construction"] = index.ann_.hnsw.efConstruction
            build["graph_dim"] = index.graph_dim or index.shortlist_dim
        log.info("ours %s: built in %.1f s", spec, build["build_seconds"])
        out.append((index, efforts, {"name": f"ours {spec}", **build}))
        bar.update()
    return out


def _ours_point(index, info, plan, effort, queries, truth, k, mode, modes) -> dict:
    threads, n, repeats = modes[mode]
    with thread_count(threads):
        res, took = time_search(index, queries[:n], k, plan, repeats, effort, mode == "single")
    st = res.stats
    profile = {  # ms per query: the shortlist, the rerank steps, and everything else
        "shortlist_ms": 1e3 * st.shortlist_seconds / n,
        "rerank_ms": 1e3 * st.rerank_seconds / n,
        "other_ms": 1e3 * (took - st.seconds) / n,
    }
    return {
        "method": "MatryoshkaIndex (tuned)",
        "index": info["name"],
        "mode": mode,
        "param": f"{plan} @{effort}",
        "recall": neighbor_recall(res.ids, truth[:n]),
        "qps": n / took,
        "build_seconds": info["build_seconds"],
        "bytes": info["bytes"],
        "lean_bytes": info["lean_bytes"],
        "profile": profile,
    }


def _tune(candidates, tune_q, k, args, mode: str, threads: int, bar) -> list:
    """Each candidate's fitted `PlanTuner` for `mode` (None where no plan reaches the first
    target): one query per call on one thread for "single", as a service would tune it (the
    plan fastest batched is not the fastest alone: a batch hides the rerank's memory
    latency across threads), one batched call otherwise."""
    tuners = []  # choose_index's loop, each candidate with its own (D_s-specific) plans
    for index, efforts, info in candidates:
        plans = default_plans(index.dim, index.shortlist_dim, k, index.count, index.scores_codes)
        plans = [p for p in plans if p.shortlist_size(k) <= args.max_shortlist]
        if mode == "single":  # a brute-force scan per call: minutes of tuning, never an ANN point
            plans = [p for p in plans if not p.exact]
        try:
            with thread_count(threads):
                tuners += choose_index(
                    [(index, efforts)],
                    tune_q,
                    TARGETS[0],
                    k,
                    plans=plans,
                    repeats=1,
                    confidence=args.confidence or None,
                    per_query=mode == "single",
                )[2]
        except InputError as e:  # this candidate reaches no target
            log.info("%s (%s): %s", info["name"], mode, e)
            tuners.append(None)
        bar.set_description(f"tuned {info['name']} ({mode})")
    return tuners


def ours(xn, tune_q, queries, truth, k, modes, args, bar, workdir: Path):
    """Build the candidates, tune them on `tune_q` per mode, time each mode's Pareto sets.

    Returns the points, the run's record, and per (mode, target) the fastest point reaching
    the target with what timed it, (point, (index, plan, effort)), for `head_to_head`.
    """
    candidates = candidate_indexes(xn, args, bar)
    bar.set_description("tune ours")
    t0 = time.perf_counter()
    tuned = {mode: _tune(candidates, tune_q, k, args, mode, modes[mode][0], bar) for mode in modes}
    tune_s = time.perf_counter() - t0
    points, handles, chosen = [], [], {}
    bar.set_description("sweep ours")
    for mode, tuners in tuned.items():
        for (index, _, info), tuner in zip(candidates, tuners, strict=True):
            for i in _rows_to_time(tuner, args.max_points) if tuner is not None else ():
                plan, effort = tuner.measured_plans_[i]
                points.append(
                    _ours_point(index, info, plan, effort, queries, truth, k, mode, modes)
                )
                handles.append((index, plan, effort))
    bar.update()
    fronts = [(c, t) for c, t in zip(candidates, tuned["batch"], strict=True) if t is not None]
    # The tuner's choice per target across candidates: does it hold on the timed queries?
    # And the same for the leanest candidate (`--lean`), which lean-memory mode is about.
    lean = [(c, t) for c, t in fronts if c[2]["name"] == f"ours {args.lean}"]
    for target in TARGETS:
        for label, pool in (("chosen", fronts), ("lean", lean)):
            record = _pick(target, pool)
            if record is None:
                continue
            (index, _, info), plan, effort = record.pop("pick")
            for mode in modes:
                p = _ours_point(index, info, plan, effort, queries, truth, k, mode, modes)
                points.append(p)  # timed on the same queries: a frontier point like any other
                handles.append((index, plan, effort))
                record[mode] = {"recall": p["recall"], "qps": p["qps"], "profile": p["profile"]}
            record["holds"] = record["batch"]["recall"] >= target - 0.005
            record.update(lean_memory(index, plan, effort, queries, truth, k, modes, workdir))
            chosen[f"{label} {target}"] = record
    info = {"tune_seconds": tune_s, "candidates": [c[2] for c in candidates], "chosen": chosen}
    leaders = {}
    for mode in modes:
        timed = [(p, h) for p, h in zip(points, handles, strict=True) if p["mode"] == mode]
        for target in TARGETS:
            best = best_qps_at([p for p, _ in timed], target)
            if best is not None:
                leaders[mode, target] = next((p, h) for p, h in timed if p is best)
    return points, info, leaders


def head_to_head(leaders, hnsw, hnsw_points, queries, truth, k, modes, rounds) -> dict:
    """The queries/s bars timed again in alternating passes: per (mode, target), ours'
    fastest point and full-D HNSW's (at its cheapest efSearch reaching the target), one pass
    each in turn for `rounds` rounds, the fastest pass of each kept.

    The sweeps time every method once, minutes apart; on a shared host the speed drifts
    over minutes (one-query ratios between runs of this benchmark moved by +-25%), so a bar
    read off two sweeps compares two moments. Alternating passes put both sides in the same
    moments. Returns {"mode@target": {ours_qps, hnsw_qps, speedup, rounds, recalls}}.
    """
    out = {}
    for (mode, target), (point, (index, plan, effort)) in leaders.items():
        theirs = best_qps_at([p for p in hnsw_points if p["mode"] == mode], target)
        if theirs is None:
            continue
        threads, n, _ = modes[mode]
        single = mode == "single"
        set_ef(hnsw, theirs["param"])
        ours_s = hnsw_s = np.inf
        with thread_count(threads):
            for _ in range(rounds):
                res, took = time_search(index, queries[:n], k, plan, 1, effort, single)
                ours_s = min(ours_s, took)
                ids, took = _time_faiss(hnsw, queries[:n], k, single, 1)
                hnsw_s = min(hnsw_s, took)
        out[f"{mode}@{target}"] = {
            "rounds": rounds,
            "ours_point": f"{point['index']} {point['param']}",
            "ours_qps": n / ours_s,
            "hnsw_ef": theirs["param"],
            "hnsw_qps": n / hnsw_s,
            "speedup": hnsw_s / ours_s,
            "ours_recall": neighbor_recall(res.ids, truth[:n]),
            "hnsw_recall": neighbor_recall(ids, truth[:n]),
        }
    return out


# The tuning-recall band around each target whose cheapest rows are timed whatever the
# tuner's Pareto flags say, and how many per band: a flag is set from one noisy timing on
# the tuning queries (on the Debian set efSearch 16 and 20 of a graph were never timed,
# measured slower than 24), and a row 0.005 under a target on them can reach it on the timed
# queries, as every efSearch of the faiss sweeps is timed.
NEAR_TARGET, NEAR_ROWS = 0.01, 6


def _rows_to_time(tuner, most: int) -> list[int]:
    """Rows of a tuner's table worth timing on the timed queries, by tuning recall: its
    Pareto set (at most `most`, spread evenly over its quality range from recall 0.8 up) and,
    per target, the `NEAR_ROWS` fastest rows within `NEAR_TARGET` of it. Exact plans (brute
    force over every row: the ground truth, not an ANN point) are left out."""
    table = tuner.table_
    ann = [i for i in range(len(table)) if not tuner.measured_plans_[i][0].exact]
    front = sorted(
        (i for i in ann if table[i].pareto and table[i].quality >= 0.8),
        key=lambda i: table[i].quality,
    )
    if len(front) > most:
        front = [front[round(j)] for j in np.linspace(0, len(front) - 1, most)]
    rows = set(front)
    for target in TARGETS:
        near = [i for i in ann if abs(table[i].quality - target) <= NEAR_TARGET]
        rows.update(sorted(near, key=lambda i: table[i].latency_ms)[:NEAR_ROWS])
    return sorted(rows, key=lambda i: table[i].quality)


def _pick(target: float, pool: list) -> dict | None:
    """The fastest ANN (candidate, plan, effort) of `pool` whose tuning bound reaches
    `target`, as `PlanTuner.best_for` reads it but without exact (brute-force) plans."""
    picks = [  # what `PlanTuner.best_for` reads, less exact (brute-force) plans
        ((*tuner.measured_plans_[i], row), cand)
        for cand, tuner in pool
        for i, row in enumerate(tuner.table_)
        if row.quality_bound >= target and not tuner.measured_plans_[i][0].exact
    ]
    if not picks:
        return None
    (plan, effort, row), cand = min(picks, key=lambda p: p[0][2].latency_ms)
    return {
        "index": cand[2]["name"],
        "plan": str(plan),
        "effort": effort,
        "tuning_recall": row.quality,
        "tuning_bound": row.quality_bound,
        "pick": (cand, plan, effort),
    }


def _evict(path: Path) -> None:
    """Drop `path`'s pages from the page cache (this file only; nobody else's)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def lean_memory(index, plan, effort, queries, truth, k, modes, workdir: Path) -> dict:
    """Save, reload memory-mapped, time cold (vectors evicted) then warm, one query per call."""
    folder = Path(tempfile.mkdtemp(dir=workdir, prefix="lean-"))
    index.save(folder / "idx")
    lean = MatryoshkaIndex.load(folder / "idx", mmap=True, verify=False)
    version = folder / "idx" / (folder / "idx" / "CURRENT").read_text().strip()
    _evict(version / "vectors.npy")
    threads, n, _ = modes["single"]  # one pass each: a cold pass happens once
    out = {"lean_bytes": ours_bytes(lean, False)}
    for state in ("cold", "warm"):
        with thread_count(threads):
            res, took = time_search(lean, queries[:n], k, plan, 1, effort, per_query=True)
        out[f"lean_single_{state}"] = {
            "recall": neighbor_recall(res.ids, truth[:n]),
            "qps": n / took,
        }
    del lean
    for f in sorted(folder.rglob("*"), reverse=True):
        f.unlink() if f.is_file() else f.rmdir()
    folder.rmdir()
    return out


# ---------------------------------------------------------------------------------- report
def run_set(name, x, queries, tune_q, args, workdir) -> dict:
    """Every method on one data set: the raw points, builds, frontiers and the bars."""
    n, d = x.shape
    k = args.k
    if args.pgvector:
        check_pgvector_args(k, args.pgvector_dim, d)
    xn = np.ascontiguousarray(unit_prefix(x, d))  # cosine = inner product of unit vectors
    qn = unit_prefix(queries, d)
    tqn = unit_prefix(tune_q, d)
    t0 = time.perf_counter()
    with thread_count(args.threads):
        flat = faiss.IndexFlatIP(d)
        flat.add(xn)
        truth = flat.search(qn, k)[1]
        del flat
    log.info("%s: exact ground truth in %.1f s", name, time.perf_counter() - t0)
    # mode -> (threads, timed queries, passes of which the fastest counts, for every method)
    modes = {
        "batch": (args.threads, len(qn), args.repeats),
        "single": (1, min(args.single_queries, len(qn)), args.repeats),
    }
    steps = (
        len(args.ours)
        + 1
        + sum(len(EF_SWEEP if b.startswith("hnsw") else NPROBE_SWEEP) for b in args.baselines)
    )
    started = time.perf_counter()
    with tqdm(total=steps, desc=name, unit="step") as bar:
        mine, info, leaders = ours(xn, tqn, qn, truth, k, modes, args, bar, workdir)
        base, builds, hnsw = faiss_baselines(xn, qn, truth, k, modes, args, bar)
        bar.set_description("head to head")
        hnsw_points = [p for p in base if p["method"] == HNSW]
        rematch = head_to_head(
            leaders, hnsw, hnsw_points, qn, truth, k, modes, args.head_to_head
        ) if hnsw is not None else {}  # fmt: skip
        del leaders, hnsw
    if args.pgvector:  # one query per call: the single mode's queries, tuning ones to warm up
        _, single, repeats = modes["single"]
        found, pg_builds = pgvector_points(
            xn, qn[:single], tqn[:20], truth[:single], k, args.pgvector_dim, repeats
        )
        base += found
        builds.update(pg_builds)
    points = mine + base
    fronts = {}
    for mode in modes:
        for method in sorted({p["method"] for p in points}):
            sel = [p for p in points if p["method"] == method and p["mode"] == mode]
            fronts[f"{method} | {mode}"] = frontier(sel)
    return {
        "name": name,
        "rows": n,
        "dim": d,
        "queries": len(qn),
        "single_queries": modes["single"][1],
        "tune_queries": len(tqn),
        "k": k,
        "threads": args.threads,
        "seconds": time.perf_counter() - started,
        "points": points,
        "frontiers": fronts,
        "faiss_builds": builds,
        "ours": info,
        "bars": bars(fronts, builds, info, rematch),
    }


HNSW = "faiss HNSWFlat M=32 (full D)"
PG_HNSW = full_hnsw_name()


def bars(fronts: dict, builds: dict, info: dict, rematch: dict | None = None) -> dict:
    """Queries/s ratios at the issue's recall bars (with `head_to_head`'s alternating-pass
    timing of each, when run), build ratio, memory ratio."""
    out = {}
    tuned = "MatryoshkaIndex (tuned)"
    versus = [(f"{mode}@", tuned, HNSW, mode) for mode in ("batch", "single")]
    pg = [m.split(" | ")[0] for m in fronts if m.startswith("pgvector + ")]
    if f"{PG_HNSW} | single" in fronts:  # what a PostgreSQL user runs, one query per call
        versus.append(("single vs pgvector@", tuned, PG_HNSW, "single"))
        versus += [("SQL funnel vs pgvector@", m, PG_HNSW, "single") for m in pg]
    for label, mine, theirs, mode in versus:
        ours_f, base_f = fronts.get(f"{mine} | {mode}", []), fronts.get(f"{theirs} | {mode}", [])
        for r in TARGETS:
            a, b = best_qps_at(ours_f, r), best_qps_at(base_f, r)
            out[f"{label}{r}"] = {
                "ours_qps": a and a["qps"],
                "ours_point": a and f"{a.get('index', a['method'])} {a['param']}",
                "hnsw_qps": b and b["qps"],
                "hnsw_ef": b and b["param"],
                "speedup": a["qps"] / b["qps"] if a and b else None,
            }
            if label == f"{mode}@" and f"{mode}@{r}" in (rematch or {}):
                out[f"{label}{r}"]["head_to_head"] = rematch[f"{mode}@{r}"]
    if HNSW in builds and f"chosen {TARGETS[0]}" in info["chosen"]:
        first = info["chosen"][f"chosen {TARGETS[0]}"]
        cand = next(c for c in info["candidates"] if c["name"] == first["index"])
        out["build_speedup"] = builds[HNSW]["build_seconds"] / cand["build_seconds"]
        out["lean_memory_fraction"] = first["lean_bytes"] / builds[HNSW]["bytes"]
        out["memory_fraction"] = cand["bytes"] / builds[HNSW]["bytes"]
    lean = info["chosen"].get(f"lean {TARGETS[0]}")
    opq = next((key for key in fronts if key.startswith("faiss OPQ") and "single" in key), None)
    if lean and opq:
        # OPQ+IVF-PQ's best recall at no fewer queries/s than ours (memory-mapped, warm).
        warm = lean["lean_single_warm"]
        faster = [p for p in fronts[opq] if p["qps"] >= warm["qps"]]
        out["lean_vs_opq"] = {
            "ours_bytes": lean["lean_bytes"],
            "ours_recall": warm["recall"],
            "ours_qps": warm["qps"],
            "opq_bytes": fronts[opq][0]["bytes"] if fronts[opq] else None,
            "opq_recall_at_same_qps": max((p["recall"] for p in faster), default=None),
        }
        if HNSW in builds:
            out["lean_vs_opq"]["ours_fraction_of_hnsw"] = lean["lean_bytes"] / builds[HNSW]["bytes"]
    return out


def plot(res: dict, path: Path) -> None:
    """Recall@k vs queries/s (log) per method, one panel per mode, as a PNG (atomic)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 5))
    axes = fig.subplots(1, 2)
    for ax, mode in zip(axes, ("batch", "single"), strict=True):
        for key, pts in sorted(res["frontiers"].items()):
            method, m = key.split(" | ")
            if m != mode or not pts:
                continue
            style = "r-o" if method.startswith("Matryoshka") else "-s"
            ax.plot([p["recall"] for p in pts], [p["qps"] for p in pts], style, ms=4, label=method)
        ax.set_yscale("log")
        ax.set_xlabel(f"recall@{res['k']} (vs exact full-D)")
        ax.set_ylabel("queries/s")
        threads = res["threads"] if mode == "batch" else 1
        ax.set_title(f"{res['name']}: {mode} ({threads} thread(s))", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.set_xlim(left=max(0.0, min([p["recall"] for p in res["points"]] + [0.5])))
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=120)
    atomic_write_bytes(path, png.getvalue())


def _f(x, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def format_report(all_res: list[dict], header: str) -> str:
    """Markdown: per set, the frontiers, the bars and the tuned plans."""
    lines = ["# ANN frontier: MatryoshkaIndex vs faiss at full D", "", header, ""]
    for res in all_res:
        lines += [
            f"## {res['name']}: {res['rows']} x {res['dim']}, {res['queries']} timed queries "
            f"(single mode: first {res['single_queries']}), {res['tune_queries']} tuning "
            f"queries, k = {res['k']}, batch {res['threads']} threads, single 1 thread "
            f"({res['seconds']:.0f} s)",
            "",
            "| method | build s | resident MiB | mode | frontier (recall: queries/s) |",
            "|---|---|---|---|---|",
        ]
        for key, pts in sorted(res["frontiers"].items()):
            method, mode = key.split(" | ")
            if not pts:
                continue
            build = pts[0]["build_seconds"]
            mib = pts[0]["bytes"] / 2**20
            cells = ", ".join(f"{p['recall']:.3f}: {p['qps']:.0f}" for p in pts)
            lines.append(f"| {method} | {build:.1f} | {mib:.0f} | {mode} | {cells} |")
        lines += [
            "",
            "| bar | ours q/s (point) | full-D HNSW q/s (efSearch) | ratio | head to head: "
            "ours / HNSW q/s, ratio (alternating passes) |",
            "|---|---|---|---|---|",
        ]
        for key, b in res["bars"].items():
            if "@" in key:  # the queries/s bars (the rest are build and memory figures)
                h = b.get("head_to_head")
                again = (
                    f"{h['ours_qps']:.0f} / {h['hnsw_qps']:.0f}, **{h['speedup']:.2f}x** "
                    f"(best of {h['rounds']})"
                    if h
                    else "-"
                )
                lines.append(
                    f"| {key} | {_f(b['ours_qps'], '.0f')} ({b['ours_point'] or '-'}) | "
                    f"{_f(b['hnsw_qps'], '.0f')} ({b['hnsw_ef'] or '-'}) | "
                    f"{_f(b['speedup'], '.2f')}x | {again} |"
                )
        b = res["bars"]
        lines += [
            "",
            f"Build vs full-D HNSW: {_f(b.get('build_speedup'), '.1f')}x faster; resident "
            f"memory {_f(b.get('memory_fraction'), '.2f')} of full-D HNSW with the vectors in "
            f"RAM, {_f(b.get('lean_memory_fraction'), '.3f')} in lean-memory mode (vectors "
            f"memory-mapped; the chosen 0.95 pick). Tuning: {res['ours']['tune_seconds']:.0f} s.",
        ]
        lv = b.get("lean_vs_opq")
        if lv:
            lines.append(
                f"Lean-memory pick vs OPQ+IVF-PQ (one query per call): ours "
                f"{lv['ours_bytes'] / 2**20:.1f} MiB resident "
                f"({_f(lv.get('ours_fraction_of_hnsw'), '.3f')} of full-D HNSW), "
                f"recall {lv['ours_recall']:.4f} at "
                f"{lv['ours_qps']:.0f} q/s (warm); OPQ {_f((lv['opq_bytes'] or 0) / 2**20, '.1f')} "
                f"MiB, best recall at >= that q/s: {_f(lv['opq_recall_at_same_qps'], '.4f')}."
            )
        lines += [
            "",
            "| pick @ target | index, plan @effort | tuning recall (bound) | timed batch "
            "recall, q/s | holds | single q/s | lean MiB | lean cold q/s | lean warm q/s "
            "(recall) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for target, c in res["ours"]["chosen"].items():
            lines.append(
                f"| {target} | {c['index']} `{c['plan']}` @{c['effort']} | "
                f"{c['tuning_recall']:.4f} ({c['tuning_bound']:.4f}) | "
                f"{c['batch']['recall']:.4f}, {c['batch']['qps']:.0f} | {c['holds']} | "
                f"{c['single']['qps']:.0f} | {c['lean_bytes'] / 2**20:.1f} | "
                f"{c['lean_single_cold']['qps']:.0f} | "
                f"{c['lean_single_warm']['qps']:.0f} ({c['lean_single_warm']['recall']:.4f}) |"
            )
        lines += ["", "Where the time goes (ms per query: shortlist / rerank / the rest):", ""]
        for target, c in res["ours"]["chosen"].items():
            cells = [
                f"{mode} {c[mode]['profile']['shortlist_ms']:.4f} / "
                f"{c[mode]['profile']['rerank_ms']:.4f} / {c[mode]['profile']['other_ms']:.4f}"
                for mode in ("batch", "single")
            ]
            lines.append(f"- {target} (`{c['plan']}`): " + "; ".join(cells))
        lines.append("")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------- main
def _parse_size(spec: str) -> tuple[int, int]:
    try:
        rows, dim = (int(v) for v in spec.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--data takes ROWSxDIM like 200000x1024, got {spec!r}") from None
    return check_int("rows", rows, 1), check_int("dim", dim, 1)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python benchmarks/ann_frontier.py",
        description="Recall@k vs queries/s frontiers of MatryoshkaIndex (tuned) and faiss "
        "full-D indexes, batched and one query per call.",
    )
    p.add_argument("--out", required=True, help="output folder (JSON, Markdown, PNGs)")
    p.add_argument(
        "--data", action="append", help="generated set ROWSxDIM (repeatable); default 200000x1024"
    )
    p.add_argument("--database", help="real embeddings: .npy [N, D] or `mrl embed` folder")
    p.add_argument("--num-classes", type=int, default=1000, help="generated classes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--queries", type=int, default=QUERIES, help="timed queries")
    p.add_argument("--single-queries", type=int, default=500, help="timed one per call")
    p.add_argument("--tune-queries", type=int, default=TUNE_QUERIES, help="held-out tuning queries")
    p.add_argument("--k", type=int, default=10)
    p.add_argument(
        "--repeats", type=int, default=3, help="timed passes per point, fastest kept (every method)"
    )
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="batch-mode threads")
    p.add_argument(
        "--head-to-head",
        type=int,
        default=5,
        help="rounds of alternating passes timing each queries/s bar again, ours against "
        "full-D HNSW (keeps the HNSW index to the end; 0: off, for sets where it must go)",
    )
    p.add_argument(
        "--confidence", type=float, default=0.95, help="tuner's confidence bound (0: none)"
    )
    p.add_argument("--pq-m", type=int, default=64, help="OPQ/PQ bytes per vector")
    p.add_argument(
        "--ours",
        nargs="+",
        default=["ivf@64", "ivf@128", "ivf_sq8@64", "ivf_sq8@128", "ivf_sq8@32", "hnsw@32"],
        help=f"candidate MatryoshkaIndex kinds, {SPEC_FORM}: /LISTS sets an IVF kind's cells "
        "(default about 4 sqrt(N)), /mM and /efcE an HNSW kind's degree and build beam "
        "(default 32, 40); +fused also keeps the fused-rerank copy "
        "(`use_fused_rerank`: one faiss call for a rerank to full D)",
    )
    p.add_argument(
        "--max-points", type=int, default=20, help="Pareto points timed per candidate and mode"
    )
    p.add_argument(
        "--prefault-gib",
        type=float,
        default=0.0,
        help="write this much memory once before any build, so that builds on a VM that backs "
        "memory lazily pay for their compute only (needs GLIBC_TUNABLES, see prefault_memory)",
    )
    p.add_argument(
        "--max-shortlist",
        type=int,
        default=200,
        help="largest shortlist among the tuner's default plans (bounds the tuning time)",
    )
    p.add_argument(
        "--lean", default="ivf_sq8@32", help="the candidate also reported in lean-memory mode"
    )
    p.add_argument(
        "--baselines",
        nargs="+",
        default=["hnsw", "hnsw_sq8", "ivf", "ivfpq"],
        choices=["hnsw", "hnsw_sq8", "ivf", "ivfpq"],
    )
    p.add_argument("--workdir", default=None, help="scratch folder for the lean-memory save")
    p.add_argument(
        "--pgvector",
        action="store_true",
        help="also pgvector in an embedded PostgreSQL (one query per call): HNSW over the full "
        "vector, and our SQL funnel over an HNSW index of the --pgvector-dim prefix",
    )
    p.add_argument("--pgvector-dim", type=int, default=128, help="the SQL funnel's D_s")
    return p


def _sets(args):
    """Yield (name, database, timed queries, tuning queries) per data set."""
    if args.database:
        yield real_set(args.database, args.queries, args.tune_queries, args.seed)
        return
    for spec in args.data or ["200000x1024"]:
        rows, dim = _parse_size(spec)
        gen = GeneratedNestedSpec(dim=dim, num_classes=args.num_classes, seed=args.seed)
        x, _ = generated_nested_embeddings(rows, gen)
        q, _ = generated_nested_embeddings(args.queries + args.tune_queries, gen, "queries")
        yield f"generated {rows}x{dim}", x, q[: args.queries], q[args.queries :]


def real_set(database: str, queries: int, tune_queries: int, seed: int):
    """(name, database rows, timed queries, tuning queries) of a real `.npy` / `mrl embed`
    folder: distinct rows, the queries held out of the database at random (`seed`)."""
    path = Path(database)
    x = np.asarray(load_npy(path / "embeddings.npy" if path.is_dir() else path, mmap=True))
    # Exact duplicates (identical texts: 12,225 of the 63,664 Debian descriptions) make
    # recall@10 against exact search ill-defined (tied ids), capping every method near
    # 0.96; keep the first copy of each row.
    _, first = np.unique(x, axis=0, return_index=True)
    if len(first) < len(x):
        log.info("real %s: %d exact duplicate rows dropped", path.name, len(x) - len(first))
        x = x[np.sort(first)]
    rng = np.random.default_rng(seed)
    held = rng.permutation(len(x))[: queries + tune_queries]
    rest = np.setdiff1d(np.arange(len(x)), held)
    return f"real {path.name}", x[rest], x[held[:queries]], x[held[queries:]]


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if hasattr(signal, "SIGUSR1"):  # `kill -USR1 <pid>` prints where a long run is
        faulthandler.register(signal.SIGUSR1)
    for spec in args.ours:
        parse_candidate(spec)
    check_int("--head-to-head", args.head_to_head, 0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(args.workdir or tempfile.gettempdir())
    prefault_s = prefault_memory(args.prefault_gib)
    header = (
        f"Host: {os.cpu_count()} cores; batch mode {args.threads} threads, single mode 1 "
        "thread; timings taken in one process, so ratios are same-run. Data: "
        + ("real embeddings" if args.database else "generated nested embeddings")
        + "."
        + (
            f" {args.prefault_gib:g} GiB of memory written once before the builds "
            f"({prefault_s:.0f} s) and kept in the process (`--prefault-gib`)."
            if args.prefault_gib
            else ""
        )
    )
    results = []
    for name, x, q, tq in _sets(args):
        res = run_set(name, x, q, tq, args, workdir)
        del x
        results.append(res)
        slug = name.replace(" ", "_")
        plot(res, out / f"frontier_{slug}.png")
        atomic_write_json(out / "frontier.json", {"header": header, "sets": results})
        with atomic_open(out / "frontier.md", "w") as f:
            f.write(format_report(results, header))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux -> GiB
    log.info("peak resident memory %.1f GiB (size --prefault-gib by it)", peak)
    print(format_report(results, header))
    return 0


if __name__ == "__main__":
    run_script(main)
