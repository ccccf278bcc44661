"""A text encoder's learned rotation: starts at the identity, stays orthogonal, trains at
head_lr without decay, and survives the run folder, `mrl embed` and `mrl export`."""

import numpy as np
import pytest
import torch
from text_helpers import text_config, write_debian
from training_helpers import digits_config

from mrl.models.text import TextEncoder
from mrl.training import load_model, train
from mrl.training.optim import build_optimizer

pytest.importorskip("sentence_transformers")


def cos(x: np.ndarray) -> np.ndarray:
    """[N, N] cosine similarities of the rows of x."""
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    return unit @ unit.T


TEXTS = ["a python module", "an arcade game with levels", "audio mixer"]


@pytest.fixture
def debian_file(tmp_path):
    return write_debian(tmp_path / "debian-packages.jsonl.gz")


def test_the_rotation_starts_at_the_identity_and_is_applied_after_pooling(tiny_bert_path):
    plain = TextEncoder(tiny_bert_path)
    rotated = TextEncoder(tiny_bert_path, rotation=True)
    rotated.model.load_state_dict(plain.model.state_dict())
    np.testing.assert_allclose(rotated.encode(TEXTS), plain.encode(TEXTS), atol=1e-6)
    with torch.no_grad():  # any skew parameter gives an orthogonal matrix
        rotated.rotation.parametrizations.weight.original.normal_(0, 0.3)
    R = rotated.rotation_matrix()
    assert torch.allclose(R @ R.T, torch.eye(32), atol=1e-5)
    assert (R - torch.eye(32)).abs().max() > 0.1
    z, pooled = rotated.encode(TEXTS), plain.encode(TEXTS)
    np.testing.assert_allclose(z, pooled @ R.numpy().T, atol=1e-5)
    # full-size cosines are those of the pooled vectors; prefixes are not
    np.testing.assert_allclose(cos(z), cos(pooled), atol=1e-5)
    assert np.abs(cos(z[:, :8]) - cos(pooled[:, :8])).max() > 1e-3
    assert TextEncoder(tiny_bert_path).rotation_matrix() is None


def test_the_rotation_takes_head_lr_without_weight_decay(tmp_path, tiny_bert_path, debian_file):
    config = text_config(tmp_path, tiny_bert_path, debian_file, rotation=True, head_lr=0.05)
    from mrl.models import create_text_model

    model = create_text_model(tiny_bert_path, config.get_nesting(), rotation=True)
    groups = build_optimizer(model, config).param_groups
    rotation = {id(p) for p in model.backbone.rotation.parameters()}
    (group,) = [g for g in groups if {id(p) for p in g["params"]} & rotation]
    assert {id(p) for p in group["params"]} == rotation
    assert group["lr"] == 0.05 and group["weight_decay"] == 0.0
    others = [p for g in groups if g is not group for p in g["params"]]
    assert len(others) == len(list(model.parameters())) - len(rotation)
    assert all(g["lr"] == config.lr for g in groups if g is not group)


def test_a_run_with_a_rotation_embeds_and_exports_the_same_vectors(
    tmp_path, tiny_bert_path, debian_file, cli, one_thread
):
    from sentence_transformers import SentenceTransformer

    from mrl.evaluation.embed import load_embeddings
    from mrl.export import exported_nesting

    config = text_config(
        tmp_path, tiny_bert_path, debian_file, rotation=True, epochs=1, max_train_examples=32
    )
    run_dir = train(config).run_dir
    model, back = load_model(run_dir)
    assert back.rotation
    R = model.backbone.rotation_matrix()
    assert torch.allclose(R @ R.T, torch.eye(32), atol=1e-5)
    assert (R - torch.eye(32)).abs().max() > 1e-4  # it trained
    (tmp_path / "t.txt").write_text("\n".join(TEXTS) + "\n")
    r = cli("embed", run_dir, "--texts", tmp_path / "t.txt", "--out", tmp_path / "e")
    assert r.code == 0, r.err
    assert cli("export", run_dir, "--out", tmp_path / "st").code == 0
    assert exported_nesting(tmp_path / "st").dims == (8, 16, 32)  # the run's nesting
    embedded = load_embeddings(tmp_path / "e").embeddings
    np.testing.assert_allclose(embedded, model.backbone.encode(TEXTS), atol=1e-6)
    for m in (8, 16, 32):
        st = SentenceTransformer(str(tmp_path / "st"), device="cpu", truncate_dim=m)
        assert np.abs(st.encode(TEXTS) - embedded[:, :m]).max() <= 1e-5


def test_exporting_an_image_run_is_a_named_error(tmp_path, cli, one_thread):
    run_dir = train(digits_config(tmp_path, epochs=1, max_steps=1)).run_dir
    cli("export", run_dir, "--out", tmp_path / "st").assert_named_error(
        "is a 'mlp' image run", "only text encoders export"
    )
