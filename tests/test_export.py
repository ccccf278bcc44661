"""mrl export: a sentence-transformers folder that loads and encodes like TextEncoder, per size."""

import json

import numpy as np
import pytest

pytest.importorskip("sentence_transformers")

from sentence_transformers import SentenceTransformer  # noqa: E402

from mrl.errors import ConfigError, FormatError, MissingPathError, PathError  # noqa: E402
from mrl.export import export_sentence_transformers, exported_nesting  # noqa: E402
from mrl.models.text import TextEncoder, default_text_model_path  # noqa: E402
from mrl.nesting import Nesting  # noqa: E402

TEXTS = ["a text editor", "Real-time strategy game of ancient warfare", "JSON parser library"]


@pytest.mark.parametrize("normalize", [False, True])
def test_minilm_export_gives_the_encoder_vectors_at_every_size(tmp_path, normalize, one_thread):
    encoder = TextEncoder(default_text_model_path(), normalize=normalize)
    nesting = Nesting.halving(encoder.embed_dim)  # 12, 24, ..., 384
    out = export_sentence_transformers(encoder, nesting, tmp_path / "minilm")
    assert exported_nesting(out) == nesting
    ours = encoder.encode(TEXTS)
    for m in nesting:
        theirs = SentenceTransformer(str(out), device="cpu", truncate_dim=m).encode(TEXTS)
        assert theirs.shape == (len(TEXTS), m)
        assert np.abs(theirs - ours[:, :m]).max() <= 1e-5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_model_card_holds_the_per_size_table(tmp_path, tiny_bert_path, cli):
    results = tmp_path / "eval.json"
    sizes = {
        "8": {"mrr_at_10": 0.5, "ndcg_at_10": 0.25},
        "32": {"mrr_at_10": 0.75, "ndcg_at_10": 0.5},
    }
    results.write_text(json.dumps({"sizes": sizes}))
    r = cli(
        "export", tiny_bert_path, "--out", tmp_path / "m", "--nesting", "8,32", "--results", results
    )
    assert r.code == 0, r.err
    card = (tmp_path / "m" / "README.md").read_text()
    assert "| dims | mrr_at_10 | ndcg_at_10 |" in card and "| 32 | 75.00 | 50.00 |" in card
    assert exported_nesting(tmp_path / "m").dims == (8, 32)


def test_bad_exports_are_named(tmp_path, tiny_bert_path, cli):
    encoder = TextEncoder(tiny_bert_path)
    with pytest.raises(ConfigError, match="ends at 64 but the embedding has 32 dims"):
        export_sentence_transformers(encoder, Nesting((8, 64)), tmp_path / "a")
    with pytest.raises(ConfigError, match="must be a Nesting"):
        export_sentence_transformers(encoder, [8, 32], tmp_path / "a")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    with pytest.raises(PathError, match="not an empty folder; export to a new folder"):
        export_sentence_transformers(encoder, Nesting((8, 32)), taken)
    assert (taken / "keep.txt").read_text() == "mine"
    with pytest.raises(MissingPathError, match="no config_sentence_transformers.json"):
        exported_nesting(tmp_path)
    cli("export", tiny_bert_path, "--out", tmp_path / "b", "--nesting", "8,x").assert_named_error(
        "--nesting expects comma-separated ints"
    )
    cli("export", tiny_bert_path, "--out", tmp_path / "b", "--nesting", "8,16").assert_named_error(
        "ends at 16 but the embedding has 32 dims"
    )
    cli("export", tmp_path / "nothing", "--out", tmp_path / "b").assert_named_error("nothing")
    (tmp_path / "bad.json").write_text("{}")
    cli(
        "export", tiny_bert_path, "--out", tmp_path / "b", "--results", tmp_path / "bad.json"
    ).assert_named_error("is not an `mrl eval --out` file")


def test_a_sentence_transformers_folder_not_exported_by_mrl_has_no_nesting():
    with pytest.raises(FormatError, match="holds no mrl nesting"):
        exported_nesting(default_text_model_path())
