#!/usr/bin/env python
"""SASRec on the CPU: random batches against batches of similar history lengths (``length_batches``).

    python benchmarks/bench_sasrec_batches.py speed
    python benchmarks/bench_sasrec_batches.py quality --seconds 420
    python benchmarks/bench_sasrec_batches.py quality --seconds 420 --variants "length batches,shared softmax 1024"

Data: MovieLens-1M ratings >= 4, bench_auto's test cut (seed 0, last 1 + random
9) is dropped unread; a validation holdout is cut the same way from the
training part (seed 100), and everything here is fitted on the rest and
scored on that validation holdout only.

speed: per-batch seconds of the first 40 training batches (forward; backward
and Adam step), the extrapolated epoch and the share of positions that are
padding; torch on ``--threads`` threads.

quality: each variant trains with the model's defaults (epochs up to 100,
patience 3, early stopping on its own next-item validation cut) inside a
fixed wall-clock deadline (``toprec.train.deadline``, as auto time-boxes
SASRec on a CPU), both variants at once, one torch thread each (the 2-core
machine shared equally); recall@10 on the validation holdout, and on its
last-event and random parts.

Data: ../shared/data (the benchmark's own inputs; nothing a user needs depends on them).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

VARIANTS = {"random batches": {"length_batches": False}, "length batches": {"length_batches": True},
            # session 17: one set of distinct negatives shared by the batch instead of the full softmax (~1.8x / ~2.2x
            # faster steps on ML-1M at 1,024 / 512 of its 3,533 items)
            "shared softmax 1024": {"loss": "shared_softmax", "n_negatives": 1024},
            "shared softmax 512": {"loss": "shared_softmax", "n_negatives": 512},
            # session 18: shorter sequences (attention ~L^2, the softmax over the items for every position ~L) and
            # a higher learning rate: more of a CPU time box's epochs
            "max_len 50": {"max_len": 50}, "max_len 100": {"max_len": 100}, "lr 5e-3": {"lr": 5e-3}}
DEFAULT_VARIANTS = ["random batches", "length batches"]


def _data():
    from bench_auto import LOADERS
    from toprec import split

    data, last, random = LOADERS["ml-1m"](0)
    train, _test = split.competition(data, last=last, random=random, seed=0)  # the test part is never read
    return split.competition(train, last=last, random=random, seed=100)


def speed(threads: int, names: list[str]) -> None:
    import torch

    from toprec import models

    torch.set_num_threads(threads)
    fit_part, _ = _data()
    print(f"| batches | batches / epoch | forward ms | backward + step ms | epoch s (extrapolated) | padding |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name in names:
        m = models.get("sasrec", seed=0, **VARIANTS[name])
        m.n_items, m.device_ = fit_part.n_items, "cpu"
        m._prepare(fit_part.matrix, fit_part)
        module = m._build_module()
        opt = torch.optim.Adam(module.parameters(), lr=m.params.lr)
        batches = list(m._batches(module, torch.Generator().manual_seed(0)))
        fwd = bwd = 0.0
        pos = real = 0
        for (seq,) in batches[:40]:
            t0 = time.perf_counter()
            loss = m._loss(module, (seq,), 0)
            t1 = time.perf_counter()
            opt.zero_grad()
            loss.backward()
            opt.step()
            fwd, bwd = fwd + t1 - t0, bwd + time.perf_counter() - t1
            pos, real = pos + seq.numel(), real + int((seq > 0).sum())
        n = min(40, len(batches))
        print(f"| {name} | {len(batches)} | {fwd / n * 1e3:.0f} | {bwd / n * 1e3:.0f} | "
              f"{(fwd + bwd) / n * len(batches):.0f} | {1 - real / pos:.0%} |", flush=True)  # fmt: skip


def one(name: str, seconds: float) -> dict:
    """Fit one variant inside the deadline, score the validation holdout (run in its own process)."""
    from toprec import metrics, models, progress
    from toprec.train import deadline

    progress.set_quiet(True)
    fit_part, val = _data()
    model = models.get("sasrec", epochs=100, patience=3, threads=1, seed=0, **VARIANTS[name])
    t0 = time.perf_counter()
    with deadline(seconds):
        model.fit(fit_part)
    res = {"variant": name, "fit_s": time.perf_counter() - t0, "epochs": len(model.history),
           "best_epoch": model.best_epoch}  # fmt: skip
    users = val.users
    recs = model.recommend(users, k=10)
    res["recall@10"] = float(metrics.per_user("recall@10", recs.items, val.matrix[users]).mean())
    for part, mat in val.parts.items():
        rows = mat[users]
        n = np.asarray(rows.sum(1)).ravel()
        hit = np.take_along_axis(np.asarray(rows.todense()), recs.items, 1).sum(1)
        res[part] = float((hit[n > 0] / n[n > 0]).mean())
    return res


def quality(seconds: float, json_out: Path | None, names: list[str]) -> None:
    procs = [subprocess.Popen([sys.executable, __file__, "_one", name, str(seconds)], stdout=subprocess.PIPE,
                              text=True) for name in names]  # fmt: skip
    rows = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    print(f"ML-1M ratings >= 4, validation holdout (seed 100) of bench_auto's training part; {seconds:g} s each\n")
    print("| variant | epochs run | best epoch | fit s | recall@10 | last event | random part |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['variant']} | {r['epochs']} | {r['best_epoch']} | {r['fit_s']:.0f} | {r['recall@10']:.4f} | "
              f"{r.get('last', float('nan')):.4f} | {r.get('random', float('nan')):.4f} |")  # fmt: skip
    if json_out:
        json_out.write_text(json.dumps(rows, indent=1))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_one":
        print(json.dumps(one(sys.argv[2], float(sys.argv[3]))), flush=True)
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["speed", "quality"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=420.0, help="quality: each variant's training deadline")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                    help=f"comma-separated (quality, runs them at once, one thread each): {', '.join(VARIANTS)}")
    args = ap.parse_args()
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        ap.error(f"--variants: unknown '{unknown[0]}'")
    speed(args.threads, names) if args.mode == "speed" else quality(args.seconds, args.json, names)


if __name__ == "__main__":
    main()
