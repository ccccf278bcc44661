"""Adaptive-retrieval benchmark, the issue's headline configuration: `mrl bench retrieval`.

Generated (not real) labelled nested embeddings, 1M x 2048 stored as float32 (8.2 GB, copied
into RAM on huge pages for the index), 10k queries, shortlists on the 32-d prefix (the 16-d
prefix of this generator reaches only 97% of exact mAP@10): HNSW32 as in the paper, and IVF
(8192 cells, nprobe 64) for comparison. Also, for each index, the plan (and for IVF the
nprobe) that `MatryoshkaIndex.tune` picks on 1,000 further generated queries (disjoint from the
10k). Times our plans against faiss IndexFlatIP
at full D and IndexHNSWFlat at full D (built on the first 50k rows, its 1M build
extrapolated), same threads. Figure 8 is skipped here (add `--fig8-queries 300` and drop
`--no-figure8` for it; its brute-force scans take most of such a run).

Usage (heavy: 19 GB peak RSS, about 9 minutes on 2 idle cores):
    python benchmarks/retrieval.py --out reports/retrieval-1m-ds32-f32
    python benchmarks/retrieval.py --dtype float16 --out reports/retrieval-1m-ds32-f16
    python benchmarks/retrieval.py --n 100000 --n-queries 2000 --out reports/retrieval-100k

Any extra flag is passed on (see `mrl bench retrieval --help`), e.g. `--database DIR` to run
on the real embeddings written by `mrl embed` (`--tune-queries` applies to generated data).
"""

import sys

from mrl.cli.main import main

HEADLINE = [
    "--n",
    "1000000",
    "--dim",
    "2048",
    "--classes",
    "1000",
    "--n-queries",
    "10000",
    "--shortlist-dim",
    "32",
    "--hnsw-full-rows",
    "50000",
    "--no-figure8",
    "--dtype",
    "float32",
    "--data-dir",
    "runs/generated",
    "--tune-queries",
    "1000",
]

if __name__ == "__main__":
    sys.exit(main(["bench", "retrieval", *HEADLINE, *sys.argv[1:]]))
