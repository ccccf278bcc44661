"""benchmarks/text_recipes.py: our fine-tune per recipe against the bars, from saved reports."""

import json

import pytest
from bench_helpers import load_benchmark

from mrl.errors import ConfigError, InputError

SIZES = ("12", "24", "48", "96", "192", "384")


def report(rows: dict, pairs: int = 16000, lr: float = 1e-4, **finetune) -> dict:
    """A `benchmarks/text.py` results.json of the given {row: MRR@10 per size}."""
    return {
        "model": "minilm",
        "max_seq_length": 128,
        "nesting": [int(m) for m in SIZES],
        "n_queries": 100,
        "n_corpus": 100,
        "seed": 0,
        "finetune": {
            "pairs": pairs,
            "epochs": 1,
            "batch_size": 32,
            "lr": lr,
            "max_seq_length": 64,
            "temperature": 0.05,
            "nesting_weights": None,
            **finetune,
        },  # fmt: skip
        "rows": {
            row: {m: {"mrr_at_10": v} for m, v in zip(SIZES, values, strict=True)}
            for row, values in rows.items()
        },
    }


def write(folder, data: dict) -> str:
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(data))
    return str(folder)


def test_recipes_give_retention_the_same_budget_gap_and_the_single_size_comparison(tmp_path):
    bench = load_benchmark("text_recipes")
    mrl = (0.30, 0.50, 0.60, 0.66, 0.70, 0.72)
    runs = [
        write(tmp_path / "a", report({"ft_mrl": mrl, "ft_plain": (0.1,) * 5 + (0.75,)})),
        write(tmp_path / "b", report({"ft_mrl": mrl}, lr=2e-5, rotation=True)),
        write(
            tmp_path / "c",
            report({"ft_mrl": (0.2, 0.4, 0.64, 0.6, 0.5, 0.4)}, nesting_weights=[0, 0, 1, 0, 0, 0]),
        ),
    ]
    table = bench.main(["--runs", *runs, "--out", str(tmp_path / "out")])

    a, b, c = table["recipes"]
    assert a["kept"] == {"48": pytest.approx(0.60 / 0.72), "24": pytest.approx(0.50 / 0.72)}
    assert a["gap_to_plain_pts"] == pytest.approx(-3.0)
    assert b["gap_to_plain_pts"] is None  # no 384-only run at lr 2e-5
    assert b["label"] == "16,000 pairs, lr 2e-05, rotation"
    assert (
        c["only_size"] == "48" and c["label"] == "16,000 pairs, lr 0.0001, trained for 48 dims only"
    )
    assert a["vs_only_pts"] == {"48": pytest.approx(-4.0)}  # same budget as the 48-only model
    assert b["vs_only_pts"] == {} and c["vs_only_pts"] == {}
    md = (tmp_path / "out" / "recipes.md").read_text()
    assert "| 16,000 pairs, lr 0.0001 | 0.300 | 0.500 | 0.600 |" in md
    assert "83.3% | 69.4% | -3.0 pts |" in md
    assert "-4.0 pts against the model trained for 48 alone; the 95% bar needs 0.684" in md
    assert json.loads((tmp_path / "out" / "recipes.json").read_text())["recipes"][0] == a
    assert (tmp_path / "out" / "recipes.png").read_bytes()[:4] == b"\x89PNG"


def test_runs_of_other_queries_or_without_our_row_are_refused(tmp_path):
    bench = load_benchmark("text_recipes")
    one = write(tmp_path / "one", report({"ft_mrl": (0.5,) * 6}))
    other = write(tmp_path / "other", {**report({"ft_mrl": (0.5,) * 6}), "n_queries": 7})
    with pytest.raises(ConfigError, match="has n_queries 7"):
        bench.main(["--runs", one, other, "--out", str(tmp_path / "x")])
    plain = write(tmp_path / "plain", report({"ft_plain": (0.5,) * 6}))
    with pytest.raises(ConfigError, match="no run has our Matryoshka fine-tune"):
        bench.main(["--runs", plain, "--out", str(tmp_path / "x")])
    with pytest.raises(InputError, match="cannot read it as JSON"):
        bench.main(["--runs", str(tmp_path / "missing"), "--out", str(tmp_path / "x")])
