"""benchmarks/device/transfer.py: what crosses the device tool's limits comes back whole."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "device"))
import transfer  # noqa: E402

safetensors_torch = pytest.importorskip("safetensors.torch")


def test_embeddings_split_into_parts_join_back_to_an_embed_folder(tmp_path, monkeypatch):
    x = np.random.default_rng(0).standard_normal((1000, 24)).astype(np.float32)
    emb, parts, back = tmp_path / "emb", tmp_path / "parts", tmp_path / "back"
    emb.mkdir(), parts.mkdir()
    np.save(emb / "embeddings.npy", x)
    (emb / "manifest.json").write_text(json.dumps({"count": 1000, "dims": [8, 24]}))
    monkeypatch.setattr(transfer, "PART_BYTES", 24 * 2 * 300)  # 300 rows a part
    transfer.split_embeddings(emb, parts)
    assert len(list(parts.glob("emb-part*.npy"))) == 4  # 300 + 300 + 300 + 100 rows
    transfer.join_embeddings(parts, back)
    got = np.load(back / "embeddings.npy")
    assert got.dtype == np.float32 and got.shape == x.shape
    np.testing.assert_allclose(got, x, rtol=1e-3, atol=1e-3)  # float16 on the way
    assert json.loads((back / "manifest.json").read_text())["dims"] == [8, 24]
    (parts / "emb-part3.npy").unlink()  # a part lost on the way is named, not joined
    with pytest.raises(SystemExit, match="3 parts hold 900 rows, the manifest 1000"):
        transfer.join_embeddings(parts, tmp_path / "short")


def test_a_model_folder_goes_to_float16_and_back(tmp_path):
    src, half, full = tmp_path / "src", tmp_path / "half", tmp_path / "full"
    (src / "sub").mkdir(parents=True)
    weights = {"w": torch.randn(8, 4), "ids": torch.arange(3)}
    safetensors_torch.save_file(weights, src / "sub" / "model.safetensors")
    (src / "config.json").write_text("{}")
    transfer.convert_model(src, half, "float16")
    transfer.convert_model(half, full, "float32")
    got = safetensors_torch.load_file(full / "sub" / "model.safetensors")
    assert (
        safetensors_torch.load_file(half / "sub" / "model.safetensors")["w"].dtype == torch.float16
    )
    assert got["w"].dtype == torch.float32 and torch.equal(got["ids"], weights["ids"])
    torch.testing.assert_close(got["w"], weights["w"], rtol=1e-3, atol=1e-3)
    assert (full / "config.json").read_text() == "{}"
