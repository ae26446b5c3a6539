"""toprec.device, and the torch path of the one top-k: it equals a full stable sort (ties to the lower item)
and the host path, on CPU torch."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from toprec.recommend import topk_rows  # noqa: E402


@pytest.mark.parametrize("k", [1, 3, 10, 29, 30, 45])
def test_topk_rows_equals_full_stable_sort_with_ties_and_masks(k):
    rng = np.random.default_rng(k)
    s = torch.from_numpy(rng.integers(0, 6, (200, 30)).astype(np.float32))  # many ties, across the cut too
    s[rng.random((200, 30)) < 0.3] = -torch.inf  # masked items
    s[:5] = -torch.inf  # rows with nothing left
    s[5:10] = torch.from_numpy(rng.random((5, 30)).astype(np.float32))  # no ties
    idx, vals = topk_rows(s.clone(), min(k, 30))
    want_v, want_i = torch.sort(s, dim=1, descending=True, stable=True)
    want_v, want_i = want_v[:, : min(k, 30)], want_i[:, : min(k, 30)]
    assert torch.equal(idx, torch.where(torch.isneginf(want_v), -1, want_i).to(torch.int32))  # -1: nothing left
    assert torch.equal(vals, want_v)


@pytest.mark.parametrize("m, k", [(30, 10), (30, 45), (300, 10), (1001, 3)])
def test_torch_and_host_paths_give_the_same_lists(m, k):
    rng = np.random.default_rng(m + k)
    s = rng.integers(0, 6, (64, m)).astype(np.float32)  # ties
    s[rng.random(s.shape) < 0.3] = -np.inf
    s[:3] = -np.inf
    s[3:6, 2:] = -np.inf  # fewer available items than k
    host_items, host_scores = topk_rows(s.copy(), k)
    dev_items, dev_scores = topk_rows(torch.from_numpy(s.copy()), k)
    np.testing.assert_array_equal(dev_items.numpy(), host_items)
    np.testing.assert_array_equal(dev_scores.numpy(), host_scores)


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


def test_batched_topk_on_a_device_equals_the_host_one():
    import scipy.sparse as sp

    from toprec.recommend import topk

    rng = np.random.default_rng(5)
    n, m, k = 97, 40, 8
    base = rng.integers(0, 4, (n, m)).astype(np.float32)
    hist = sp.random(n, m, density=0.2, random_state=2, format="csr", dtype=np.float32)
    hist = sp.csr_matrix(sp.diags((np.arange(n) % 9 != 0).astype(np.float32)) @ hist)  # some cold users
    pop = rng.random(m).astype(np.float32)
    host = topk(lambda u, h: base[u].copy(), np.arange(n), m, k, hist, hist, popularity=pop)
    for bs in (1, 10, n):
        dev = topk(lambda u, h: torch.from_numpy(base[u].copy()), np.arange(n), m, k, hist, hist, batch_size=bs,
                   memory_budget=bs * m * 16, popularity=pop, device="cpu")  # fmt: skip
        np.testing.assert_array_equal(dev.items, host.items)
        np.testing.assert_array_equal(dev.scores, host.scores)


def test_device_policy():
    from toprec import ToprecError
    from toprec.device import SMALL_WORK, cpu_threads, cuda_available, resolve_device, usable_cores

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if cuda_available() else "cpu")
    assert resolve_device("auto", gpu_useful=False) == "cpu"
    if not cuda_available():
        with pytest.raises(ToprecError, match="model 'x': device 'cuda'"):
            resolve_device("cuda", "x")
    assert cpu_threads(3, 10**12) == 3
    assert cpu_threads(0, SMALL_WORK - 1) == 1
    assert cpu_threads(0, SMALL_WORK) == usable_cores()
