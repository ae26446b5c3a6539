#!/usr/bin/env python
"""Build ``src/toprec/data/ml100k_kg_items.tsv``: ML-1M movie id -> ML-100K item id.

RecBole's ML-100K knowledge-graph link file (``ml-100k.link`` in the recbole
wheel) names films by their **MovieLens-1M** movie ids, not ML-100K's (item 50
there is "The Usual Suspects", ML-1M's 50, not ML-100K's "Star Wars"). So the
fetcher maps those ids to ML-100K items through this table, made once from the
two catalogues by title and year (exact normalised title, then the title with
alternative titles in parentheses removed, then a unique same-year prefix
match) and shipped with the package (two integer columns; no MovieLens data).

    python scripts/make_ml100k_kg_items.py --ml100k ../shared/data/ml-100k --ml1m ../shared/data/ml-1m
"""

from __future__ import annotations

import argparse
import re
import unicodedata
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "src" / "toprec" / "data" / "ml100k_kg_items.tsv"


def norm(title: str) -> str:
    t = unicodedata.normalize("NFKD", str(title)).encode("ascii", "ignore").decode().lower()
    t = re.sub(r"[^a-z0-9() ]", " ", t)
    return re.sub(r"\s+", " ", t).strip()


def split_year(t: str) -> tuple[str, str]:
    m = re.search(r"\((\d{4})\)\s*$", t)
    return (t[: m.start()].strip(), m.group(1)) if m else (t, "")


def bare(t: str) -> str:
    """Title without parenthesised alternatives, articles moved back ("Postino, Il")."""
    t = re.sub(r"\([^)]*\)", " ", t)
    t = re.sub(r"\b(the|a|an|il|la|le|les|das|der|die|el|l)\b", " ", t)
    return re.sub(r"\s+", " ", t).strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ml100k", type=Path, default=ROOT.parent / "shared" / "data" / "ml-100k")
    ap.add_argument("--ml1m", type=Path, default=ROOT.parent / "shared" / "data" / "ml-1m")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    u = pd.read_csv(args.ml100k / "u.item", sep="|", header=None, encoding="latin-1", usecols=[0, 1])
    m = pd.read_csv(args.ml1m / "movies.dat", sep="::", engine="python", header=None, encoding="latin-1",
                    usecols=[0, 1])  # fmt: skip
    u.columns = m.columns = ["id", "title"]
    for df in (u, m):
        df["norm"] = df["title"].map(norm)
        parts = df["norm"].map(split_year)
        df["name"], df["year"] = parts.str[0], parts.str[1]
        df["bare"] = df["name"].map(bare)
    pairs: dict[int, int] = {}
    # 1. exact normalised title with year
    by_norm = m.drop_duplicates("norm").set_index("norm")["id"]
    for uid, key in zip(u["id"], u["norm"]):
        if key in by_norm.index:
            pairs[uid] = int(by_norm[key])
    # 2. bare title + year (unique on the ML-1M side)
    m_bare = m[~m.duplicated(["bare", "year"], keep=False)].set_index(["bare", "year"])["id"]
    # 3. an alternative title in parentheses ("Boat, The (Das Boot) (1981)"), unique
    alt_rows = [(bare(a), y, i) for i, t, y in zip(m["id"], m["name"], m["year"]) for a in re.findall(r"\(([^)]*)\)", t)]
    alt_frame = pd.DataFrame(alt_rows, columns=["bare", "year", "id"])
    alt_frame = alt_frame[~alt_frame.duplicated(["bare", "year"], keep=False)]
    alts = {(b, y): int(i) for b, y, i in zip(alt_frame["bare"], alt_frame["year"], alt_frame["id"])}
    # 4. same year, the ML-1M title starts or ends with the ML-100K one ("Star Wars: Episode VI - Return of the Jedi"), unique, one title a prefix of the other (unique)
    for uid, b, y in zip(u["id"], u["bare"], u["year"]):
        if uid in pairs or not b or not y:
            continue
        if (b, y) in m_bare.index:
            pairs[uid] = int(m_bare[(b, y)])
            continue
        if (b, y) in alts:
            pairs[uid] = alts[(b, y)]
            continue
        year = m[m["year"] == y]
        same = year[year["bare"].map(lambda s: s.startswith(b + " ") or s.endswith(" " + b))]
        if len(same) == 1:
            pairs[uid] = int(same["id"].iloc[0])
    out = pd.DataFrame(sorted(((v, k) for k, v in pairs.items())), columns=["ml1m", "ml100k"])
    tmp = args.out.with_suffix(".tmp")
    out.to_csv(tmp, sep="\t", index=False)
    tmp.replace(args.out)
    print(f"wrote {args.out}: {len(out):,} of {len(u):,} ML-100K items matched to ML-1M ids")


if __name__ == "__main__":
    main()
