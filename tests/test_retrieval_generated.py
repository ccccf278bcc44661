"""Generated nested embeddings: seeded, chunk-independent, class signal in the leading dims."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from mrl.data.generated import (
    GeneratedNestedSpec,
    generated_nested_embeddings,
    write_generated_nested_embeddings,
)
from mrl.errors import ConfigError
from mrl.evaluation import metrics
from mrl.retrieval.index import MatryoshkaIndex
from mrl.retrieval.plans import SingleShot


def test_written_file_equals_in_memory_and_is_seeded(tmp_path):
    spec = GeneratedNestedSpec(dim=32, num_classes=5, seed=7)
    x, y = generated_nested_embeddings(10_000, spec)  # spans two seeded blocks
    xp, yp = write_generated_nested_embeddings(tmp_path / "gen", 10_000, spec, dtype="float16")
    assert_array_equal(np.load(xp, mmap_mode="r"), x.astype(np.float16))
    assert_array_equal(np.load(yp), y)
    assert_array_equal(generated_nested_embeddings(100, spec)[0], x[:100])
    q, _ = generated_nested_embeddings(100, spec, "queries")
    assert not np.allclose(q, x[:100])


def test_class_signal_is_in_the_leading_dims():
    spec = GeneratedNestedSpec(dim=256, num_classes=20, seed=0)
    x, y = generated_nested_embeddings(3000, spec)
    q, yq = generated_nested_embeddings(100, spec, "queries")
    index = MatryoshkaIndex(shortlist_dim=8).build(x)

    def map10(dim):
        ids = index.search(q, 10, SingleShot(dim)).ids
        return metrics.map_at_k_paper(metrics.relevance(y[ids], yq), 10)

    small, mid, full = map10(4), map10(32), map10(256)
    assert small < mid <= full + 0.02 and full > 0.8
    var = x.var(axis=0)
    assert var[:16].mean() > 10 * var[-16:].mean()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_classes": 0}, "num_classes must be >= 1, got 0"),
        ({"num_classes": 2.5}, "num_classes must be an int, got 2.5"),
        ({"dim": -3}, "dim must be >= 1, got -3"),
        ({"seed": -1}, "seed must be >= 0, got -1"),
        ({"noise": float("nan")}, "noise must be a finite number"),
    ],
)
def test_bad_spec_is_a_named_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        GeneratedNestedSpec(**kwargs)


def test_bad_row_count_and_split():
    with pytest.raises(ConfigError, match="n must be >= 0, got -1"):
        generated_nested_embeddings(-1)
    with pytest.raises(ConfigError, match="unknown split 'test'"):
        generated_nested_embeddings(10, split="test")
