"""Text retrieval per size on the Debian corpus: frozen, adapted and fine-tuned MiniLM.

Queries are the package summaries of the test side of THE Debian split (`debian_split`, by
source package), the corpus is the test side's long descriptions, and each query's one
relevant item is its own package's description. At every size m of the nesting it reports
MRR@10, nDCG@10 and R@100 from exact search (each prefix L2-normalised, cosine, top-100 by
a chunked matmul) for these rows:

- truncated:    the base encoder (all-MiniLM-L6-v2 by default), plain prefixes;
- pca:          PCA rotate-then-truncate (`SVDProjection` fitted on train-side descriptions);
- adaptor_unsup: `MatryoshkaAdaptor` fitted on train-side descriptions (unsupervised);
- adaptor_sup:  `MatryoshkaAdaptor` fitted on train-side (summary, description) pairs;
- ft_plain:     fine-tuned by `mrl train` with InfoNCE on the full 384 dims only, truncated;
- ft_mrl:       fine-tuned by `mrl train` with our Matryoshka InfoNCE over the nesting;
- ft_st:        fine-tuned by sentence-transformers' trainer with `MatryoshkaLoss(MNRL)`
                (the anchor; same objective, see `text_finetune.py`), truncated the same way.

The fine-tuned rows train on the same `--finetune-pairs` train-side pairs (a seeded draw),
with the same batch size, learning rate, warm-up, epochs, sequence length and seed, and the
report gives each trainer's pairs/s (training steps only) and ours / the anchor's ratio.
`--finetune-pairs 0` runs the frozen rows alone, `--rows` any subset (an experiment on one
fine-tune need not re-encode the frozen rows); `--nesting-weights` sets the c_m of both
Matryoshka fine-tunes (ours and the anchor alike). `--rotation` gives our Matryoshka
fine-tune a learned rotation after the pooling (`TextEncoder(rotation=True)`); the 384-only
row trains without one (its loss does not change under a rotation) and the anchor keeps
sentence-transformers' own architecture. `--distill-weight` adds to our Matryoshka fine-tune's
loss each prefix's KL to the full size's in-batch ranking (`MatryoshkaContrastiveLoss`
distill_weight; `--distill-temperature` its temperature). Only the train side is used for
fitting.

Base embeddings are cached as .npy under --cache, keyed by the role, the text count, a digest
of the texts and of the model folder and max_seq_length, so a rerun does not re-encode.

    python benchmarks/text.py --finetune-pairs 0       # frozen rows, ~8 min on 2 cores
    python benchmarks/text.py --max-queries 2000 --max-corpus 4000  # seeded subsample
    python benchmarks/text.py                          # + 3 fine-tunes of 4,000 pairs: ~38 min
    python benchmarks/text.py --rows ft_mrl --finetune-pairs 16000 --nesting-weights 1,1,1,1,1,5
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mrl.adaptation import MatryoshkaAdaptor
from mrl.checks import check_int, check_number
from mrl.data.text import DEBIAN_DEFAULT, debian_split, load_debian_packages
from mrl.errors import ConfigError, InputError
from mrl.evaluation.baselines import SVDProjection
from mrl.evaluation.metrics import mrr_at_k, ndcg_at_k, recall_at_k
from mrl.io import atomic_open, atomic_write_json, make_dirs
from mrl.models.text import TextEncoder, default_text_model_path
from mrl.nesting import Nesting

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark modules
from harness import run_script, thread_count  # noqa: E402  (the benchmarks' harness)
from text_finetune import (  # noqa: E402
    FineTuneSetup,
    finetune_ours,
    finetune_sentence_transformers,
    training_pairs,
)

# Fine-tuning settings shared by every trained row: argument name -> (run-folder tag, default).
RECIPE = {
    "finetune_epochs": ("e", 1),
    "finetune_batch_size": ("b", 32),
    "finetune_lr": ("lr", 2e-5),
    "finetune_max_seq_length": ("len", 64),
    "temperature": ("t", 0.05),
}
FROZEN_ROWS = ("truncated", "pca", "adaptor_unsup", "adaptor_sup")
FINETUNED_ROWS = ("ft_plain", "ft_mrl", "ft_st")

LABELS = {
    "truncated": "base, truncated",
    "pca": "base + PCA",
    "adaptor_unsup": "base + adaptor (unsupervised)",
    "adaptor_sup": "base + adaptor (supervised)",
    "ft_plain": "fine-tuned, 384 only (no MRL), truncated",
    "ft_mrl": "fine-tuned, ours (Matryoshka InfoNCE)",
    "ft_st": "fine-tuned, sentence-transformers MatryoshkaLoss",
}
METRICS = ("mrr_at_10", "ndcg_at_10", "recall_at_100")
TOP_K = 100  # neighbours retrieved per query (R@100 needs 100; fewer when the corpus is smaller)


def cached_embeddings(
    encoder: TextEncoder, texts: list[str], role: str, cache: Path, batch_size: int
) -> np.ndarray:
    """[N, d] base embeddings of `texts`, read from `cache` if this exact set was encoded."""
    digest = hashlib.sha1()
    digest.update(f"{encoder.path}\0{encoder.max_seq_length}\0".encode())
    for text in texts:
        digest.update(text.encode() + b"\0")
    path = cache / f"{role}-{len(texts)}-{digest.hexdigest()[:12]}.npy"
    if path.is_file():
        print(f"{role}: {len(texts)} texts from {path}", flush=True)
        return np.load(path)
    print(f"{role}: encoding {len(texts)} texts", flush=True)
    X = encoder.encode(texts, batch_size=batch_size, progress=True)
    with atomic_open(path, "wb") as f:
        np.save(f, X)
    return X


def unit_prefix(X: np.ndarray, m: int) -> np.ndarray:
    """The first m coordinates of each row, L2-normalised (cosine = dot product)."""
    z = np.ascontiguousarray(X[:, :m], dtype=np.float32)
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


def exact_top_k(queries: np.ndarray, corpus: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """[Q, k] corpus ids by decreasing dot product, by a torch matmul over query chunks."""
    c = torch.from_numpy(corpus)
    out = np.empty((len(queries), k), dtype=np.int64)
    for s in range(0, len(queries), chunk):
        scores = torch.from_numpy(queries[s : s + chunk]) @ c.T  # (chunk, N)
        out[s : s + chunk] = torch.topk(scores, k, dim=1).indices.numpy()
    return out


def size_metrics(queries: np.ndarray, corpus: np.ndarray, relevant: np.ndarray, m: int) -> dict:
    """MRR@10, nDCG@10, R@100 of exact cosine search with m-dim prefixes."""
    k = min(TOP_K, len(corpus))
    ids = exact_top_k(unit_prefix(queries, m), unit_prefix(corpus, m), k)
    rel = ids == relevant[:, None]  # (Q, k): one relevant item per query
    one = np.ones(len(rel), dtype=np.int64)
    return {
        "mrr_at_10": mrr_at_k(rel, min(10, k)),
        "ndcg_at_10": ndcg_at_k(rel, one, min(10, k)),
        "recall_at_100": recall_at_k(rel, one, k),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEBIAN_DEFAULT), help="debian-packages.jsonl.gz")
    parser.add_argument("--model", default=None, help="model folder (default all-MiniLM-L6-v2)")
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--nesting", default=None, help="sizes, e.g. 12,24,48 (default halving)")
    parser.add_argument("--max-queries", type=int, default=None, help="seeded query sample")
    parser.add_argument("--max-corpus", type=int, default=None, help="seeded corpus sample")
    parser.add_argument("--fit-rows", type=int, default=4000, help="train-side rows to fit on")
    parser.add_argument("--epochs", type=int, default=5, help="adaptor epochs")
    parser.add_argument("--sup-lr", type=float, default=1e-3, help="supervised adaptor lr")
    parser.add_argument("--batch-size", type=int, default=64, help="texts per encoder pass")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="where every row encodes and trains (cuda: both trainers in bf16 autocast)",
    )
    parser.add_argument("--finetune-pairs", type=int, default=4000, help="0: no fine-tuning")
    d = {name: default for name, (_, default) in RECIPE.items()}
    parser.add_argument("--finetune-epochs", type=int, default=d["finetune_epochs"])
    parser.add_argument("--finetune-batch-size", type=int, default=d["finetune_batch_size"])
    parser.add_argument("--finetune-lr", type=float, default=d["finetune_lr"])
    parser.add_argument(
        "--finetune-max-seq-length", type=int, default=d["finetune_max_seq_length"],
        help="training only",
    )  # fmt: skip
    parser.add_argument("--temperature", type=float, default=d["temperature"])
    parser.add_argument(
        "--nesting-weights",
        default=None,
        help="c_m per size, smallest first, for the two Matryoshka fine-tunes (default all 1)",
    )
    parser.add_argument(
        "--rotation",
        action="store_true",
        help="our Matryoshka fine-tune learns a rotation after the pooling (see TextEncoder)",
    )
    parser.add_argument(
        "--distill-weight",
        type=float,
        default=0.0,
        help="our Matryoshka fine-tune: lambda of each prefix's KL to the full size (0: none)",
    )
    parser.add_argument(
        "--distill-temperature",
        type=float,
        default=None,
        help="that KL's temperature (default: --temperature)",
    )
    parser.add_argument(
        "--rows",
        default=",".join((*FROZEN_ROWS, *FINETUNED_ROWS)),
        help="rows to run, comma-separated (default all; frozen rows share one base encoding)",
    )
    parser.add_argument(
        "--merge",
        nargs="+",
        metavar="RESULTS_JSON",
        help="no run: one report of the rows of several results.json of the same queries "
        "(e.g. the phases of benchmarks/device/text_gpu.sh), bars over all of them",
    )
    parser.add_argument("--cache", default="runs/text-bench", help="base embedding cache")
    parser.add_argument("--out", default="reports/text", help="results.json/md/png folder")
    args = parser.parse_args(argv)
    positive = ("max_seq_length", "fit_rows", "epochs", "batch_size", "threads")
    finetune = ("finetune_epochs", "finetune_batch_size", "finetune_max_seq_length")
    for name in (*positive, *finetune):
        check_int(f"--{name.replace('_', '-')}", getattr(args, name))
    check_int("--finetune-pairs", args.finetune_pairs, low=0)
    check_number("--distill-weight", args.distill_weight, low=0)
    if args.distill_temperature is not None:
        check_number("--distill-temperature", args.distill_temperature, low=0, low_open=True)
    for name in ("max_queries", "max_corpus"):
        if getattr(args, name) is not None:
            check_int(f"--{name.replace('_', '-')}", getattr(args, name))
    try:
        args.rows = parse_rows(args.rows)
        args.nesting_weights = parse_weights(args.nesting_weights)
    except ValueError as e:
        parser.error(str(e))  # exit 2, one line
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is visible here; use --device cpu")
    if args.merge:
        report = merge_reports([read_json(path, "--merge") for path in args.merge])
        out = make_dirs(args.out, "--out")
        print(markdown(report), flush=True)
    else:
        out = make_dirs(args.out, "--out")  # a bad output path fails before the long work
        with thread_count(args.threads):  # a caller's (or a test's) thread count is left alone
            report = run(args)
    atomic_write_json(out / "results.json", report)
    with atomic_open(out / "results.md", "w") as f:
        f.write(markdown(report))
    plot(report, out / "mrr_at_10.png")
    print(f"wrote {out}/results.json, results.md, mrr_at_10.png")
    return report


def parse_rows(text: str) -> tuple[str, ...]:
    """`--rows` as known row names in the report's order; ValueError naming a bad one."""
    rows = [r.strip() for r in text.split(",") if r.strip()]
    known = (*FROZEN_ROWS, *FINETUNED_ROWS)
    bad = [r for r in rows if r not in known]
    if bad or not rows:
        raise ValueError(f"--rows {text!r}: unknown row {bad[0] if bad else '(none)'}; "
                         f"choose from {','.join(known)}")  # fmt: skip
    return tuple(r for r in known if r in rows)


def parse_weights(text: str | None) -> tuple[float, ...] | None:
    """`--nesting-weights 1,1,2` as non-negative floats, at least one positive (zeros but one
    train a single-size model: the paper's independently trained baseline); ValueError
    naming a bad value."""
    if text is None:
        return None
    try:
        weights = tuple(float(w) for w in text.split(","))
    except ValueError:
        weights = ()
    if not all(np.isfinite(w) and w >= 0 for w in weights) or not any(weights):
        raise ValueError(f"--nesting-weights {text!r}: give numbers >= 0, at least one of them "
                         "positive, one per size, smallest first, e.g. 1,1,1,1,1,5")  # fmt: skip
    return weights


def sample(n: int, limit: int | None, rng: np.random.Generator) -> np.ndarray:
    """Sorted ids of a seeded sample of `limit` of range(n) (all of them if limit is None)."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(rng.choice(n, size=limit, replace=False))


def run(args: argparse.Namespace) -> dict:
    """Encode (or read) the base embeddings, fit the baselines, print the table; the report."""
    start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    records = load_debian_packages(args.data)
    test, train = debian_split(records, "test"), debian_split(records, "train")
    # Corpus first, then queries among the corpus items: every query's positive is searchable.
    corpus_ids = sample(len(test.pairs), args.max_corpus, rng)
    query_rows = sample(len(corpus_ids), args.max_queries, rng)  # positions in the corpus
    fit_ids = sample(len(train.pairs), args.fit_rows, rng)

    encoder = TextEncoder(args.model or default_text_model_path(), args.max_seq_length)
    encoder.to(args.device)
    nesting = (
        Nesting(tuple(int(s) for s in args.nesting.split(",")))
        if args.nesting
        else Nesting.halving(encoder.embed_dim, min_dim=12)
    )
    if args.nesting_weights is not None and len(args.nesting_weights) != len(nesting.dims):
        raise ConfigError(
            f"--nesting-weights has {len(args.nesting_weights)} values for the "
            f"{len(nesting.dims)} sizes {list(nesting.dims)}: give one per size"
        )
    cache = make_dirs(args.cache, "--cache")
    corpus_texts = [test.pairs[i].positive for i in corpus_ids]
    query_texts = [test.pairs[corpus_ids[j]].query for j in query_rows]

    results, fit_s, n_fit, encode_s = {}, {}, 0, 0.0
    frozen = [r for r in args.rows if r in FROZEN_ROWS]
    if frozen:  # one base encoding (cached) serves every frozen row

        def embed(texts: list[str], role: str) -> np.ndarray:
            return cached_embeddings(encoder, texts, role, cache, args.batch_size)

        corpus = embed(corpus_texts, "corpus")
        queries = embed(query_texts, "queries")
        fit_docs = embed([train.pairs[i].positive for i in fit_ids], "train-descriptions")
        fit_queries = embed([train.pairs[i].query for i in fit_ids], "train-summaries")
        encode_s, n_fit = time.perf_counter() - start, len(fit_docs)
        maps = fitted_maps(args, nesting, fit_docs, fit_queries, frozen, fit_s)
        for row in frozen:
            q, c = maps[row](queries), maps[row](corpus)
            results[row] = {str(m): size_metrics(q, c, query_rows, m) for m in nesting.dims}
    finetuned, pairs_trained = {}, 0
    tuned_rows = [r for r in args.rows if r in FINETUNED_ROWS]
    if args.finetune_pairs and tuned_rows:
        pairs_trained, finetuned = fine_tuned_rows(args, encoder.path, nesting, cache, tuned_rows)
        for row, tuned in finetuned.items():
            tuned.encoder.max_seq_length = encoder.max_seq_length  # evaluated as the base
            tuned.encoder.to(args.device)
            q = tuned.encoder.encode(query_texts, batch_size=args.batch_size, progress=True)
            c = tuned.encoder.encode(corpus_texts, batch_size=args.batch_size, progress=True)
            results[row] = {str(m): size_metrics(q, c, query_rows, m) for m in nesting.dims}
    report = {
        "benchmark": "text",
        "rows_run": list(results),
        "finetune": {
            "pairs": args.finetune_pairs,
            "pairs_trained": pairs_trained,  # fewer than asked when the train side is smaller
            "epochs": args.finetune_epochs,
            "batch_size": args.finetune_batch_size,
            "lr": args.finetune_lr,
            "max_seq_length": args.finetune_max_seq_length,
            "temperature": args.temperature,
            "nesting_weights": args.nesting_weights,
            "rotation": args.rotation,
            "distill_weight": args.distill_weight,
            "distill_temperature": args.distill_temperature,
            "pairs_per_s": {row: t.pairs_per_second for row, t in finetuned.items()},
            "train_s": {row: t.train_seconds for row, t in finetuned.items()},
        },
        "model": encoder.path,
        "max_seq_length": encoder.max_seq_length,
        "nesting": list(nesting.dims),
        "n_queries": len(query_rows),
        "n_corpus": len(corpus_ids),
        "n_fit": n_fit,
        "top_k": min(TOP_K, len(corpus_ids)),
        "adaptor_epochs": args.epochs,
        "supervised_lr": args.sup_lr,
        "seed": args.seed,
        "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "encode_s": encode_s,
        "fit_s": fit_s,
        "wall_s": time.perf_counter() - start,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "rows": results,
    }
    print(markdown(report), flush=True)
    return report


def fitted_maps(args, nesting: Nesting, fit_docs, fit_queries, rows, fit_s: dict) -> dict:
    """{frozen row: embeddings -> its vectors}, fitted on the train side; seconds in fit_s."""
    maps = {"truncated": lambda X: X}
    if "pca" in rows:
        t = time.perf_counter()
        maps["pca"] = SVDProjection().fit(fit_docs).transform
        fit_s["pca"] = time.perf_counter() - t
    adaptors = {
        "adaptor_unsup": (dict(seed=args.seed), (fit_docs,)),
        "adaptor_sup": (dict(lr=args.sup_lr, seed=args.seed), (fit_queries, fit_docs)),
    }
    for name, (options, data) in adaptors.items():
        if name in rows:
            t = time.perf_counter()
            adaptor = MatryoshkaAdaptor(nesting, epochs=args.epochs, **options).fit(*data)
            maps[name] = adaptor.transform
            fit_s[name] = time.perf_counter() - t
    return maps


def fine_tuned_rows(args, model: str, nesting: Nesting, cache: Path, rows) -> tuple[int, dict]:
    """(pairs, {row: FineTuned}): the chosen fine-tunes, on one seeded draw of that many
    train-side pairs (`--finetune-pairs`, or the whole train side when it is smaller).

    Runs go to `<cache>/finetune-<pairs>-seed<seed><recipe_tag>/<row>`; each row starts
    from the base model, so an old run of the same row and recipe is removed, not resumed."""
    setup = FineTuneSetup(
        data=args.data,
        pairs=args.finetune_pairs,
        model=model,
        max_seq_length=args.finetune_max_seq_length,
        batch_size=args.finetune_batch_size,
        lr=args.finetune_lr,
        epochs=args.finetune_epochs,
        warmup=0.1,
        temperature=args.temperature,
        seed=args.seed,
        nesting_weights=args.nesting_weights,
        rotation=args.rotation,
        distill_weight=args.distill_weight,
        distill_temperature=args.distill_temperature,
        device=args.device,
    )
    n_pairs = len(training_pairs(setup))
    print(f"fine-tuning on {n_pairs} train-side pairs", flush=True)
    runs = cache / f"finetune-{args.finetune_pairs}-seed{args.seed}{recipe_tag(args)}"
    full = (max(nesting.dims),)
    trainers = {  # row: (its run folder, how it trains)
        "ft_plain": ("plain", lambda out: finetune_ours(full, setup, out)),
        "ft_mrl": ("mrl", lambda out: finetune_ours(nesting.dims, setup, out)),
        "ft_st": ("st", lambda out: finetune_sentence_transformers(nesting.dims, setup, out)),
    }
    out = {}
    for row in rows:
        folder, trainer = trainers[row]
        shutil.rmtree(runs / folder, ignore_errors=True)
        out[row] = trainer(runs / folder)
    return n_pairs, out


def recipe_tag(args: argparse.Namespace) -> str:
    """The run folder's suffix: each recipe setting away from its default (`RECIPE`), then the
    nesting weights, e.g. "-lr0.0001-w1-1-5"; "" for the default recipe. Two recipes never
    share (and so never delete) each other's runs."""
    tag = "".join(
        f"-{short}{getattr(args, name):g}"
        for name, (short, default) in RECIPE.items()
        if getattr(args, name) != default
    )
    if args.nesting_weights is not None:
        tag += "-w" + "-".join(f"{w:g}" for w in args.nesting_weights)
    if args.rotation:
        tag += "-rot"
    if args.distill_weight:
        tag += f"-kd{args.distill_weight:g}"
    if args.distill_temperature is not None:
        tag += f"-kdt{args.distill_temperature:g}"
    return tag


# Fine-tune settings added after the first reports were written, at their defaults.
LATER_RECIPE_DEFAULTS = {"rotation": False, "distill_weight": 0.0, "distill_temperature": None}
MERGE_KEYS = ("model", "max_seq_length", "nesting", "n_queries", "n_corpus", "seed")


def merge_reports(reports: list[dict]) -> dict:
    """One report holding the rows of `reports` (a later report's row wins), in table order.

    They must be of the same queries and corpus (`MERGE_KEYS` equal), and those with
    fine-tuned rows of the same recipe (pairs, epochs, batch, lr, weights), since the bars
    compare them; a ConfigError names the first difference. Per-row timings are merged.
    """

    def recipe(report: dict) -> dict:  # a report older than a setting ran at its default
        finetune = {**LATER_RECIPE_DEFAULTS, **report["finetune"]}
        measured = ("pairs_per_s", "train_s", "pairs_trained")  # outcomes, not settings
        return {k: v for k, v in finetune.items() if k not in measured}

    first = reports[0]
    tuned = [r for r in reports if r["finetune"]["pairs_per_s"]]
    for i, other in enumerate(reports[1:], start=2):
        for key in MERGE_KEYS:
            if other[key] != first[key]:
                raise ConfigError(
                    f"--merge: report {i} has {key} {other[key]!r}, report 1 {first[key]!r}; "
                    "merge runs of the same queries only"
                )
    for other in tuned[1:]:
        if recipe(other) != recipe(tuned[0]):
            raise ConfigError(
                f"--merge: fine-tuned rows of two recipes, {recipe(tuned[0])} and "
                f"{recipe(other)}; merge rows of one recipe only"
            )
    merged = {**first, "rows": {}, "merged_from": len(reports)}
    merged["finetune"] = {**(tuned or reports)[0]["finetune"], "pairs_per_s": {}, "train_s": {}}
    for report in reports:
        merged["rows"].update(report["rows"])
        for key in ("pairs_per_s", "train_s"):
            merged["finetune"][key].update(report["finetune"][key])
        merged["n_fit"] = report["n_fit"] or merged["n_fit"]
    merged["rows_run"] = [r for r in (*FROZEN_ROWS, *FINETUNED_ROWS) if r in merged["rows"]]
    return merged


def read_json(path: str, what: str) -> dict:
    """A JSON file's object; InputError naming the file when it is missing or not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{what} {path}: cannot read it as JSON ({e})") from e


def bars(report: dict) -> list[tuple[str, bool, str]]:
    """The issue's bars that this report's rows can check: (bar, met, the numbers)."""
    rows, sizes = report["rows"], [str(m) for m in report["nesting"]]
    out = []

    def mrr(row, m):
        return rows[row][m]["mrr_at_10"]

    full = sizes[-1]
    if "ft_mrl" in rows:
        for m, share in (("48", 0.95), ("24", 0.90)):
            if m in sizes:
                got = mrr("ft_mrl", m) / mrr("ft_mrl", full)
                out.append((f"ours keeps >= {share:.0%} of its {full}-dim MRR@10 at {m}",
                            got >= share, f"{got:.1%}"))  # fmt: skip
    if {"ft_mrl", "ft_plain"} <= rows.keys():
        gap = 100 * (mrr("ft_plain", full) - mrr("ft_mrl", full))
        out.append((f"ours at {full} within 0.5 pts of the non-MRL fine-tune", gap <= 0.5,
                    f"{-gap:+.2f} pts"))  # fmt: skip
    if {"ft_mrl", "ft_st"} <= rows.keys():
        worst = min(100 * (mrr("ft_mrl", m) - mrr("ft_st", m)) for m in sizes)
        out.append(("ours >= the sentence-transformers anchor at every size (-0.5 pts)",
                    worst >= -0.5, f"worst {worst:+.2f} pts"))  # fmt: skip
        rate = report["finetune"]["pairs_per_s"]
        ratio = rate["ft_mrl"] / rate["ft_st"]
        out.append(("ours trains >= 1.2x the anchor's pairs/s", ratio >= 1.2, f"{ratio:.2f}x"))
    small = [m for m in sizes if int(m) <= 96]
    if {"adaptor_unsup", "pca"} <= rows.keys() and small:
        worst = min(100 * (mrr("adaptor_unsup", m) - mrr("pca", m)) for m in small)
        out.append(("unsupervised adaptor beats PCA at every size <= 96", worst > 0,
                    f"worst {worst:+.2f} pts"))  # fmt: skip
    return out


def markdown(report: dict) -> str:
    """One table per metric: rows x sizes."""
    sizes = [str(m) for m in report["nesting"]]
    fitted = (
        f"; adaptors and PCA fit on {report['n_fit']} train-side rows" if report["n_fit"] else ""
    )
    lines = [
        f"Debian test side: {report['n_queries']} summary queries, {report['n_corpus']} "
        f"descriptions{fitted}.",
        "",
    ]
    rows = report["rows_run"]
    for metric in METRICS:
        lines += [
            f"### {metric}",
            "",
            "| row | " + " | ".join(sizes) + " |",
            "|---|" + "---:|" * len(sizes),
        ]
        for row in rows:
            cells = (f"{report['rows'][row][m][metric]:.3f}" for m in sizes)
            lines.append(f"| {LABELS[row]} | " + " | ".join(cells) + " |")
        lines.append("")
    rate = report["finetune"]["pairs_per_s"]
    if rate:
        ft = report["finetune"]
        pairs = ft.get("pairs_trained") or ft["pairs"]  # older reports: the number asked for
        lines += [
            f"Fine-tuning: {pairs} pairs, {ft['epochs']} epoch(s), batch {ft['batch_size']}, "
            f"lr {ft['lr']}, max_seq_length {ft['max_seq_length']}, temperature "
            f"{ft['temperature']}, nesting weights {ft['nesting_weights'] or 'all 1'}"
            f"{', rotation (ours)' if ft.get('rotation') else ''}"
            f"{distill_note(ft)}; "
            "training pairs/s: " + ", ".join(f"{LABELS[r]} {v:.1f}" for r, v in rate.items()),
            "",
        ]
    lines += ["| bar | met | measured |", "|---|---|---|"]
    lines += [f"| {bar} | {'yes' if met else 'no'} | {got} |" for bar, met, got in bars(report)]
    return "\n".join(lines)


def distill_note(finetune: dict) -> str:
    """The report line's self-distillation clause; "" for a fine-tune that did not distil."""
    weight = finetune.get("distill_weight") or 0
    if not weight:
        return ""
    temperature = finetune.get("distill_temperature") or finetune["temperature"]
    return f", self-distillation (ours) weight {weight:g} at temperature {temperature:g}"


def plot(report: dict, path: Path) -> None:
    """MRR@10 against size (log2 axis), one line per row, written atomically as PNG."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), tight_layout=True)
    ax = fig.add_subplot()
    sizes = report["nesting"]
    for row in report["rows_run"]:
        ax.plot(
            sizes,
            [report["rows"][row][str(m)]["mrr_at_10"] for m in sizes],
            "o-",
            label=LABELS[row],
        )
    finish_size_plot(
        fig, ax, sizes, f"Debian summary -> description, {report['n_queries']} queries", path
    )


def finish_size_plot(fig, ax, sizes: list[int], title: str, path: Path, legend_size=None) -> None:
    """The MRR@10-against-size axes (log2 x, the sizes as ticks), titled, written atomically
    as PNG to `path`: the one look of every text plot."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(m) for m in sizes])
    ax.set_xlabel("embedding size m")
    ax.set_ylabel("MRR@10")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)


if __name__ == "__main__":
    run_script(main)
