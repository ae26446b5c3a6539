"""Where SANSA's recommend spends its time at a large point, per stage, on a sample of users.

    python benchmarks/profile_sansa_recommend.py --model /tmp/sansarec/model1m --users 20000 \\
        --out benchmarks/results/sansa_profile.md

``--model``: a SANSA saved by ``model.save`` (fit it with ``--fit clustered:1000000:200000:20
--params density=0.001,factor_size=32 --save DIR``: bench_sansa's clustered generator and large-point
parameters). Users are drawn at random (seed 0). Stages of the scipy path (``recommend.topk`` with
``rank_sparse_block``, its default batch size, in this process, one worker) are timed one by one by a
copy of that code: history rows, the sparse product, the finite check, masking the seen entries,
counting positives, the padded block, its top-k, the densified rows. Then the whole scipy path
(``TOPREC_KERNELS=numpy``) and the compiled kernel (:mod:`toprec.models.sparse_kernels`) end to end,
on one worker / thread and on the default count, with their lists compared.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def fit(spec: str, params: str, save: str) -> None:
    from bench_sansa import clustered_events, parse_params
    from toprec import Dataset, models

    nu, ni, mean = spec.split(":")[1:]
    u, i = clustered_events(int(nu), int(ni), float(mean))
    data = Dataset.from_events(u, i, np.zeros(len(u), dtype=np.int64))
    del u, i
    t0 = time.perf_counter()
    m = models.get("sansa", **parse_params(params)).fit(data)
    print(f"fit {time.perf_counter() - t0:.0f} s, {m.similarity.nnz:,} weights", flush=True)
    m.save(save)


#: the finite check as it was before (scipy's sparse max sorts the product's indices first): timed, not in the total
OLD_MAX = "finite check, old: scores.max() (not in the total)"


def stages(m, users: np.ndarray, k: int) -> dict:
    """The scipy path's stages, timed (seconds, summed over batches)."""
    from toprec.recommend import batch_size_for, check_finite, seen_and_cold, topk_rows

    t: dict[str, float] = {}

    def tick(name, t0):
        now = time.perf_counter()
        t[name] = t.get(name, 0.0) + now - t0
        return now

    bs = batch_size_for(m.n_items)
    B = m.similarity
    redo_rows = stored = flops = 0
    row_len = np.diff(B.indptr).astype(np.int64)
    for start in range(0, len(users), bs):
        t0 = time.perf_counter()
        h = m._history(users[start : start + bs], None)
        t0 = tick("history rows", t0)
        S0 = m._ranking_scores(None, h)
        t0 = tick("sparse product history @ B", t0)
        stored += S0.nnz
        flops += int(row_len[h.indices].sum())
        check_finite(float(S0.max()), "x")
        t0 = tick(OLD_MAX, t0)
        check_finite(float(S0.data.max()), "x")
        t0 = tick("finite check (scores.data.max())", t0)
        # rank_sparse_block, stage by stage
        S0 = sp.csr_matrix(S0, dtype=np.float32)
        E = sp.csr_matrix(h, dtype=np.float32)
        E.data = np.ones_like(E.data)
        S = sp.csr_matrix(S0 - S0.multiply(E))
        t0 = tick("mask seen (S - S.multiply(E))", t0)
        n = S.shape[0]
        rows = np.repeat(np.arange(n), np.diff(S.indptr))
        pos = S.data > 0
        counts = np.bincount(rows[pos], minlength=n)
        cold = np.diff(h.indptr) == 0
        dense = (counts < k) | cold
        ok = np.flatnonzero(~dense)
        t0 = tick("count positives", t0)
        keep = pos & ~dense[rows]
        r = np.searchsorted(ok, rows[keep])
        c = counts[ok]
        p = np.arange(int(c.sum())) - np.repeat(np.cumsum(c) - c, c)
        vals = np.full((len(ok), int(c.max())), -np.inf, dtype=np.float32)
        items = np.full(vals.shape, -1, dtype=np.int64)
        vals[r, p] = S.data[keep]
        items[r, p] = S.indices[keep]
        t0 = tick("padded block (rows x longest)", t0)
        cols, top = topk_rows(vals, k)
        tied = (top[:, 1:] == top[:, :-1]).any(axis=1) | ((vals >= top[:, k - 1 : k]).sum(axis=1) > k)
        short = ~np.isfinite(top[:, k - 1])
        np.take_along_axis(items, cols.astype(np.int64), axis=1)
        dense[ok[tied | short]] = True
        t0 = tick("top-k of the padded block", t0)
        redo = np.flatnonzero(dense)
        redo_rows += len(redo)
        if len(redo):
            block = np.asarray(S0[redo].toarray(), dtype=np.float32)
            seen_and_cold(block, h[redo], m.item_popularity, h[redo])
            topk_rows(block, k)
        tick("densified rows (ties, < k positives, cold)", t0)
    return {"stages": t, "batch_size": bs, "redo_rows": redo_rows, "stored_scores": stored, "products": flops}


def kernel_product_only(m, users: np.ndarray) -> dict:
    """The compiled kernel's product alone (accumulate x_u B into the scratch row, reset it; no masking or
    top-k), one thread, against the whole kernel on the same rows: the share of the sums."""
    import numba

    from toprec.models import sparse_kernels

    @numba.njit(nogil=True, boundscheck=False)
    def product_only(hp, hj, hx, bp, bj, bx):  # pragma: no cover - compiled
        n = bp.shape[0] - 1
        acc = np.zeros(n, np.float32)
        mark = np.zeros(n, np.uint8)
        touched = np.empty(n, np.int64)
        total = 0.0
        for r in range(hp.shape[0] - 1):
            t = 0
            for jj in range(hp[r], hp[r + 1]):
                j = hj[jj]
                v = hx[jj]
                for kk in range(bp[j], bp[j + 1]):
                    c = bj[kk]
                    if mark[c] == 0:
                        mark[c] = 1
                        touched[t] = c
                        t += 1
                    acc[c] += v * bx[kk]
            for q in range(t):
                c = touched[q]
                total += acc[c]
                acc[c] = 0.0
                mark[c] = 0
        return total

    H = m._history(users, None)
    h, b = sparse_kernels._arrays(H), sparse_kernels._arrays(m.similarity)
    product_only(*h, *b)
    sparse_kernels.rank_sparse_product(H[:10], m.similarity, 10, H[:10], m.item_popularity)  # compiled
    out = {"product": [], "kernel": []}
    for _ in range(3):
        t0 = time.perf_counter()
        product_only(*h, *b)
        out["product"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        sparse_kernels.rank_sparse_product(H, m.similarity, 10, H, m.item_popularity, threads=1)
        out["kernel"].append(time.perf_counter() - t0)
    return {key: float(np.median(v)) for key, v in out.items()}


def end_to_end(model_dir: str, users: np.ndarray, k: int, kernels: str, workers: int) -> dict:
    """recommend in a fresh process (kernel compiled / loaded before the clock), seconds and the lists' digest."""
    code = r"""
import json, sys, time, hashlib
import numpy as np
from toprec import models
from toprec.models import sparse_kernels
m = models.load(sys.argv[1])
users = np.load(sys.argv[2])
sparse_kernels.warm()
t0 = time.perf_counter(); r = m.recommend(users, k=int(sys.argv[3])); s = time.perf_counter() - t0
print(json.dumps({"seconds": s, "items": hashlib.sha1(r.items.tobytes()).hexdigest(),
                  "scores": hashlib.sha1(r.scores.tobytes()).hexdigest()}))
"""
    path = Path("/tmp/profile_sansa_users.npy")
    np.save(path, users)
    env = {**os.environ, "TOPREC_NO_TRACK": "1", "TOPREC_KERNELS": kernels, "TOPREC_WORKERS": str(workers)}
    p = subprocess.run([sys.executable, "-c", code, model_dir, str(path), str(k)], capture_output=True, text=True,
                       env=env)  # fmt: skip
    if p.returncode:
        raise SystemExit(p.stderr[-2000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a saved SANSA folder (written first with --fit)")
    ap.add_argument("--fit", default="", help="clustered:USERS:ITEMS:MEAN: fit and save to --model first")
    ap.add_argument("--params", default="density=0.001,factor_size=32")
    ap.add_argument("--users", type=int, default=20000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--skip-scipy", action="store_true", help="only the kernel end to end")
    ap.add_argument("--out", default="")
    ap.add_argument("--json", default="")
    ap.add_argument("--rewrite", action="store_true", help="only rewrite --out from the results in --json")
    a = ap.parse_args()
    if a.rewrite:
        write(a, json.loads(Path(a.json).read_text()))
        return
    if a.fit:
        fit(a.fit, a.params, a.model)
    from toprec import models, parallel

    m = models.load(a.model)
    users = np.sort(np.random.default_rng(0).choice(m.n_users, min(a.users, m.n_users), replace=False))
    n_all = m.n_users
    res: dict = {"model": a.model, "users": len(users), "all_users": n_all, "items": m.n_items,
                 "weights": int(m.similarity.nnz), "k": a.k, "workers": parallel.workers(),
                 "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
                 "cmd": "python benchmarks/profile_sansa_recommend.py " + " ".join(sys.argv[1:]),
                 "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                          cwd=HERE).stdout.strip()}  # fmt: skip
    if not a.skip_scipy:
        res["profile"] = stages(m, users, a.k)
        print(json.dumps(res["profile"]), flush=True)
    res["kernel_split"] = kernel_product_only(m, users)
    print(json.dumps(res["kernel_split"]), flush=True)
    runs = []
    for kern in (["numpy"] if not a.skip_scipy else []) + ["numba"]:
        for w in sorted({1, parallel.workers()}):
            r = end_to_end(a.model, users, a.k, kern, w)
            r.update({"path": "scipy (rank_sparse_block)" if kern == "numpy" else "compiled kernel", "workers": w})
            runs.append(r)
            print(json.dumps(r), flush=True)
    res["runs"] = runs
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    if a.out:
        write(a, res)


def write(a, res: dict) -> None:
    n, scale = res["users"], res["all_users"] / res["users"]
    lines = [f"# SANSA recommend: where the time goes ({res['all_users']:,} users x {res['items']:,} items)\n",
             f"Commit {res['commit']}; 2 cores shared with other jobs (load avg at start {res['load']}). "
             f"`{res['cmd']}`\n",
             f"{n:,} users drawn at random, k={res['k']}, {res['weights']:,} stored weights.\n"]  # fmt: skip
    p = res.get("profile")
    if p:
        tot = sum(v for name, v in p["stages"].items() if name != OLD_MAX)
        lines += [f"## The scipy path, stage by stage (one worker, batches of {p['batch_size']} users)\n",
                  f"{p['products'] / n:,.0f} products and {p['stored_scores'] / n:,.0f} stored scores a user; "
                  f"{p['redo_rows']:,} of {n:,} rows densified.\n",
                  "| stage | s | ms / user | share |", "|---|---|---|---|"]  # fmt: skip
        for name, s in sorted(p["stages"].items(), key=lambda kv: -kv[1]):
            share = f"{100 * s / tot:.0f}%" if name != OLD_MAX else f"({100 * s / (tot + s):.0f}% of the old total)"
            lines.append(f"| {name} | {s:.2f} | {1000 * s / n:.3f} | {share} |")
        lines += [f"| total | {tot:.2f} | {1000 * tot / n:.3f} | |", ""]
    ks = res.get("kernel_split")
    if ks:
        lines += ["## Inside the compiled kernel (one thread, medians of 3)\n",
                  "| part | s | ms / user | share |", "|---|---|---|---|",
                  f"| the product x_u B into the scratch row (and its reset) | {ks['product']:.2f} | "
                  f"{1000 * ks['product'] / n:.3f} | {100 * ks['product'] / ks['kernel']:.0f}% |",
                  f"| masking, gathering, top-k heap, the rest | {ks['kernel'] - ks['product']:.2f} | "
                  f"{1000 * (ks['kernel'] - ks['product']) / n:.3f} | "
                  f"{100 * (ks['kernel'] - ks['product']) / ks['kernel']:.0f}% |",
                  f"| the whole kernel | {ks['kernel']:.2f} | {1000 * ks['kernel'] / n:.3f} | |", ""]  # fmt: skip
    lines += ["## End to end (a fresh process; the kernel compiled before the clock)\n",
              "| path | workers / threads | s | ms / user | all users s (scaled) | lists = scipy's |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    ref = next((r for r in res["runs"] if r["path"].startswith("scipy")), None)
    for r in res["runs"]:
        same = "" if ref is None else ("yes" if (r["items"], r["scores"]) == (ref["items"], ref["scores"]) else "NO")
        lines.append(f"| {r['path']} | {r['workers']} | {r['seconds']:.2f} | {1000 * r['seconds'] / n:.3f} | "
                     f"{r['seconds'] * scale:.0f} | {same} |")  # fmt: skip
    Path(a.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
