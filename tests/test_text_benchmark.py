"""benchmarks/text.py end to end on a tiny Debian file and a tiny random BERT."""

import argparse
import gzip
import json
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from bench_helpers import load_benchmark

from mrl.data.text import debian_split, load_debian_packages
from mrl.errors import ConfigError, InputError

WORDS = "editor game library shell network audio image font server python kernel".split()


def debian_file(path: Path, n_test: int = 16, n_train: int = 44) -> Path:
    """A gzipped JSONL of package records whose sources put n_test on the test side."""
    rng = np.random.default_rng(0)
    rows, counts, i = [], {True: 0, False: 0}, 0
    while counts[True] < n_test or counts[False] < n_train:
        source = f"src{i}"
        i += 1
        test = zlib.crc32(source.encode()) % 10 < 2
        if counts[test] >= (n_test if test else n_train):
            continue
        counts[test] += 1
        words = rng.choice(WORDS, size=12)
        rows.append(
            {
                "package": f"pkg{i}",
                "source": source,
                "section": str(rng.choice(["utils", "games", "libs"])),
                "summary": " ".join(words[:3]),
                "description": " ".join(words),
                "tags": [],
            }
        )
    with gzip.open(path, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return path


def test_text_benchmark_writes_every_row_and_size(tmp_path, tiny_bert_path, one_thread):
    data = debian_file(tmp_path / "debian.jsonl.gz")
    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = [
        "--data", str(data), "--model", str(tiny_bert_path), "--max-seq-length", "32",
        "--nesting", "8,16,32", "--fit-rows", "30", "--epochs", "1", "--threads", "1",
        "--cache", str(cache), "--out", str(out), "--finetune-pairs", "24",
        "--finetune-batch-size", "8", "--finetune-max-seq-length", "16",
    ]  # fmt: skip
    bench = load_benchmark("text")
    report = bench.main(argv)

    saved = json.loads((out / "results.json").read_text())
    assert saved["rows"] == report["rows"]
    assert set(saved["rows"]) == {*bench.FROZEN_ROWS, "ft_plain", "ft_mrl", "ft_st"}
    rates = saved["finetune"]["pairs_per_s"]
    assert set(rates) == {"ft_plain", "ft_mrl", "ft_st"} and min(rates.values()) > 0
    assert saved["finetune"]["pairs_trained"] == 24
    for sizes in saved["rows"].values():
        assert set(sizes) == {"8", "16", "32"}
        for metrics in sizes.values():
            assert set(metrics) == set(bench.METRICS)
            assert all(0.0 <= v <= 1.0 for v in metrics.values())
    md = (out / "results.md").read_text()
    assert md.count("| base, truncated |") == 3 and md.count("| fine-tuned, ours") == 3
    assert "| ours trains >= 1.2x the anchor's pairs/s |" in md
    assert (out / "mrr_at_10.png").read_bytes()[:4] == b"\x89PNG"

    # MRR@10 of the truncated row at full size, brute force from the cached embeddings.
    test = debian_split(load_debian_packages(data), "test")
    n = len(test.pairs)
    corpus = np.load(next(cache.glob(f"corpus-{n}-*.npy")))
    queries = np.load(next(cache.glob(f"queries-{n}-*.npy")))
    c = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    reciprocal = []
    for i in range(n):
        order = np.argsort(-(c @ q[i]), kind="stable")
        rank = int(np.flatnonzero(order == i)[0]) + 1
        reciprocal.append(1.0 / rank if rank <= 10 else 0.0)
    assert np.isclose(saved["rows"]["truncated"]["32"]["mrr_at_10"], np.mean(reciprocal))

    # A rerun reads the cache instead of encoding again.
    files = sorted(cache.glob("*.npy"))
    assert len(files) == 4
    again = bench.main([*argv, "--finetune-pairs", "0"])
    assert sorted(cache.glob("*.npy")) == files and "ft_mrl" not in again["rows"]
    assert again["rows"]["truncated"] == report["rows"]["truncated"]

    # Reports of two runs of the same queries merge into one (the GPU script's phases).
    frozen, full = tmp_path / "frozen.json", tmp_path / "full.json"
    frozen.write_text((out / "results.json").read_text())  # the rerun's: frozen rows only
    full.write_text(json.dumps(saved))
    merged = bench.main(["--merge", str(frozen), str(full), "--out", str(tmp_path / "merged")])
    assert merged["rows_run"] == [*bench.FROZEN_ROWS, *bench.FINETUNED_ROWS]
    assert merged["rows"] == saved["rows"] and bench.bars(merged) == bench.bars(report)
    assert (tmp_path / "merged" / "results.md").read_text().count("| fine-tuned, ours") == 3
    other, older = tmp_path / "other.json", tmp_path / "older.json"
    other.write_text(json.dumps({**saved, "n_queries": saved["n_queries"] + 1}))
    with pytest.raises(ConfigError, match="report 2 has n_queries"):
        bench.main(["--merge", str(full), str(other), "--out", str(tmp_path / "x")])
    # A report from before the distillation setting (and the trained-pairs count) merges as
    # one at its default; a distilled run is another recipe.
    older_keys = ("distill_weight", "distill_temperature", "pairs_trained")
    ft = {k: v for k, v in saved["finetune"].items() if k not in older_keys}
    older.write_text(json.dumps({**saved, "finetune": ft}))
    assert bench.main(["--merge", str(older), str(full), "--out", str(tmp_path / "m2")])["rows"]
    other.write_text(json.dumps({**saved, "finetune": {**ft, "distill_weight": 1.0}}))
    with pytest.raises(ConfigError, match="fine-tuned rows of two recipes"):
        bench.main(["--merge", str(full), str(other), "--out", str(tmp_path / "x")])
    with pytest.raises(InputError, match="missing.json: cannot read it as JSON"):
        bench.main(["--merge", str(tmp_path / "missing.json"), "--out", str(tmp_path / "x")])


def test_one_weighted_row_with_a_rotation_runs_alone(
    tmp_path, tiny_bert_path, one_thread, monkeypatch
):
    bench = load_benchmark("text")
    seen = []
    real = bench.finetune_ours

    def spy(nesting, setup, out, max_steps=None):
        seen.append((tuple(nesting), setup.weights_for(nesting), out.name, setup.device))
        return real(nesting, setup, out, max_steps)

    monkeypatch.setattr(bench, "finetune_ours", spy)
    data = debian_file(tmp_path / "debian.jsonl.gz")
    cache = tmp_path / "cache"
    argv = [
        "--data", str(data), "--model", str(tiny_bert_path), "--max-seq-length", "32",
        "--nesting", "8,16,32", "--threads", "1", "--cache", str(cache),
        "--out", str(tmp_path / "out"), "--finetune-pairs", "24", "--finetune-batch-size", "8",
        "--finetune-max-seq-length", "16", "--rows", "ft_mrl", "--nesting-weights", "1,2,4",
        "--rotation", "--distill-weight", "0.5", "--distill-temperature", "0.2",
    ]  # fmt: skip
    report = bench.main(argv)
    assert report["rows_run"] == ["ft_mrl"] and report["finetune"]["nesting_weights"] == (1, 2, 4)
    assert seen == [((8, 16, 32), [1.0, 2.0, 4.0], "mrl", "cpu")]
    # the run folder names every setting away from the default recipe: two never collide
    folder = cache / "finetune-24-seed0-b8-len16-w1-2-4-rot-kd0.5-kdt0.2" / "mrl"
    text = next(folder.rglob("config.yaml")).read_text()
    assert "nesting_weights:\n- 1.0\n- 2.0\n- 4.0" in text and "rotation: true" in text
    assert "distill_weight: 0.5" in text and "distill_temperature: 0.2" in text
    assert report["finetune"]["rotation"] and "rotation (ours)" in bench.markdown(report)
    assert report["finetune"]["distill_weight"] == 0.5
    assert "self-distillation (ours) weight 0.5 at temperature 0.2" in bench.markdown(report)
    assert not list(cache.glob("*.npy"))  # no frozen row: the base was never encoded
    assert bench.bars(report) == []  # no other row to compare with, no 24 or 48 dims
    with pytest.raises(ConfigError, match="3 sizes"):
        bench.main([*argv, "--nesting-weights", "1,2"])


@pytest.mark.parametrize(
    "option, value, match",
    [
        ("--rows", "ft_mrl,fast", "unknown row fast"),
        ("--nesting-weights", "1,-2,3", "numbers >= 0"),
        ("--nesting-weights", "0,0,0", "at least one of them positive"),
        ("--nesting-weights", "1,x", "numbers >= 0"),
    ],
)
def test_bad_row_or_weight_exits_2_naming_it(tmp_path, option, value, match, capsys):
    bench = load_benchmark("text")
    with pytest.raises(SystemExit) as e:
        bench.main([option, value, "--out", str(tmp_path / "o")])
    assert e.value.code == 2 and match in capsys.readouterr().err


@pytest.mark.parametrize(
    "option, value", [("--distill-weight", "-1"), ("--distill-temperature", "0")]
)
def test_a_bad_distillation_setting_is_named_before_any_work(tmp_path, option, value):
    bench = load_benchmark("text")
    with pytest.raises(ConfigError, match=option):
        bench.main([option, value, "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()


def test_the_default_recipe_keeps_the_plain_run_folder_name():
    bench = load_benchmark("text")
    defaults = {name: default for name, (_, default) in bench.RECIPE.items()}
    args = argparse.Namespace(
        **defaults, nesting_weights=None, rotation=False, distill_weight=0.0,
        distill_temperature=None,
    )  # fmt: skip
    assert bench.recipe_tag(args) == ""
    args.finetune_lr, args.nesting_weights = 1e-4, (1.0, 5.0)
    assert bench.recipe_tag(args) == "-lr0.0001-w1-5"
    args.rotation, args.distill_weight = True, 1.0
    assert bench.recipe_tag(args) == "-lr0.0001-w1-5-rot-kd1"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible")
def test_cuda_without_a_device_is_named_before_any_work(tmp_path):
    bench = load_benchmark("text")
    with pytest.raises(ConfigError, match="--device cuda: no CUDA device is visible"):
        bench.main(["--device", "cuda", "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()


def test_setup_weights_reach_both_matryoshka_trainers_not_the_plain_one():
    probe = load_benchmark("text_finetune")
    setup = probe.FineTuneSetup("d", 8, "m", 16, 8, 1e-5, 1, 0.1, 0.05, 0, (1.0, 1.0, 5.0))
    assert setup.weights_for((8, 16, 32)) == [1.0, 1.0, 5.0]
    assert setup.weights_for((32,)) is None
    with pytest.raises(ValueError, match="one weight per size"):
        setup.weights_for((8, 16, 32, 64))


def test_throughput_probe_alternates_both_trainers(tmp_path, tiny_bert_path, one_thread):
    probe = load_benchmark("text_finetune")
    data = debian_file(tmp_path / "debian.jsonl.gz")
    report = probe.main(
        [
            "--data", str(data), "--model", str(tiny_bert_path), "--nesting", "8,16,32",
            "--pairs", "24", "--batch-size", "8", "--max-seq-length", "16", "--steps", "2",
            "--rounds", "2", "--threads", "1", "--out", str(tmp_path / "speed.json"),
        ]
    )  # fmt: skip
    saved = json.loads((tmp_path / "speed.json").read_text())
    assert saved["ratio_ours_over_anchor"] == report["ratio_ours_over_anchor"] > 0
    assert [len(v) for v in saved["pairs_per_s"].values()] == [2, 2]


def test_zero_weights_but_one_train_a_single_size_model():
    bench = load_benchmark("text")
    assert bench.parse_weights("0,0,1") == (0.0, 0.0, 1.0)
    assert bench.parse_weights(None) is None
