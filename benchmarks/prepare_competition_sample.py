#!/usr/bin/env python
"""The real competition-user sample as one interaction table (benchmarks only).

    python benchmarks/prepare_competition_sample.py --out /tmp/compsample.csv

``../shared/data/boostcamp-movierec-2022/partial_sample_pro_sg`` holds 272,233
real interactions of 1,645 users of the movie competition (31,360 x 6,807 in
full), in the VAE-CF "pro_sg" form: several files whose user sets do not
overlap, items as indices into ``unique_sid.txt`` (the competition's own item
ids). There are no timestamps, so the holdout is ``--last 0 --random 10``.
This script only concatenates the files and maps the item indices back to the
competition ids; it writes ``user,item``.

    toprec align    --data /tmp/compsample.csv --user-col user --item-col item --last 0 --random 10 \
                    --models popularity,itemknn,rp3beta,ease,edlae,easer,ials,bpr
    toprec ensemble --data /tmp/compsample.csv --user-col user --item-col item --last 0 --random 10 \
                    --members ease,easer,ials,rp3beta,itemknn,bpr --method rank --search both --output ens.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DEFAULT = HERE.parent.parent / "shared" / "data" / "boostcamp-movierec-2022" / "partial_sample_pro_sg"
FILES = ["train.csv", "validation_tr.csv", "validation_te.csv", "test_tr_1.csv", "test_te_1.csv"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=DEFAULT)
    ap.add_argument("--out", type=Path, default=Path("/tmp/compsample.csv"))
    args = ap.parse_args()
    sid = np.array([line.strip() for line in (args.src / "unique_sid.txt").read_text().splitlines() if line.strip()])
    frames = [pd.read_csv(args.src / name) for name in FILES]
    events = pd.concat(frames, ignore_index=True)
    out = pd.DataFrame({"user": events["uid"].to_numpy(), "item": sid[events["sid"].to_numpy()]})
    dup = int(out.duplicated().sum())
    assert dup == 0, f"{dup} repeated (user, item) pairs"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    out.to_csv(tmp, index=False)
    tmp.replace(args.out)
    print(f"wrote {args.out}: {len(out):,} events, {out.user.nunique():,} users, {out.item.nunique():,} items")


if __name__ == "__main__":
    main()
