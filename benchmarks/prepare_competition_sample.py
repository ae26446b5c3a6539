#!/usr/bin/env python
"""The real competition-user sample as one interaction table (benchmarks only).

    python benchmarks/prepare_competition_sample.py --out /tmp/compsample.csv
    python benchmarks/prepare_competition_sample.py --ordered --out /tmp/compsample_ordered.csv
    python benchmarks/prepare_competition_sample.py --side --out /tmp/compsample_side   # + item side files

``../shared/data/boostcamp-movierec-2022/partial_sample_pro_sg`` holds 272,233
real interactions of 1,645 users of the movie competition (31,360 x 6,807 in
full), in the VAE-CF "pro_sg" form: several files whose user sets do not
overlap, items as indices into ``unique_sid.txt`` (the competition's own item
ids). The files carry no timestamps.

Default: all five files concatenated, items mapped back to the competition
ids, ``user,item``; the holdout is then ``--last 0 --random 10``.

``--ordered``: the 1,190 users of ``train.csv`` only, with ``time`` = the
event's position in that user's rows. VAE-CF's preprocessing never reorders
rows, so ``train.csv`` keeps the competition file's order (sorted by user,
then time), and the competition protocol (``--last 1 --random 9``) can be
run for real. The validation/test users are left out: their ``*_te`` rows
are a random 20% taken out of the sequence, so their last event is unknown.
The script checks the order before writing, against the same rows shuffled
within each user (printed; ``--check-only`` prints and writes nothing):

* release year (``years.tsv``) vs position, Spearman per user: later rows
  are newer films, as a user's viewing moves forward in time;
* cosine of adjacent items (item-item co-occurrence over all users): items
  next to each other in the file are more alike than in a shuffled order,
  as sessions of similar films would make them.

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
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent / "shared" / "data" / "boostcamp-movierec-2022"
DEFAULT = ROOT / "partial_sample_pro_sg"
SIDE = ["titles.tsv", "years.tsv", "genres.tsv", "directors.tsv", "writers.tsv"]
FILES = ["train.csv", "validation_tr.csv", "validation_te.csv", "test_tr_1.csv", "test_te_1.csv"]


def _spearman_by_user(users: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman correlation of x and y within each user (users with >= 20 rows), vectorised by ranking."""
    df = pd.DataFrame({"u": users, "x": x, "y": y})
    df = df[df.groupby("u")["u"].transform("size") >= 20]
    rx = df.groupby("u")["x"].rank()
    ry = df.groupby("u")["y"].rank()
    df = df.assign(rx=rx - rx.groupby(df.u).transform("mean"), ry=ry - ry.groupby(df.u).transform("mean"))
    num = (df.rx * df.ry).groupby(df.u).sum()
    den = np.sqrt((df.rx**2).groupby(df.u).sum() * (df.ry**2).groupby(df.u).sum())
    return (num / den).to_numpy()


def _adjacent_cosine(users: np.ndarray, items: np.ndarray) -> float:
    """Mean item-item cosine (co-occurrence over users) of consecutive rows of the same user."""
    u = pd.factorize(users)[0]
    it = pd.factorize(items)[0]
    X = sp.csr_matrix((np.ones(len(u)), (u, it)))
    norm = np.sqrt(np.asarray(X.sum(0)).ravel())
    G = (X.T @ X).tocsr()
    same = u[1:] == u[:-1]
    a, b = it[:-1][same], it[1:][same]
    return float((np.asarray(G[a, b]).ravel() / (norm[a] * norm[b])).mean())


def check_order(events: pd.DataFrame, years: pd.Series, seed: int = 0) -> dict:
    """Order statistics of ``events`` (user, item, file order) vs the same rows shuffled within each user."""
    rng = np.random.default_rng(seed)
    shuffled = events.assign(_r=rng.random(len(events))).sort_values(["user", "_r"], kind="stable")
    out = {}
    for label, df in (("file order", events), ("shuffled", shuffled)):
        pos = df.groupby("user").cumcount().to_numpy()
        yr = df["item"].map(years).to_numpy(dtype=float)
        keep = ~np.isnan(yr)
        rho = _spearman_by_user(df["user"].to_numpy()[keep], pos[keep], yr[keep])
        out[label] = {
            "year_rho_mean": float(np.nanmean(rho)),
            "year_rho_positive": float(np.mean(rho > 0)),
            "adjacent_cosine": _adjacent_cosine(df["user"].to_numpy(), df["item"].to_numpy()),
        }
    return out


def read_sample(src: Path = DEFAULT, ordered: bool = False) -> pd.DataFrame:
    """``user, item`` (competition item ids) in file order: all five files, or ``train.csv`` alone."""
    sid = np.array([line.strip() for line in (src / "unique_sid.txt").read_text().splitlines() if line.strip()])
    events = pd.concat([pd.read_csv(src / name) for name in (FILES[:1] if ordered else FILES)], ignore_index=True)
    out = pd.DataFrame({"user": events["uid"].to_numpy(), "item": sid[events["sid"].to_numpy()].astype(np.int64)})
    dup = int(out.duplicated().sum())
    assert dup == 0, f"{dup} repeated (user, item) pairs"
    return out


def write_folder(events: pd.DataFrame, side_dir: Path, out: Path) -> None:
    """``out/`` in the competition layout, written to a temporary folder and renamed into place."""
    import shutil

    if "time" not in events:  # file order within each user (the files carry no time)
        events = events.assign(time=events.groupby("user").cumcount())
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    events[["user", "item", "time"]].to_csv(tmp / "train_ratings.csv", index=False)
    for name in SIDE:
        shutil.copyfile(side_dir / name, tmp / name)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=DEFAULT)
    ap.add_argument("--out", type=Path, default=Path("/tmp/compsample.csv"))
    ap.add_argument("--ordered", action="store_true", help="train.csv's users only, with time = file position")
    ap.add_argument("--check-only", action="store_true", help="--ordered: print the order check, write nothing")
    ap.add_argument("--side", action="store_true",
                    help="--out is a folder in the competition layout: train_ratings.csv (user,item,time) and the "
                    "items' titles/years/genres/directors/writers.tsv (for models that use side information)")
    args = ap.parse_args()
    out = read_sample(args.src, args.ordered)
    if args.ordered:
        starts = out["user"].ne(out["user"].shift())
        assert int(starts.sum()) == out["user"].nunique(), "a user's rows are not contiguous: no order to keep"
        years = pd.read_csv(args.src.parent / "years.tsv", sep="\t").set_index("item")["year"]
        stats = check_order(out, years)
        for label, s in stats.items():
            print(f"{label:>10}: release year vs position, Spearman mean {s['year_rho_mean']:+.3f} "
                  f"({s['year_rho_positive']:.0%} of users > 0); adjacent items' cosine {s['adjacent_cosine']:.4f}")  # fmt: skip
        f, s = stats["file order"], stats["shuffled"]
        assert f["year_rho_mean"] > s["year_rho_mean"] + 0.05 and f["adjacent_cosine"] > s["adjacent_cosine"], (
            "the file order looks no different from a shuffled one: it is not a time order"
        )
        if args.check_only:
            return
        out["time"] = out.groupby("user").cumcount()
    if args.side:
        write_folder(out, args.src.parent, args.out)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        out.to_csv(tmp, index=False)
        tmp.replace(args.out)
    print(f"wrote {args.out}: {len(out):,} events, {out.user.nunique():,} users, {out.item.nunique():,} items")


if __name__ == "__main__":
    main()
