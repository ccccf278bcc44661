"""Write the Debian package descriptions as a text file for `mrl embed --texts` (ANN real set).

One text a line, in file order, whitespace collapsed (a description spans several lines in
the records). A record without a description (one of the 63,664) gets its summary, since
`mrl embed` refuses an empty line. The ANN frontier's real set is this file embedded by the
MRL text model:

    python benchmarks/debian_descriptions.py --out runs/debian-real/descriptions.txt
    mrl embed runs/text-bench/finetune-16000-seed0/mrl --texts runs/debian-real/descriptions.txt \
        --out runs/debian-real/debian-descriptions-mrl16k --batch-size 256
    python benchmarks/ann_frontier.py --database runs/debian-real/debian-descriptions-mrl16k ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mrl.data.text import load_debian_packages
from mrl.io import atomic_open

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import run_script  # noqa: E402  (the benchmarks' harness)


def description_lines(records) -> list[str]:
    """Each record's description on one line (its summary when it has none)."""
    return [" ".join(r.description.split()) or " ".join(r.summary.split()) for r in records]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python benchmarks/debian_descriptions.py", description=__doc__
    )
    p.add_argument("--data", default=None, help="debian-packages.jsonl.gz (default: shared data)")
    p.add_argument("--out", required=True, help="the .txt file to write")
    args = p.parse_args(argv)
    lines = description_lines(load_debian_packages(args.data))
    with atomic_open(args.out, "w") as f:
        f.write("".join(line + "\n" for line in lines))
    print(f"wrote {len(lines)} descriptions to {args.out}")
    return 0


if __name__ == "__main__":
    run_script(main)
