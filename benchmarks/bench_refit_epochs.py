#!/usr/bin/env python
"""How auto fits a tuned epoch-trained member again: early stopping on a holdout, or its best epoch count.

    python benchmarks/bench_refit_epochs.py --datasets ml-100k,ml-latest-small --seeds 0 \\
        --models multivae,recvae,sasrec [--cap 16] [--json out.json]

`toprec auto` tunes Multi-VAE, RecVAE and SASRec with early stopping on the model's own validation holdout
(each user's last event + random earlier ones cut from the training data). It then fits each tuned member
again: on the extra validation cuts of small data and in the final refit on all the data. This compares two
ways to do that, on a validation cut of each dataset (the test part of the split is cut and never used):

* ``early``: the trial's settings again, so the fit cuts its own holdout and stops early on it;
* ``fixed``: the best validated epoch count of ``early``, on all of the cut's training data, no holdout
  (what auto does since session 20).

Recall@10 on the validation cut's holdout, by part, and the fit's seconds. ``--cap``: the epochs cap of every
model (auto's CPU time box stopped SASRec at 15-16 epochs on ML-1M). One thread per process.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main() -> None:
    import bench_auto

    from toprec import metrics, models, split
    from toprec.auto.plan import candidates
    from toprec.auto.profile import profile
    from toprec.auto.tuning import NO_HOLDOUT

    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="ml-100k,ml-latest-small")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--models", default="multivae,recvae,sasrec")
    ap.add_argument("--cap", type=int, default=0, help="epochs cap of every model (0: the model's default)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--quiet", action="store_true", help="no progress lines (the rows still go to stderr)")
    a = ap.parse_args()
    if a.quiet:
        from toprec import progress

        progress.set_quiet(True)
    rows = []
    for name in a.datasets.split(","):
        data, last, rnd = bench_auto.LOADERS[name]()
        for seed in (int(x) for x in a.seeds.split(",")):
            train, _test = split.competition(data, last=last, random=rnd, seed=seed)  # the test is never used
            tr, val = split.competition(train, last=last, random=rnd, seed=seed + 100)
            users = val.users

            def score(model) -> dict[str, float]:
                top = model.recommend(users, k=10).items
                out = {"recall@10": float(metrics.per_user("recall@10", top, val.matrix[users]).mean())}
                for part, M in val.parts.items():
                    out[part] = float(metrics.per_user("recall@10", top, M[users]).mean())
                return out

            fixed = {c.name: c.fixed for c in candidates(profile(data, last, rnd))}  # auto's fixed settings
            for m in a.models.split(","):
                base = {"threads": 1, "seed": 0, **fixed.get(m, {}), **({"epochs": a.cap} if a.cap else {})}
                t0 = time.perf_counter()
                early = models.get(m, **base).fit(tr)
                early_s = time.perf_counter() - t0
                best = max(1, int(early.best_epoch))
                t0 = time.perf_counter()
                fixed = models.get(m, **{**base, "epochs": best, **NO_HOLDOUT}).fit(tr)
                fixed_s = time.perf_counter() - t0
                row = {"dataset": name, "seed": seed, "model": m, "epochs_run": len(early.history),
                       "best_epoch": best, "early_s": early_s, "fixed_s": fixed_s,
                       "early": score(early), "fixed": score(fixed)}  # fmt: skip
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    print("| data | seed | model | early: epochs (best) | s | recall@10 | fixed: epochs | s | recall@10 | gain |"
          " last (early -> fixed) |")  # fmt: skip
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        e, f = r["early"], r["fixed"]
        lastp = f"{e['last']:.4f} -> {f['last']:.4f}" if "last" in e else "-"
        print(f"| {r['dataset']} | {r['seed']} | {r['model']} | {r['epochs_run']} ({r['best_epoch']}) | "
              f"{r['early_s']:.0f} | {e['recall@10']:.4f} | {r['best_epoch']} | {r['fixed_s']:.0f} | "
              f"{f['recall@10']:.4f} | {f['recall@10'] - e['recall@10']:+.4f} | {lastp} |")  # fmt: skip
    if a.json:
        Path(a.json).write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
