#!/usr/bin/env python
"""S3Rec against SASRec on one split: recall@10 and its last-event / random parts, fit time, epochs.

    # one model, one dataset, one JSON row (run the two models side by side, one thread each)
    python benchmarks/bench_s3rec.py run --data ml-1m --model sasrec -p threads=1 --json /tmp/s3/ml1m_sasrec.json
    python benchmarks/bench_s3rec.py run --data ml-1m --model s3rec -p threads=1 --json /tmp/s3/ml1m_s3rec.json
    # the table (markdown on stdout, and --md / --json files) from the rows
    python benchmarks/bench_s3rec.py report /tmp/s3/*.json --md benchmarks/results/s3rec.md \
        --json benchmarks/results/s3rec.json
    # pre-training alone: its curve, and the loss of predicting attributes by their frequencies
    python benchmarks/bench_s3rec.py pretrain --data ml-1m -p pretrain_epochs=2 -p features=genres -p mip_weight=0 \
        -p map_weight=0 -p sp_weight=0 -p aap_weight=1 -p pretrain_lr=0.005 -p pretrain_batch_size=64

Data (the benchmark's own inputs; nothing a user needs depends on them):

* ``ml-1m``: MovieLens-1M ratings >= 4 (``ml-1m/derived/ml1m_ratings_ge4_with_time.csv.gz``) with the items'
  genres and release years from ``ml-1m/movies.dat`` as side information (built here, as
  ``bench_side.py`` does: the ML-1M folder has no side files in the competition layout).
* ``comp-sample``: the real competition users of ``boostcamp-movierec-2022`` whose file order is their
  time order (``prepare_competition_sample.py --ordered``: 1,190 users, time = position in the file) with
  the competition's genres, directors, writers and years.

Protocol: the test holdout is cut once (each user's last event + 9 random earlier ones, seed 0) and
scored once. Every choice is made on the training part: both models early-stop on the trainer's
validation holdout cut from it (each user's last training event, ``valid_random=0``: next-item recall,
as SASRec's measured ML-1M run); S3Rec pre-trains on the same training part (the validation cut's
training part during the search phase). Both models get the same fine-tuning settings.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from toprec import Dataset, metrics, models, split

HERE = Path(__file__).resolve().parent
#: the benchmark data: ../shared/data beside the checkout, else /work/shared/data
SHARED = next((p for p in (HERE.parents[1] / "shared" / "data", Path("/work/shared/data")) if p.exists()),
              HERE.parents[1] / "shared" / "data")
#: settings shared by both models unless -p overrides them (the sasrec defaults of the ML-1M run, max_len capped)
COMMON = {"max_len": 50, "epochs": 30, "patience": 3, "device": "cpu", "score_dtype": "float32"}


def load(name: str, shared: Path) -> Dataset:
    sys.path.insert(0, str(HERE))
    if name == "ml-1m":
        import bench_side

        bench_side.SHARED = shared
        return bench_side.ml1m()[0]
    if name == "comp-sample":
        import prepare_competition_sample as prep

        src = shared / "boostcamp-movierec-2022" / "partial_sample_pro_sg"
        with tempfile.TemporaryDirectory() as tmp:
            events = prep.read_sample(src, ordered=True)
            events["time"] = events.groupby("user").cumcount()
            prep.write_folder(events, src.parent, Path(tmp) / "sample")
            return Dataset.load(Path(tmp) / "sample", cache=False)
    raise SystemExit(f"unknown --data {name!r} (ml-1m, comp-sample)")


def value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def run(args) -> None:
    data = load(args.data, Path(args.shared))
    train, test = split.competition(data, last=1, random=9, seed=0)
    params = dict(COMMON)
    params.update({k: value(v) for k, v in (pair.split("=", 1) for pair in args.param)})
    if args.model == "sasrec":
        params = {k: v for k, v in params.items() if k in models.get_class("sasrec").Params.model_fields}
    model = models.get(args.model, **params)

    def show(epoch, logs):
        print(f"{args.model} epoch {epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in logs.items()), file=sys.stderr,
              flush=True)  # fmt: skip

    t0 = time.perf_counter()
    model.fit(train, callback=show)
    fit_s = time.perf_counter() - t0
    recs = model.recommend(test.users, k=10)
    res = metrics.evaluate(recs, test, ["recall@10", "ndcg@10"])
    for part in ("last", "random"):
        res[f"recall_{part}@10"] = metrics.evaluate(recs, test, ["recall@10"], part=part)["recall@10"]
    pre = getattr(model, "pretrain_history", [])
    row = {
        "data": args.data, "model": args.model, "label": args.label or args.model, "params": params,
        "data_stats": {"users": data.n_users, "items": data.n_items, "events": data.n_events,
                       "features": sorted(data.features)},
        "fit_s": round(fit_s, 1), "best_epoch": model.best_epoch, "epochs_run": len(model.history),
        "val_recall_last@10": round(model.best_metric, 4),
        "s_per_epoch": round(statistics.median(h["seconds"] for h in model.history), 1),
        "pretrain_epochs": len(pre), "pretrain_s": round(sum(h["seconds"] for h in pre), 1),
        "pretrain_curve": [{k: round(v, 4) for k, v in h.items()} for h in pre],
        "attributes": getattr(model, "attributes_", []),
        "val_curve": [round(h["recall@10"], 4) for h in model.history],
        **{k: round(v, 4) for k, v in res.items()},
        "machine": f"{platform.node()} (2 cores shared with other jobs)",
    }  # fmt: skip
    print(json.dumps(row, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(row, indent=1) + "\n")


def pretrain(args) -> None:
    """Pre-training only (no fine-tuning), on the test cut's training part: the curve, and the loss of
    predicting every item's attributes by their frequencies (what AAP / MAP reach without item-specific learning)."""
    import numpy as np
    import scipy.sparse as sp
    import torch

    from toprec.models.ease import side_rows

    data = load(args.data, Path(args.shared))
    train, _ = split.competition(data, last=1, random=9, seed=0)
    params = {"max_len": COMMON["max_len"], **{k: value(v) for k, v in (pair.split("=", 1) for pair in args.param)}}
    model = models.get("s3rec", **params)
    S, names = side_rows(train, model.params.features, 1.0, "none")
    w = np.asarray(train.item_counts, dtype=np.float64)
    p = np.clip((w / w.sum()) @ (sp.csr_matrix(S.T).toarray() > 0), 1e-12, 1 - 1e-12)
    prior = float(-(p * np.log(p) + (1 - p) * np.log(1 - p)).sum())
    print(f"{args.data}: attributes {', '.join(names)} ({S.shape[0]} values); "
          f"AAP/MAP loss of the frequencies: {prior:.4f}")
    torch.set_num_threads(int(params.get("threads", 1)) or 1)
    model.n_users, model.n_items = train.matrix.shape
    model.device_ = "cpu"
    model._prepare(train.matrix, train)
    torch.manual_seed(model.params.seed)
    model._build_module()  # pre-trains (the trainer's phase set-up, without the fine-tuning)
    for epoch, h in enumerate(model.pretrain_history, 1):
        print(f"pretrain epoch {epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in h.items()))


def report(args) -> None:
    rows = [json.loads(Path(f).read_text()) for f in args.rows]
    rows.sort(key=lambda r: (r["data"] != "ml-1m", r["data"], r["params"].get("patience", 0), r["model"] != "sasrec"))
    lines = [
        "| data | model | settings (besides the common ones) | pre-train epochs (s) | fine-tune best / run | "
        "val recall last | test recall@10 | "
        "**recall last** | recall random | ndcg@10 | fit s | s/epoch |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        pre = f"{r['pretrain_epochs']} ({r['pretrain_s']:.0f})" if r["pretrain_epochs"] else "-"
        extra = ", ".join(f"{k}={v}" for k, v in r["params"].items() if COMMON.get(k) != v and k != "threads")
        lines.append(f"| {r['data']} | {r.get('label', r['model'])} | {extra or '-'} | {pre} | "
                     f"{r['best_epoch']} / {r['epochs_run']} | "
                     f"{r['val_recall_last@10']:.4f} | {r['recall@10']:.4f} | **{r['recall_last@10']:.4f}** | "
                     f"{r['recall_random@10']:.4f} | {r['ndcg@10']:.4f} | {r['fit_s']:.0f} | "
                     f"{r['s_per_epoch']:.1f} |")  # fmt: skip
    table = "\n".join(lines)
    print(table)
    if args.md:
        text = Path(args.md).read_text() if Path(args.md).exists() else ""
        start, end = "<!-- table -->", "<!-- /table -->"
        if start in text and end in text:
            text = text[: text.index(start) + len(start)] + "\n" + table + "\n" + text[text.index(end) :]
        else:
            text = text + f"\n{start}\n{table}\n{end}\n"
        Path(args.md).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--data", default="ml-1m")
    r.add_argument("--model", default="s3rec")
    r.add_argument("-p", "--param", action="append", default=[], help="NAME=VALUE (both models unless s3rec-only)")
    r.add_argument("--json", default=None)
    r.add_argument("--label", default=None, help="the row's name in the table (default: the model)")
    r.add_argument("--shared", default=str(SHARED), help="the shared data folder (default: %(default)s)")
    d = sub.add_parser("pretrain", help="pre-training curve only, and the attributes' frequency loss")
    d.add_argument("--data", default="ml-1m")
    d.add_argument("-p", "--param", action="append", default=[])
    d.add_argument("--shared", default=str(SHARED))
    t = sub.add_parser("report")
    t.add_argument("rows", nargs="+")
    t.add_argument("--md", default=None)
    t.add_argument("--json", default=None)
    args = ap.parse_args()
    {"run": run, "pretrain": pretrain, "report": report}[args.cmd](args)


if __name__ == "__main__":
    main()
