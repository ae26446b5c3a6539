from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from toprec import Dataset, models
from toprec.models import Recommender
from toprec.models.linalg import gram, spd_inverse


def _wide(seed=0, n_users=40, n_items=150):
    rng = np.random.default_rng(seed)
    X = (rng.random((n_users, n_items)) < 0.12).astype(np.float32)
    X[:, :5] = 1.0  # a few popular items
    u, i = np.nonzero(X)
    return Dataset.from_events(u, i, np.arange(len(u)))


def test_reference_formula():
    ds = _wide(n_users=60, n_items=30)
    X = ds.matrix.toarray().astype(np.float64)
    l2 = 7.0
    P = np.linalg.inv(X.T @ X + l2 * np.eye(X.shape[1]))
    B = -P / np.diag(P)[None, :]
    np.fill_diagonal(B, 0.0)
    m = models.get("ease", l2=l2).fit(ds)
    assert m.form_ == "items"
    np.testing.assert_allclose(m.similarity, B, rtol=2e-3, atol=2e-5)


def test_user_space_form_equals_item_space():
    ds = _wide()
    a = models.get("ease", l2=5.0, form="items").fit(ds)
    b = models.get("ease", l2=5.0).fit(ds)
    assert b.form_ == "users"  # 40 users < 150 items
    users = np.arange(ds.n_users)
    np.testing.assert_allclose(a.score(users), b.score(users), rtol=1e-3, atol=1e-4)
    ra, rb = a.recommend(k=10), b.recommend(k=10)
    assert (ra.items == rb.items).mean() > 0.97  # float32 rounding may swap near-ties


def test_user_space_fold_in_and_roundtrip(tmp_path):
    ds = _wide()
    m = models.get("ease", l2=5.0).fit(ds)
    hist = ds.matrix[:4]
    new = m.recommend(np.array([-1] * 4), k=10, history=hist)
    old = m.recommend(np.arange(4), k=10)
    assert np.array_equal(new.items, old.items)
    loaded = Recommender.load(m.save(tmp_path / "m"))
    assert loaded.form_ == "users"
    assert np.array_equal(loaded.recommend(k=10).items, m.recommend(k=10).items)


def test_gram_heavy_user_path_is_exact():
    rng = np.random.default_rng(1)
    X = sp.random(300, 200, density=0.03, random_state=2, format="lil", dtype=np.float32)
    X[:15, :] = (rng.random((15, 200)) < 0.5).astype(np.float32)  # heavy users -> syrk path
    X = sp.csr_matrix(X)
    X.data[:] = 1.0
    G = gram(X)
    np.testing.assert_array_equal(G, (X.T @ X).toarray())
    assert G.flags.c_contiguous


def test_spd_inverse_in_place():
    rng = np.random.default_rng(0)
    A = rng.random((50, 20)).astype(np.float32)
    A = A @ A.T + 3 * np.eye(50, dtype=np.float32)
    ref = np.linalg.inv(A.astype(np.float64))
    P = spd_inverse(A.copy())
    np.testing.assert_allclose(P, ref, rtol=1e-3, atol=1e-5)
    np.testing.assert_array_equal(P, P.T)


def test_gram_forked_workers_are_exact(monkeypatch):
    import toprec.models.linalg as la

    X = sp.random(500, 120, density=0.1, random_state=5, format="csr", dtype=np.float32)
    X.data[:] = 1.0
    monkeypatch.setattr(la, "PARALLEL_MIN_NNZ", 0)
    monkeypatch.setenv("TOPREC_WORKERS", "3")
    np.testing.assert_array_equal(la.gram(X, dense_share=1.0), (X.T @ X).toarray())


def test_torch_item_space_matches_lapack():
    torch = __import__("pytest").importorskip("torch")
    from toprec.models.ease_solve import ease_item_space, ease_item_space_torch

    ds = _wide(n_users=200, n_items=60)
    B_np = ease_item_space(ds.matrix, 10.0)
    B_t = ease_item_space_torch(ds.matrix, 10.0, "cpu", chunk_bytes=4 * 60 * 17)  # several chunks
    np.testing.assert_allclose(B_t.numpy(), B_np, rtol=2e-3, atol=2e-5)
    assert isinstance(B_t, torch.Tensor)


def test_cuda_request_without_gpu_is_a_clear_error():
    from toprec import ToprecError
    from toprec.device import cuda_available

    if cuda_available():
        pytest.skip("a GPU is present: device='cuda' is not an error here")
    ds = _wide(n_users=60, n_items=30)
    with pytest.raises(ToprecError, match="device 'cuda'"):
        models.get("ease", device="cuda").fit(ds)


def test_auto_device_does_not_import_torch_without_a_gpu_driver():
    """Importing torch costs seconds; a CPU-only machine must not pay it to learn it has no GPU."""
    import subprocess
    import sys

    import pytest

    from toprec.device import _surely_no_gpu

    if not _surely_no_gpu():
        pytest.skip("this machine may have a GPU")
    code = (
        "import sys, numpy as np\n"
        "from toprec import Dataset, models\n"
        "rng = np.random.default_rng(0)\n"
        "u, i = rng.integers(0, 30, 400), rng.integers(0, 20, 400)\n"
        "m = models.get('ease', l2=5.0).fit(Dataset.from_events(u, i, np.arange(400)))\n"
        "m.recommend(k=3)\n"
        "assert m.device_ == 'cpu'\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_gpu_shortcut_sees_device_files_and_pci_graphics(tmp_path, monkeypatch):
    import sys

    from toprec import device as device_mod

    monkeypatch.setattr(sys, "platform", "linux")
    pci = tmp_path / "pci"
    (pci / "0000:00:00.0").mkdir(parents=True)
    (pci / "0000:00:00.0" / "vendor").write_text("0x1022\n")  # an AMD chipset: not a GPU
    monkeypatch.setattr(device_mod, "_PCI_DEVICES", str(pci))
    monkeypatch.setattr(device_mod, "_GPU_DEVICE_FILES", (str(tmp_path / "nvidia0"),))
    assert device_mod._surely_no_gpu()
    (pci / "0000:01:00.0").mkdir()
    (pci / "0000:01:00.0" / "vendor").write_text("0x10DE\n")  # an NVIDIA card, driver not loaded yet
    assert not device_mod._surely_no_gpu()
    (pci / "0000:01:00.0" / "vendor").write_text("0x1af4\n")
    assert device_mod._surely_no_gpu()
    (tmp_path / "nvidia0").write_text("")
    assert not device_mod._surely_no_gpu()
    monkeypatch.setattr(device_mod, "_PCI_DEVICES", str(tmp_path / "missing"))
    (tmp_path / "nvidia0").unlink()
    assert not device_mod._surely_no_gpu()  # cannot read the bus: do not guess
    monkeypatch.setattr(sys, "platform", "darwin")
    assert not device_mod._surely_no_gpu()


def test_torch_item_space_and_device_topk_match_the_host_path():
    """The CUDA code path (Gram from CSR scattered on the device, scoring and top-k there), run on CPU torch."""
    torch = __import__("pytest").importorskip("torch")
    from toprec.models.ease_solve import ease_item_space_torch

    ds = _wide(seed=3, n_users=200, n_items=60)
    host = models.get("ease", l2=9.0, device="cpu").fit(ds)
    B = ease_item_space_torch(ds.matrix, 9.0, "cpu", chunk_bytes=60 * 4 * 7)  # 7-row chunks: several Gram blocks
    np.testing.assert_allclose(B.numpy(), host.similarity, rtol=2e-3, atol=2e-5)
    dev = models.get("ease", l2=9.0, device="cpu").fit(ds)
    dev._B_dev = torch.from_numpy(host.similarity.copy())  # same B: lists must agree exactly
    users = np.array([0, 5, 7, 199, -1, 10_000])  # known, unknown (-1, out of range): popularity
    for kw in ({}, {"memory_budget": 60 * 16 * 4}):  # one batch, then batches of 4 users
        a, b = host.recommend(users, k=12), dev.recommend(users, k=12, **kw)
        np.testing.assert_array_equal(a.items, b.items)
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-5)
    hist = sp.csr_matrix(([1.0, 1.0], ([0, 1], [3, 4])), shape=(2, ds.n_items))
    a, b = host.recommend([0, 1], k=70, history=hist), dev.recommend([0, 1], k=70, history=hist)
    np.testing.assert_array_equal(a.items, b.items)  # k > n_items: -1 after the last item, like the host
    assert (b.items[:, -11:] == -1).all()
    np.testing.assert_allclose(dev.score(users), host.score(users), rtol=1e-5, atol=1e-5)
    dev.DEVICE_ROWS = 16  # several padded device batches: the same lists for any subset of users
    full = dev.recommend(np.arange(ds.n_users), k=10)
    for subset in (np.arange(7), np.arange(50, 90), np.array([199, 3])):
        part = dev.recommend(subset, k=10, batch_size=3)
        np.testing.assert_array_equal(part.items, full.items[subset])
        np.testing.assert_array_equal(part.scores, full.scores[subset])
    nomask = dev.recommend(np.arange(ds.n_users), k=5, exclude_seen=False)  # host top-k, in this process
    np.testing.assert_array_equal(nomask.items, host.recommend(np.arange(ds.n_users), k=5, exclude_seen=False).items)
