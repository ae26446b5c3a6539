"""The `sansa` PyPI package (glami/sansa 1.1.0) on ML-1M, for the wrap-vs-write decision (docs/DESIGN-NOTES.md).

Not a toprec dependency: it runs in its own virtual environment, which needs the SuiteSparse headers
(`apt-get install libsuitesparse-dev`) and a C compiler, because scikit-sparse ships no wheels:

    python -m venv /tmp/sansa_venv
    /tmp/sansa_venv/bin/pip install "scikit-sparse<0.5" sansa==1.1.0 numba numpy==2.4.6 scipy==1.17.1
    python benchmarks/sansa_wrap_compare.py dump /tmp/ml1m_train.npz                  # toprec's venv: the split
    /usr/bin/time -v /tmp/sansa_venv/bin/python benchmarks/sansa_wrap_compare.py fit \\
        /tmp/ml1m_train.npz /tmp/w_chol.npz cholmod 500 0.05                          # the package's venv
    python benchmarks/sansa_wrap_compare.py eval /tmp/w_chol.npz                     # toprec's venv: recall@10

Same split as bench_sansa.py (ML-1M ratings >= 4, last 1 + 9 random held out, seed 0), the package's
UMR inverter with 1 scan + 5 finetune steps, scored (X W1) W2 and ranked by toprec's shared top-k.
"""

import sys
import time

import numpy as np
import scipy.sparse as sp

ML1M = "/work/shared/data/ml-1m/derived/ml1m_ratings_ge4_with_time.csv.gz"


def split():
    from toprec import Dataset, split as sp_

    data = Dataset.load(ML1M, format="table", user_col="user", item_col="item", time_col="timestamp")
    return sp_.competition(data, last=1, random=9, seed=0)


def dump(out):
    train, _ = split()
    sp.save_npz(out, sp.csr_matrix(train.matrix))


def fit(train_npz, out, method, l2, density):
    import resource

    t0 = time.perf_counter()
    from sansa import (SANSA, CHOLMODGramianFactorizerConfig, ICFGramianFactorizerConfig, SANSAConfig,
                       UMRUnitLowerTriangleInverterConfig)  # fmt: skip
    t_imp = time.perf_counter() - t0
    X = sp.load_npz(train_npz).astype(np.float32)
    fac = ICFGramianFactorizerConfig() if method == "icf" else CHOLMODGramianFactorizerConfig()
    cfg = SANSAConfig(l2=float(l2), weight_matrix_density=float(density), gramian_factorizer_config=fac,
                      lower_triangle_inverter_config=UMRUnitLowerTriangleInverterConfig(scans=1, finetune_steps=5))
    t = time.perf_counter()
    m = SANSA(cfg).fit(X)
    ft = time.perf_counter() - t
    W1, W2 = m.weights
    t = time.perf_counter()
    (X @ W1) @ W2
    st = time.perf_counter() - t
    arrays = {f"w{j}_{k}": getattr(W, k) for j, W in ((1, W1), (2, W2)) for k in ("data", "indices", "indptr")}
    np.savez(out, **arrays, shape=np.array(W1.shape + W2.shape))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"import {t_imp:.1f}s fit {ft:.1f}s score-all {st:.1f}s nnz {W1.nnz + W2.nnz} maxrss {rss:.0f}MB")


def evaluate(paths):
    from toprec import metrics, models

    train, test = split()
    m = models.get("sansa", l2=500.0, max_per_item=4, factor_size=4).fit(train)  # a holder for the weights
    for f in paths:
        z = np.load(f)
        s = z["shape"]
        W1 = sp.csr_matrix((z["w1_data"], z["w1_indices"], z["w1_indptr"]), shape=tuple(s[:2]))
        W2 = sp.csr_matrix((z["w2_data"], z["w2_indices"], z["w2_indptr"]), shape=tuple(s[2:]))
        m.similarity = sp.csr_matrix(W1 @ W2)
        print(f, round(float(metrics.evaluate(m.recommend(k=10), test, ["recall@10"])["recall@10"]), 4))


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"dump": lambda: dump(*args), "fit": lambda: fit(*args), "eval": lambda: evaluate(args)}[cmd]()
