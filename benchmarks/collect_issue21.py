"""Issue 21's acceptance table: every new model next to EASE, SASRec and Multi-VAE, from the benchmarks' JSONs.

    python benchmarks/collect_issue21.py            # prints the table, writes benchmarks/results/models_issue21.md/.json

Nothing is fitted here: each row is read from a JSON a benchmark command wrote (the row's ``source``).
Inputs (benchmarks/results/):

* ``side_models_ml1m.json`` / ``side_models_comp-sample.json`` (``bench_side_models.py``): EASE, Multi-EASE,
  VASP, Multi-CDAE, Multi-VAE and the EASE x Multi-VAE product fusion; its EASE is each dataset's reference.
* ``fm_quality_ml-1m.json`` / ``fm_quality_comp-sample.json`` (``bench_fm.py quality``): fm, logistic-fm,
  deepfm with BPR / BCE / focal; ``fm_focal_vs_bpr_*.json`` (``bench_fm.py quality --rows ...tuned``) if present.
* ``fm_speed_synth.json`` (``bench_fm.py speed``): cfm's extrapolated epoch and ranking time (no quality row).
* ``s3rec.json`` (``bench_s3rec.py``): SASRec and S3Rec; ``sequential_quality_ml-1m_sasrec_converged.json``.

Split check: a row is on "the same split" when its loader and test cut are the side-models run's (same data
filter, test seed 0, same holdout shape). bench_fm.py loads ml-1m / comp-sample with the same code and seed;
bench_s3rec.py's ml-1m loader is bench_side.ml1m (the same code again) and bench_sequential.py's table loader
gives the same users, items and test matrix (checked: 0 differing entries); bench_s3rec.py's comp-sample is a
different dataset (1,190 users in file order, last 1 + random 9), marked so. Where the source's own EASE row has
exactly the reference EASE's test recall (same l2, same split), its paired standard error is quoted; where the
source saved no per-user recalls (s3rec.json, sequential), only the difference is given.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
FM_CMD = {"ml-1m": "python benchmarks/bench_fm.py quality --dataset ml-1m --max-epochs 10",
          "comp-sample": "python benchmarks/bench_fm.py quality --dataset comp-sample --max-epochs 15"}  # fmt: skip
S3_CMD = {  # s3rec.md's commands, by (data, label, patience)
    ("ml-1m", "sasrec", 3): "python benchmarks/bench_s3rec.py run --data ml-1m --model sasrec -p threads=1",
    ("ml-1m", "s3rec", 3): "python benchmarks/bench_s3rec.py run --data ml-1m --model s3rec -p threads=1",
    ("ml-1m", "s3rec, run 2", 3): "python benchmarks/bench_s3rec.py run --data ml-1m --model s3rec -p threads=1 "
    "-p features=genres -p aap_weight=1.0 -p map_weight=0.2 -p pretrain_lr=0.005 -p pretrain_batch_size=64 "
    "-p pretrain_epochs=5 --label 's3rec, run 2'",
    ("comp-sample", "sasrec", 3): "python benchmarks/bench_s3rec.py run --data comp-sample --model sasrec -p threads=1",
    ("comp-sample", "s3rec", 3): "python benchmarks/bench_s3rec.py run --data comp-sample --model s3rec -p threads=1 "
    "-p pretrain_epochs=20 -p pretrain_batch_size=32 -p pretrain_lr=0.002",
    ("comp-sample", "sasrec", 8): "python benchmarks/bench_s3rec.py run --data comp-sample --model sasrec -p threads=1 "
    "-p patience=8 -p epochs=20",
    ("comp-sample", "s3rec", 8): "python benchmarks/bench_s3rec.py run --data comp-sample --model s3rec -p threads=1 "
    "-p patience=8 -p epochs=20 -p pretrain_epochs=10 -p pretrain_batch_size=32 -p pretrain_lr=0.002",
}
SPLIT = {"ml-1m": "same", "comp-sample": "same"}
OTHER_SPLIT = "other: 1,190 users in file order, last 1 + random 9"
NEW = {"multi-ease", "vasp", "multi-cdae (cdae loss=multinomial)", "multi-cdae", "fm bpr", "fm focal",
       "logistic-fm (bce)", "deepfm bpr", "deepfm focal", "s3rec", "s3rec, run 2", "cfm"}  # fmt: skip


def _read(name: str):
    p = RESULTS / name
    return json.loads(p.read_text()) if p.exists() else None


def _num(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def collect() -> dict:
    out = {}
    for ds in ("ml-1m", "comp-sample"):
        rows: list[dict] = []
        side = _read("side_models_ml1m.json" if ds == "ml-1m" else f"side_models_{ds}.json")
        ease = None
        if side:
            for r in side["rows"]:
                rows.append({"model": r["model"], "recall@10": r["recall@10"], "last": _num(r.get("recall_last@10")),
                             "random": _num(r.get("recall_random@10")), "fit_s": _num(r.get("fit_s")),
                             "params": r["params"], "epochs": r.get("epochs", ""),
                             "vs_ease": r["recall@10"] - side["rows"][0]["recall@10"], "vs_ease_se": r["se_vs_ease"],
                             "split": SPLIT[ds], "source": side["command"]})  # fmt: skip
            ease = side["rows"][0]["recall@10"]
        for fm_file in (f"fm_quality_{ds}.json", f"fm_focal_vs_bpr_{ds}.json"):
            fm = _read(fm_file)
            if not fm:
                continue
            fm_ease = next(r["recall@10"] for r in fm["rows"] if r["row"] == "ease")
            for r in fm["rows"]:
                if r["row"] == "ease":
                    continue
                same_ease = ease is not None and abs(fm_ease - ease) < 1e-12
                rows.append({"model": r["row"], "recall@10": r["recall@10"], "last": _num(r.get("recall_last@10")),
                             "random": _num(r.get("recall_random@10")), "fit_s": r["fit_s"], "params": r["params"],
                             "epochs": r.get("epochs", ""),
                             "vs_ease": r["recall@10"] - (ease if ease is not None else fm_ease),
                             "vs_ease_se": r.get("vs_ease_se") if same_ease else float("nan"),
                             "split": SPLIT[ds], "source": fm.get("command", FM_CMD[ds])})  # fmt: skip
        speed = _read("fm_speed_synth.json")
        cfm = next((r for r in (speed or {}).get("rows", []) if r["model"] == "cfm"), None)
        if cfm:
            rows.append({"model": "cfm", "recall@10": float("nan"), "last": float("nan"), "random": float("nan"),
                         "fit_s": float("nan"), "params": cfm["params"], "epochs": "", "vs_ease": float("nan"),
                         "vs_ease_se": float("nan"), "split": "not run",
                         "note": f"cannot rank a full catalogue in time: at competition scale one epoch "
                                 f"{cfm['epoch_s']:,.0f} s and ranking every user {cfm['recommend_all_s']:,.0f} s "
                                 f"({cfm['note']})",
                         "source": "python benchmarks/bench_fm.py speed --data /tmp/synth --threads 1"})  # fmt: skip
        for r in _read("s3rec.json") or []:
            if r["data"] != ds:
                continue
            label = r.get("label") or r["model"]
            key = (ds, label, int(r["params"].get("patience", 3)))
            same = ds == "ml-1m"
            rows.append({"model": label + (f" (patience {key[2]})" if ds != "ml-1m" else ""),
                         "recall@10": r["recall@10"], "last": r["recall_last@10"], "random": r["recall_random@10"],
                         "fit_s": r["fit_s"], "epochs": r["best_epoch"],
                         "params": {k: v for k, v in r["params"].items() if k not in ("device", "threads")},
                         "vs_ease": r["recall@10"] - ease if (same and ease is not None) else float("nan"),
                         "vs_ease_se": float("nan"), "split": "same" if same else OTHER_SPLIT,
                         "source": S3_CMD.get(key, "bench_s3rec.py (s3rec.md)")})  # fmt: skip
        if ds == "ml-1m":
            conv = _read("sequential_quality_ml-1m_sasrec_converged.json")
            if conv:
                r = next(x for x in conv["rows"] if x["model"] == "sasrec")
                rows.append({"model": "sasrec, converged (max_len 200)", "recall@10": r["recall@10"],
                             "last": r["recall_last@10"], "random": r["recall_random@10"], "fit_s": 3645.0,
                             "epochs": 37, "params": {"epochs": 60, "patience": 5},
                             "vs_ease": r["recall@10"] - ease if ease is not None else float("nan"),
                             "vs_ease_se": float("nan"), "split": "same",
                             "source": "benchmarks/bench_ensemble_quality.py (fits it) + " + conv["command"]})  # fmt: skip
        out[ds] = {"ease": ease, "rows": rows, "side_models": bool(side)}
    return out


def fmt(x, spec=".4f") -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def table(res: dict) -> str:
    lines = ["# Issue 21: the new models next to EASE, SASRec and Multi-VAE", "",
             "Written by `python benchmarks/collect_issue21.py` from the JSONs in this folder (each row's source "
             "command is in the last column). recall@10 on the test holdout, cut once with seed 0 and scored once; "
             "every choice was made on a validation holdout cut from the training part. `vs EASE`: the row's recall "
             "minus the EASE row's, with the paired standard error over the test users where the source saved "
             "per-user recalls against the same EASE. Fit seconds: the final fit, on a 2-core CPU shared with other "
             "workers' jobs (load average 2-15), so indicative only.", ""]  # fmt: skip
    titles = {"ml-1m": "ML-1M ratings >= 4 (6,038 users x 3,533 items; test = last event + 9 random earlier ones)",
              "comp-sample": "Competition sample (1,645 users x 6,590 items, side files; no timestamps: test = "
                             "10 random events per user, so no last-event part)"}  # fmt: skip
    for ds, d in res.items():
        if ds not in titles:
            continue
        lines += [f"## {titles[ds]}", ""]
        if not d["side_models"]:
            lines += ["(bench_side_models.py has not been run on this dataset yet: no EASE reference row.)", ""]
        lines += ["| model | split | recall@10 | last | random | vs EASE (paired se) | fit s | epochs | chosen / settings | source |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]  # fmt: skip
        for r in d["rows"]:
            vs = "–"
            if not math.isnan(_num(r["vs_ease"])) and r["model"] != "ease":
                pct = 100 * r["vs_ease"] / d["ease"] if d["ease"] else float("nan")
                se = r["vs_ease_se"]
                vs = f"{pct:+.1f}% ({r['vs_ease']:+.4f}" + (f" ± {se:.4f})" if not math.isnan(_num(se)) else ")")
            params = ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "defaults"
            name = f"**{r['model']}**" if r["model"] in NEW else r["model"]
            note = f" {r['note']}" if r.get("note") else ""
            lines.append(f"| {name} | {r['split']} | {fmt(r['recall@10'])} | {fmt(r['last'])} | {fmt(r['random'])} | "
                         f"{vs} | {fmt(_num(r['fit_s']), '.0f')} | {r['epochs']} | {params}{note} | `{r['source']}` |")  # fmt: skip
        lines.append("")
    return "\n".join(lines)


def _row(res: dict, ds: str, model: str):
    return next((r for r in res.get(ds, {}).get("rows", []) if r["model"] == model), None)


def targets(res: dict) -> tuple[str, list[dict]]:
    """The issue's acceptance targets, each checked from the rows above (met / not met, with the numbers)."""
    out = []
    v, mv = _row(res, "ml-1m", "vasp"), _row(res, "ml-1m", "multivae")
    e = res["ml-1m"]["ease"]
    if v and mv and e:
        met = v["recall@10"] >= mv["recall@10"] and v["recall@10"] >= 0.98 * e
        out.append({"target": "VASP (joint) >= Multi-VAE and within 2% of EASE or above it (ML-1M)", "met": met,
                    "numbers": f"vasp {v['recall@10']:.4f} vs multivae {mv['recall@10']:.4f}; vs EASE {e:.4f}: "
                               f"{100 * (v['recall@10'] / e - 1):+.1f}% ({v['vs_ease']:+.4f} ± {v['vs_ease_se']:.4f})"})  # fmt: skip
    pairs = []
    for ds, name in (("ml-1m", "fm_quality_ml-1m.json"), ("comp-sample", "fm_quality_comp-sample.json"),
                     ("ml-1m", "fm_focal_vs_bpr_ml-1m.json"), ("ml-100k", "fm_focal_vs_bpr_ml-100k.json"),
                     ("comp-sample", "fm_focal_vs_bpr_comp-sample.json"),
                     ("ml-100k (12-epoch cap)", "fm_focal_vs_bpr_ml-100k_cap12.json")):  # fmt: skip
        d = _read(name)
        for r in (d or {}).get("rows", []):
            if "focal" in r["row"] and "vs_bpr" in r:
                ref = next(x for x in d["rows"] if x["row"] == ("fm bpr (tuned)" if "tuned" in r["row"]
                                                                else r["row"].split()[0] + " bpr"))  # fmt: skip
                pairs.append((r["row"], f"{ds} {r['row']} {r['recall@10']:.4f} vs {ref['row']} {ref['recall@10']:.4f} "
                              f"({r['vs_bpr']:+.4f} ± {r['vs_bpr_se']:.4f}; `{d.get('command', FM_CMD.get(ds, name))}`)"))
    if pairs:
        # the issue's check is the tuned, same-budget comparison; the multi-class focal loss is judged on its own
        multi = [text for row, text in pairs if "softmax-focal" in row]
        binary = [text for row, text in pairs if "softmax-focal" not in row]
        wins = [text for _, text in pairs if " (+" in text]
        met = (bool(multi) and all(" (+" in p for p in multi)) or ("partly" if wins else False)
        numbers = ("multi-class focal (`loss=softmax-focal`), tuned: " + "; ".join(multi) + ". " if multi else "")
        out.append({"target": "FM-family with focal loss beats the same model with BPR on recall@10", "met": met,
                    "numbers": numbers + "Binary focal (the CTR form): " + "; ".join(binary)})  # fmt: skip
    s3, sa = _row(res, "ml-1m", "s3rec"), _row(res, "ml-1m", "sasrec")
    if s3 and sa:
        out.append({"target": "S3Rec's last-event recall >= SASRec's (ML-1M)", "met": s3["last"] >= sa["last"],
                    "numbers": f"s3rec {s3['last']:.4f} vs sasrec {sa['last']:.4f} (same settings, max_len 50; "
                               f"s3rec run 2: {_row(res, 'ml-1m', 's3rec, run 2')['last']:.4f}); the reason is in s3rec.md"})  # fmt: skip
    lines = ["## Targets", ""] + [f"- **{'partly met' if t['met'] == 'partly' else 'met' if t['met'] else 'not met'}**: {t['target']}: {t['numbers']}" for t in out]
    return "\n".join(lines) + "\n", out


NOTES = """## Notes

- **Splits.** Every "same" row uses one test holdout per dataset (loader, filter, seed 0 and shape checked; see this
  script's docstring). Validation cuts differ by source (bench_side_models.py: seed 0; bench_fm.py: seed 100;
  bench_s3rec.py / sequential: the trainer's last-event holdout), which only changes what each source chose.
  On the competition sample EASE's validation choice differs between sources (l2=300 here, 500 in bench_fm.py),
  so the FM rows there show the difference to this table's EASE without a paired se; fm.md gives theirs against
  their own EASE. The sample's S3Rec/SASRec rows are on a *different* split (bench_s3rec.py keeps file order for
  the sequence models: 1,190 users, last 1 + random 9) and are not comparable with the other rows there.
- **VASP.** The row is the jointly trained model (both paths trained together, focal loss). Candidates on validation
  (ML-1M, `side_models_ml1m.txt`): from zero with input dropout 0.25 (the paper's start; the best from-zero setting
  on ML-100K) 0.1413; shallow path started at EASE's closed form (shallow_lr 1e-6) 0.1529, chosen; the same with
  dropout 0.25 0.1524; EASE 0.1541. Competition sample (`side_models_comp-sample.txt`): from zero 0.1381, from
  EASE 0.1495 (chosen), with dropout 0.25 0.1493; EASE 0.1492. The chosen model peaks after 3 epochs (ML-1M) and
  1 epoch (sample): VASP here is EASE plus a little of the VAE, so its test recall sits just below EASE's
  (-1.0%, -0.8%). Trained from zero it stayed 8-10% below EASE on validation within the epochs this CPU allowed.
- **Focal vs BPR, same budget.** `bench_fm.py quality --rows "fm bpr (tuned),fm focal (tuned),fm softmax-focal
  (tuned),fm softmax (tuned)"`: four validation-chosen candidates per row (BPR: lr / weight_decay / 16 or 64
  negatives; binary focal: gamma / alpha / negatives; softmax-focal: gamma 0.5-2 / 16 or 64 negatives; softmax:
  lr / negatives), the same epoch cap, refit on the training part, test once. The multi-class focal loss over
  the positive and its sampled negatives (-(1-p)^gamma log p, `loss=softmax-focal`) beats BPR on all three sets:
  ML-1M 0.1829 vs 0.1746 (+0.0084 ± 0.0010), ML-100K 0.2485 vs 0.2292 (+0.0193 ± 0.0029), the competition
  sample 0.1619 vs 0.1512 (+0.0106 ± 0.0019); it is also ahead on validation (0.1518 vs 0.1475; 0.2074 vs
  0.2001; 0.1452 vs 0.1357). The gain is the list-wise softmax's: plain sampled softmax scores the same or
  better (ML-1M 0.1842, focal - softmax -0.0012 ± 0.0008; ML-100K 0.2488, -0.0003 ± 0.0009; sample 0.1671,
  -0.0052 ± 0.0019). The binary focal loss (BCE-style, the CTR form) loses to BPR on ML-1M (0.1630, -0.0115 ±
  0.0011) and wins on ML-100K's test (0.2348, +0.0056 ± 0.0028) while behind on its validation. Its gamma 0.5
  refit diverged to NaN before the fix in `losses.focal` (log-form factor: the plain power's gradient is
  infinite at p_t = 1 for gamma < 1). Earlier untuned rows (fm.md) have BPR ahead of binary focal.
- **Multi-VAE** here is the toprec default (no hidden layer), early-stopped on the same validation cut.
- **cfm** has no quality row: its CNN runs on every (user, item) pair, so ranking a whole catalogue is
  impractical on this hardware (fm_speed_synth.json).
- **S3Rec** ties SASRec on the last event at the same settings (0.1953 vs 0.1955, se ~0.005 each): its
  pre-training here is ~100x shorter than the authors' and its attribute objectives learned only the
  attributes' frequencies (s3rec.md, "Why the pre-training did not carry further").
"""


def main() -> None:
    res = collect()
    ttext, res["targets"] = targets(res)
    text = table(res) + "\n" + ttext + "\n" + NOTES
    print(text)
    (RESULTS / "models_issue21.md").write_text(text + "\n")
    (RESULTS / "models_issue21.json").write_text(json.dumps(res, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
