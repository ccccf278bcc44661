"""`first_bad_row`: the one-pass fast path of a small array must never hide a bad row."""

import numpy as np
import pytest

from mrl.checks import first_bad_row


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_first_bad_row_finds_nan_and_inf_and_passes_sums_that_overflow(dtype):
    big = np.finfo(dtype).max
    x = np.full((4, 8), big / 2, dtype=dtype)  # finite; its sum overflows to inf
    assert first_bad_row(x) is None
    x[:, 0] = -big  # +inf and -inf partial sums: a NaN sum, still every value finite
    assert first_bad_row(x) is None
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[2, 5] = bad
        assert first_bad_row(y) == 2
        assert first_bad_row(y[2]) == 5  # a 1-D array: its elements are the rows
