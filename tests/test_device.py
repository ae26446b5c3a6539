"""toprec.device: the on-device top-k equals a full stable sort (ties to the lower item), on CPU torch."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from toprec.device import _topk_rows  # noqa: E402


@pytest.mark.parametrize("k", [1, 3, 10, 29, 30, 45])
def test_topk_rows_equals_full_stable_sort_with_ties_and_masks(k):
    rng = np.random.default_rng(k)
    s = torch.from_numpy(rng.integers(0, 6, (200, 30)).astype(np.float32))  # many ties, across the cut too
    s[rng.random((200, 30)) < 0.3] = -torch.inf  # masked items
    s[:5] = -torch.inf  # rows with nothing left
    s[5:10] = torch.from_numpy(rng.random((5, 30)).astype(np.float32))  # no ties
    vals, idx = _topk_rows(torch, s.clone(), min(k, 30))
    want_v, want_i = torch.sort(s, dim=1, descending=True, stable=True)
    assert torch.equal(idx, want_i[:, : min(k, 30)])
    assert torch.equal(vals, want_v[:, : min(k, 30)])


def test_dense_rows_sums_duplicates_like_scipy():
    import scipy.sparse as sp

    from toprec.device import dense_rows

    m = sp.csr_matrix((np.array([1.0, 2.0, 3.0], dtype=np.float32), np.array([1, 1, 0]), np.array([0, 2, 3])),
                      shape=(2, 3))  # row 0 holds column 1 twice  # fmt: skip
    assert not m.has_canonical_format
    np.testing.assert_array_equal(dense_rows(m, "cpu", torch.float32).numpy(), m.toarray())


def test_cuda_matmul_tf32_switch_restores_the_setting():
    from toprec.device import cuda_matmul_tf32

    mm = torch.backends.cuda.matmul
    before = mm.fp32_precision
    with cuda_matmul_tf32(torch, True):
        assert mm.fp32_precision == "tf32"
        with cuda_matmul_tf32(torch, False):
            assert mm.fp32_precision == "ieee"
        assert mm.fp32_precision == "tf32"
    assert mm.fp32_precision == before
    with pytest.raises(KeyError):
        with cuda_matmul_tf32(torch, True):
            raise KeyError("boom")
    assert mm.fp32_precision == before
