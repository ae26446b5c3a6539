"""CUDA code paths against the host paths (skipped without a CUDA GPU; run on the lent H100 with the device tool).

The rest of the suite also exercises CUDA there: every model's ``device``
defaults to ``auto``, so on a GPU machine the contract tests fit, score and
rank on the GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
from contract_params import contract_params

from toprec import Dataset, models, split
from toprec.models import Recommender
from toprec.recommend import topk

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

TORCH_MODELS = sorted(n for n in models.list() if hasattr(models.get_class(n), "_topk_on_device"))


def _data(seed=0, n_users=300, n_items=120):
    rng = np.random.default_rng(seed)
    pop = rng.zipf(1.6, n_items).astype(float)
    u = np.repeat(np.arange(n_users), rng.integers(5, 30, n_users))
    i = rng.choice(n_items, len(u), p=pop / pop.sum())
    return Dataset.from_events(u, i, np.arange(len(u)))


def test_ease_on_cuda_matches_the_cpu_fit():
    ds = _data()
    cpu = models.get("ease", l2=20.0, device="cpu").fit(ds)
    gpu = models.get("ease", l2=20.0, device="cuda").fit(ds)
    assert gpu.device_ == "cuda" and gpu._B_dev.is_cuda
    np.testing.assert_allclose(gpu.similarity, cpu.similarity, rtol=1e-3, atol=1e-4)
    users = np.r_[np.arange(ds.n_users), -1]
    a, b = cpu.recommend(users, k=10), gpu.recommend(users, k=10)
    assert (a.items == b.items).mean() > 0.98  # float32 rounding on two devices may swap near-ties
    seen = ds.matrix[np.arange(ds.n_users)]
    assert not np.take_along_axis(seen.toarray(), b.items[:-1].astype(np.int64), axis=1).any()
    np.testing.assert_array_equal(b.items[-1], a.items[-1])  # unknown user: popularity


@pytest.mark.parametrize("name", TORCH_MODELS)
def test_torch_model_on_cuda_ranks_on_the_device_like_the_host(name, tmp_path):
    ds = _data(seed=1)
    train, holdout = split.competition(ds, last=1, random=4, seed=0)
    params = {**contract_params(name), "device": "cuda"}
    m = models.get(name, **params).fit(train)
    assert m.device_ == "cuda"
    users = np.arange(train.n_users)
    dev = m.recommend(users, k=10)  # scoring and top-k on the GPU
    hist = m._history(users, None)
    host = topk(m._score_with_fallback, users, m.n_items, 10, hist, hist)  # scores copied, host top-k
    assert (dev.items == host.items).mean() > 0.99
    np.testing.assert_allclose(dev.scores, host.scores, rtol=1e-4, atol=1e-5)
    m.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    again = loaded.recommend(users, k=10)
    assert (again.items == dev.items).mean() > 0.99

