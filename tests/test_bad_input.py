"""The bad-input corpus (issue 22): every case is exit 2, one line naming the file / row / parameter, no
traceback, and nothing written: the whole working folder (data, outputs that existed, outputs that did
not) is byte-identical after the run, with no temporary left behind.

Each case runs the real command line in this process (``toprec.cli.main``) on tiny data built here.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from conftest import clustered_events, write_competition
from toprec.cli import main

GOOD = clustered_events(n_users=40, n_items=30, per_user=8)


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file (bytes) and folder (None) under ``root``, hidden ones included."""
    out: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = None
        for f in filenames:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = Path(p).read_bytes() if os.path.isfile(p) else b"<special>"
    return out


def run(args: list[str], capsys) -> tuple[int, str, str]:
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    cap = capsys.readouterr()
    return code, cap.out, cap.err


# ----------------------------------------------------------------------------------------- bad data
def _csv(text: str | bytes):
    def make(w: Path) -> Path:
        p = w / "bad.csv"
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        return p

    return make


def _folder(text: str | bytes, side: dict[str, str] | None = None):
    def make(w: Path) -> Path:
        d = w / "badfolder"
        d.mkdir()
        (d / "train_ratings.csv").write_bytes(text if isinstance(text, bytes) else text.encode())
        for name, content in (side or {}).items():
            (d / name).write_text(content)
        return d

    return make


def _empty_folder(w: Path) -> Path:
    d = w / "nodata"
    d.mkdir()
    (d / "notes.txt").write_text("no dataset here\n")
    return d


ROWS = "user,item,time\n1,10,1\n1,11,2\n2,10,3\n2,12,4\n"
#: name -> (make the data, extra options, words the error must hold)
BAD_DATA = {
    "latin1-table": (_csv(b"user,item\n1,caf\xe9\n2,b\n"), [], ["bad.csv", "row 2", "utf8"]),
    "latin1-folder": (_folder(b"user,item,time\n1,caf\xe9,1\n"), [], ["train_ratings.csv", "utf8"]),
    "huge-id": (_csv("user,item\n1,2\n2," + "9" * 50_000 + "\n"), [], ["bad.csv", "row 3", "characters long"]),
    "float-id": (_csv("user,item\n1,1\n2,4.5\n3,2\n"), [], ["bad.csv", "row 3", "'4.5'", "not an integer"]),
    "empty-file": (_csv(""), [], ["bad.csv", "empty"]),
    "header-only": (_csv("user,item,time\n"), [], ["bad.csv", "no events"]),
    "missing-column": (_csv("user, movie, time\n1,2,3\n"), [], ["bad.csv", "missing item column 'item'"]),
    "empty-user": (_csv("user,item\n1,2\n,3\n"), [], ["bad.csv", "row 3", "empty user"]),
    "text-time": (_folder("user,item,time\n1,2,3\n1,3,yesterday\n"), [], ["row 3", "'yesterday'", "time"]),
    "inf-time": (_folder("user,item,time\n1,2,3\n1,3,inf\n"), [], ["row 3", "not a finite number"]),
    "ragged-row": (_csv("user,item,time\n1,2,3\n1,2,3,4\n"), [], ["bad.csv", "cannot parse"]),
    "random-bytes": (_csv(np.random.default_rng(0).bytes(4000)), [], ["bad.csv"]),
    "no-layout": (_empty_folder, [], ["nodata", "no known dataset layout"]),
    "missing-path": (lambda w: w / "nowhere", [], ["nowhere", "no such file or folder"]),
    "min-rating-no-column": (_csv(ROWS), ["--min-rating", "4"], ["bad.csv", "--min-rating", "rating column"]),
    "min-rating-drops-all": (_csv("user,item,rating\n1,2,1\n2,3,2\n"), ["--min-rating", "4"],
                             ["bad.csv", "no events left"]),
    "unknown-format": (_csv(ROWS), ["--format", "excel"], ["unknown data format 'excel'"]),
    "missing-user-col": (_csv(ROWS), ["--user-col", "uid"], ["bad.csv", "missing user column 'uid'"]),
    "side-file-no-item": (_folder(ROWS, {"genres.tsv": "movie\tgenre\n10\tDrama\n"}), [],
                          ["genres.tsv", "missing column 'item'"]),
    "table-as-folder-format": (_csv(ROWS), ["--format", "competition"], ["bad.csv"]),
}  # fmt: skip

COMMANDS = {
    "stats": lambda data, w: ["data", "stats", data],
    "submit": lambda data, w: ["submit", "--data", data, "--output", w / "out" / "sub.csv"],
    "evaluate": lambda data, w: ["evaluate", "--data", data, "--json", w / "out" / "res.json"],
}


# ------------------------------------------------------------------------------- bad outputs / options
def _good(w: Path) -> Path:
    return write_competition(w / "D", GOOD)


def _file(w: Path, name: str, content: str = "keep me\n") -> Path:
    p = w / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(content)
    return p


def _dir(w: Path, name: str) -> Path:
    p = w / name
    p.mkdir(parents=True, exist_ok=True)
    (p / "inside.txt").write_text("keep\n")
    return p


S = ["submit", "--model", "popularity"]
#: name -> (build args from the world folder, words the error must hold); the data folder is w/"D"
CASES = {
    # item 1: outputs onto the input
    "submit-output-is-input": (lambda w: [*S, "--data", _good(w), "--output", w / "D" / "train_ratings.csv"],
                               ["--output", "train_ratings.csv", "input"]),
    "submit-output-is-side-file": (lambda w: [*S, "--data", _good(w), "--output", w / "D" / "genres.tsv"],
                                   ["genres.tsv", "input"]),
    "submit-output-would-be-a-layout-file": (lambda w: [*S, "--data", _good(w), "--output", w / "D" / "u.data"],
                                             ["u.data", "input"]),
    "evaluate-json-is-input": (lambda w: ["evaluate", "--data", _good(w), "--json", w / "D" / "train_ratings.csv"],
                               ["--json", "train_ratings.csv", "input"]),
    "ensemble-output-is-input": (lambda w: ["ensemble", "--data", _good(w), "--members", "popularity,itemknn",
                                            "--output", w / "D" / "train_ratings.csv"], ["--output", "input"]),
    "ensemble-json-is-input": (lambda w: ["ensemble", "--data", _good(w), "--members", "popularity,itemknn",
                                          "--output", w / "e.csv", "--json", w / "D" / "genres.tsv"],
                               ["--json", "genres.tsv"]),
    "align-json-is-input": (lambda w: ["align", "--data", _good(w), "--models", "popularity,itemknn", "--json",
                                       w / "D" / "train_ratings.csv"], ["--json", "input"]),
    "save-model-is-data-folder": (lambda w: [*S, "--data", _good(w), "--output", w / "s.csv", "--save-model",
                                             w / "D"], ["--save-model", "data"]),
    "save-model-holds-data": (lambda w: [*S, "--data", _good(w), "--output", w / "s.csv", "--save-model", w],
                              ["--save-model", "holds the input data"]),
    "save-model-is-table-folder": (lambda w: [*S, "--data", _csv(ROWS)(w), "--output", w / "s.csv", "--save-model",
                                              w], ["--save-model"]),
    "save-config-is-input": (lambda w: [*S, "--data", _good(w), "--output", w / "s.csv", "--save-config",
                                        w / "D" / "train_ratings.csv"], ["--save-config", "input"]),
    "table-output-is-input": (lambda w: [*S, "--data", _csv(ROWS)(w), "--output", w / "bad.csv"],
                              ["bad.csv", "input data"]),
    "report-output-is-data-folder": (lambda w: ["report", "--data", _good(w), "--models", "popularity", "--output",
                                                w / "D"], ["--output", "data folder"]),
    "eda-output-is-data-folder": (lambda w: ["eda", "--data", _good(w), "--output", w / "D"], ["data folder"]),
    # items 4, 7, 9: special files, files where folders go, folders where files go, unwritable folders
    "output-under-a-file": (lambda w: [*S, "--data", _good(w), "--output", _file(w, "afile") / "sub.csv"],
                            ["afile", "not a folder"]),
    "output-is-a-folder": (lambda w: [*S, "--data", _good(w), "--output", _dir(w, "adir")], ["adir", "folder"]),
    "json-is-a-folder": (lambda w: ["evaluate", "--data", _good(w), "--json", _dir(w, "adir")], ["adir", "folder"]),
    "save-model-is-a-file": (lambda w: [*S, "--data", _good(w), "--output", w / "s.csv", "--save-model",
                                        _file(w, "m")], ["--save-model", "not a folder"]),
    "tune-out-is-a-file": (lambda w: ["tune", "--data", _good(w), "--model", "popularity", "--trials", "1", "--out",
                                      _file(w, "t")], ["--out", "not a folder"]),
    "auto-out-is-a-file": (lambda w: ["auto", "--data", _good(w), "--output", w / "a.csv", "--out", _file(w, "t")],
                           ["--out", "not a folder"]),
    "report-output-is-a-file": (lambda w: ["report", "--data", _good(w), "--models", "popularity", "--output",
                                           _file(w, "rep")], ["rep", "not a folder"]),
    "save-config-under-a-file": (lambda w: [*S, "--data", _good(w), "--output", w / "s.csv", "--save-config",
                                            _file(w, "cfgfile") / "c.yaml"], ["cfgfile", "not a folder"]),
    "output-is-a-fifo": (lambda w: [*S, "--data", _good(w), "--output", _fifo(w)], ["fifo", "not a regular file"]),
    # item 5: garbage parameters, -k out of range
    "l2-inf": (lambda w: [*S[:1], "--model", "ease", "-p", "l2=inf", "--data", _good(w), "--output", w / "s.csv"],
               ["'l2'", "finite"]),
    "l2-1e308": (lambda w: [*S[:1], "--model", "ease", "-p", "l2=1e308", "--data", _good(w), "--output",
                            w / "s.csv"], ["'l2'", "out of range"]),
    "l2-nan": (lambda w: [*S[:1], "--model", "ease", "-p", "l2=nan", "--data", _good(w), "--output", w / "s.csv"],
               ["'l2'", "finite"]),
    "l2-text": (lambda w: [*S[:1], "--model", "ease", "-p", "l2=lots", "--data", _good(w), "--output",
                           w / "s.csv"], ["'l2'"]),
    "unknown-param": (lambda w: [*S, "-p", "alpha=1", "--data", _good(w), "--output", w / "s.csv"], ["alpha"]),
    "unknown-model": (lambda w: ["submit", "--model", "gpt", "--data", _good(w), "--output", w / "s.csv"],
                      ["gpt"]),
    "k-zero": (lambda w: [*S, "-k", "0", "--data", _good(w), "--output", w / "s.csv"], ["-k"]),
    "k-negative": (lambda w: [*S, "-k", "-3", "--data", _good(w), "--output", w / "s.csv"], ["-k"]),
    "k-huge-submit": (lambda w: [*S, "-k", "1000000000000", "--data", _good(w), "--output", w / "s.csv"],
                      ["-k 1,000,000,000,000", "30 items"]),
    "k-above-items-evaluate": (lambda w: ["evaluate", "--model", "popularity", "-k", "5000", "--data", _good(w),
                                          "--json", w / "r.json"], ["-k 5,000", "30 items"]),
    "k-above-items-tune": (lambda w: ["tune", "--model", "popularity", "-k", "31", "--trials", "1", "--data",
                                      _good(w), "--out", w / "t"], ["-k 31"]),
    "trials-zero": (lambda w: ["tune", "--trials", "0", "--data", _good(w)], ["--trials"]),
    "folds-zero": (lambda w: ["evaluate", "--folds", "0", "--data", _good(w)], ["--folds"]),
    "last-negative": (lambda w: ["evaluate", "--last", "-1", "--data", _good(w)], ["--last"]),
    "unknown-protocol": (lambda w: ["evaluate", "--protocol", "future", "--data", _good(w)], ["future"]),
    "unknown-option": (lambda w: ["submit", "--outptu", "x.csv", "--data", _good(w)], ["--outptu"]),
    "missing-data-option": (lambda w: ["submit", "--output", w / "s.csv"], ["--data"]),
    "stats-without-path": (lambda w: ["data", "stats"], ["data"]),
    "unknown-device": (lambda w: [*S[:1], "--model", "ease", "--device", "tpu", "--data", _good(w), "--output",
                                  w / "s.csv"], ["tpu"]),
    "weights-mismatch": (lambda w: ["ensemble", "--data", _good(w), "--members", "popularity,itemknn", "--weights",
                                    "1,2,3", "--output", w / "e.csv"], ["--weights"]),
    "unknown-fusion": (lambda w: ["ensemble", "--data", _good(w), "--members", "popularity,itemknn", "--method",
                                  "magic", "--output", w / "e.csv"], ["magic"]),
    "empty-members": (lambda w: ["ensemble", "--data", _good(w), "--members", ",", "--output", w / "e.csv"],
                      ["--members"]),
    # a user who has seen all but fewer than -k items: said before any fit (auto: before its whole budget)
    "submit-user-saw-almost-all": (lambda w: [*S, "--data", _csv(ROWS)(w), "-k", "2", "--output", w / "s.csv"],
                                   ["user 1 has seen 2 of the 3 items", "-k 2"]),
    "ensemble-user-saw-almost-all": (lambda w: ["ensemble", "--data", _csv(ROWS)(w), "--members",
                                                "popularity,itemknn", "-k", "2", "--output", w / "e.csv"],
                                     ["user 1 has seen 2 of the 3 items", "2 users"]),
    "auto-user-saw-almost-all": (lambda w: ["auto", "--data", _csv(ROWS)(w), "-k", "2", "--output", w / "a.csv",
                                            "--out", w / "auto"], ["user 1 has seen 2 of the 3 items"]),
    "auto-empty-members": (lambda w: ["auto", "--data", _good(w), "--output", w / "a.csv", "--out", w / "auto",
                                      "--members", ","], ["--members", "no member named"]),
    "auto-unknown-member": (lambda w: ["auto", "--data", _good(w), "--output", w / "a.csv", "--out", w / "auto",
                                       "--members", "ease,nope"], ["--members", "'nope' is not an auto member"]),
    "bad-budget": (lambda w: ["auto", "--data", _good(w), "--output", w / "a.csv", "--budget", "soon"],
                   ["--budget", "soon"]),
    "run-missing-config": (lambda w: ["run", w / "none.yaml"], ["none.yaml"]),
    "run-config-is-a-list": (lambda w: ["run", _file(w, "c.yaml", "- 1\n- 2\n")], ["c.yaml", "mapping"]),
    "run-config-python-tag": (lambda w: ["run", _file(w, "c.yaml", "data: !!python/object/apply:os.system ['x']\n")],
                              ["c.yaml"]),
}  # fmt: skip


def _fifo(w: Path) -> Path:
    p = w / "fifo"
    os.mkfifo(p)
    return p


# ---------------------------------------------------------------------------- tampered saved models
def _saved(w: Path, mutate) -> Path:
    """A fitted ItemKNN saved in ``w/m``, then ``mutate(folder)``."""
    from toprec import Dataset, models

    ds = Dataset.from_events(GOOD["user"].to_numpy(), GOOD["item"].to_numpy(), GOOD["time"].to_numpy())
    folder = models.get("ease", l2=10.0).fit(ds).save(w / "m")
    mutate(folder)
    return folder


def _arrays(fn):
    def mutate(folder: Path) -> None:
        from safetensors.numpy import load_file, save_file

        a = load_file(str(folder / "arrays.safetensors"))
        fn(a)
        save_file(a, str(folder / "arrays.safetensors"))

    return mutate


def _meta(fn):
    def mutate(folder: Path) -> None:
        meta = json.loads((folder / "model.json").read_text())
        (folder / "model.json").write_text(json.dumps(fn(meta)))

    return mutate


def _nan(a):
    s = a["state.similarity"].copy()
    s[0, 1] = np.nan
    a["state.similarity"] = s


def _bad_index(a):
    i = a["train.indices"].copy()
    i[0] = 10**6
    a["train.indices"] = i


def _truncate(folder: Path) -> None:
    f = folder / "arrays.safetensors"
    f.write_bytes(f.read_bytes()[:200])


MODEL_CASES = {
    "nan-arrays": (_arrays(_nan), ["arrays.safetensors", "NaN"]),
    "n-items-edited": (_meta(lambda m: {**m, "n_items": 10}), ["out of range"]),
    "n-users-edited": (_meta(lambda m: {**m, "n_users": 3}), ["model.json says 3"]),
    "csr-index-out-of-range": (_arrays(_bad_index), ["column index out of range"]),
    "truncated-arrays": (_truncate, ["arrays.safetensors", "not a readable safetensors"]),
    "n-items-wrong-type": (_meta(lambda m: {**m, "n_items": "many"}), ["model.json", "n_items"]),
    "params-wrong-type": (_meta(lambda m: {**m, "params": {"l2": "x"}}), ["'l2'"]),
    "model-key-missing": (_meta(lambda m: {k: v for k, v in m.items() if k != "model"}), ["missing key 'model'"]),
    "json-not-an-object": (lambda f: (f / "model.json").write_text("[1, 2]"), ["model.json", "JSON object"]),
    "similarity-wrong-shape": (_arrays(lambda a: a.__setitem__("state.similarity",
                                                               np.ascontiguousarray(a["state.similarity"][:5]))),
                               ["do not fit"]),
    "popularity-missing": (_arrays(lambda a: a.pop("item_popularity")), ["item_popularity"]),
}  # fmt: skip


# ------------------------------------------------------------------------------------------ the tests
def _check(code: int, out: str, err: str, needles: list[str]) -> None:
    assert code == 2, (code, out, err)
    assert "Traceback" not in err and "Traceback" not in out
    errors = [ln for ln in err.splitlines() if ln.startswith("toprec: error:")]
    assert len(errors) == 1, err
    others = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("toprec: ")]
    assert not others, err  # one line: no box, no continuation
    for needle in needles:
        assert needle.lower() in errors[0].lower(), (needle, errors[0])


@pytest.fixture
def world(tmp_path, monkeypatch):
    w = tmp_path / "w"
    w.mkdir()
    monkeypatch.chdir(w)  # anything written to the working folder shows in the snapshot too
    return w


#: every bad data set under every command; the writers once with their outputs absent, once existing
DATA_RUNS = [(case, command, existing) for case in sorted(BAD_DATA) for command in sorted(COMMANDS)
             for existing in ((False,) if command == "stats" else (False, True))]  # fmt: skip


@pytest.mark.parametrize("case,command,existing", DATA_RUNS,
                         ids=[f"{c}-{m}-{'existing' if e else 'absent'}" for c, m, e in DATA_RUNS])
def test_bad_data(case, command, existing, world, capsys):
    make, extra, needles = BAD_DATA[case]
    data = make(world)
    if existing:
        _file(world, "out/sub.csv", "user,item\nold,1\n")
        _file(world, "out/res.json", "{}\n")
    before = snapshot(world)
    code, out, err = run([*COMMANDS[command](data, world), *extra, "-q", "--no-cache"], capsys)
    _check(code, out, err, needles)
    assert snapshot(world) == before


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_option_or_output(case, world, capsys):
    build, needles = CASES[case]
    args = build(world)
    before = snapshot(world)
    code, out, err = run([*args, "-q"], capsys)
    _check(code, out, err, needles)
    assert snapshot(world) == before


@pytest.mark.parametrize("case", sorted(MODEL_CASES))
def test_tampered_model_as_ensemble_member(case, world, capsys):
    mutate, needles = MODEL_CASES[case]
    folder = _saved(world, mutate)
    data = _good(world)
    before = snapshot(world)
    code, out, err = run(["ensemble", "--data", data, "--members", f"{folder},popularity", "--output",
                          world / "e.csv", "--no-validate", "--search", "none", "--method", "rank", "-q"], capsys)
    _check(code, out, err, needles)
    assert snapshot(world) == before


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_output_onto_a_device_is_refused(world, capsys):
    code, out, err = run([*S, "--data", _good(world), "--output", "/dev/full", "-q"], capsys)
    _check(code, out, err, ["/dev/full", "not a regular file"])
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_output_in_a_read_only_folder_fails_before_the_fit(world, capsys, monkeypatch):
    """Named: the output, not a temporary file; before any fitting (as root, access is simulated)."""
    import toprec.models.base as base

    ro = _dir(world, "ro")
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == ro else real(p, mode, **kw))
    fits = []
    monkeypatch.setattr(base.Recommender, "fit", lambda self, *a, **k: fits.append(1))
    data = _good(world)
    before = snapshot(world)
    code, out, err = run([*S, "--data", data, "--output", ro / "sub.csv", "-q"], capsys)
    _check(code, out, err, [str(ro), "--output"])
    assert ".tmp" not in err and not fits
    assert snapshot(world) == before


def test_diverged_torch_model_is_an_error_not_a_submission(world, capsys):
    pytest.importorskip("torch")
    code, out, err = run(["submit", "--model", "multidae", "-p", "lr=1e30", "-p", "epochs=2", "--data",
                          _good(world), "--output", world / "s.csv", "-q"], capsys)
    _check(code, out, err, ["multidae"])
    assert "not finite" in err or "diverged" in err
    assert not (world / "s.csv").exists()


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_scores_are_an_error_before_ranking(value):
    """The shared top-k refuses NaN / +inf scores (any model, any entry point), instead of arbitrary lists."""
    from toprec import Dataset, models
    from toprec.errors import ToprecError

    ds = Dataset.from_events(GOOD["user"].to_numpy(), GOOD["item"].to_numpy(), GOOD["time"].to_numpy())
    model = models.get("ease", l2=10.0).fit(ds)
    model.similarity = model.similarity.copy()
    model.similarity[3, 5] = value
    with pytest.raises(ToprecError, match="ease: recommend: the model's scores are not finite"):
        model.recommend(k=5)
    assert model.recommend(k=5, batch_size=1, users=[]) is not None  # no users: nothing to check


@pytest.mark.parametrize("damage", ["truncated-state", "json-list", "epoch-text", "history-missing"])
def test_resume_from_a_damaged_checkpoint(damage, world, capsys):
    pytest.importorskip("torch")
    last = world / "ck" / "last"
    last.mkdir(parents=True)
    meta = {"fingerprint": {}, "phase": "search", "epoch": 1, "done": False, "best_epoch": 1, "best_metric": 0.1,
            "history": [], "optimizers": {}}  # fmt: skip
    if damage == "json-list":
        meta = [meta]
    elif damage == "epoch-text":
        meta["epoch"] = "one"
    elif damage == "history-missing":
        del meta["history"]
    (last / "trainer.json").write_text(json.dumps(meta))
    (last / "state.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":" if damage == "truncated-state"
                                              else b"")  # fmt: skip
    data = _good(world)
    before = snapshot(world)
    code, out, err = run(["submit", "--model", "multidae", "-p", "epochs=2", "-p", "resume=true", "-p",
                          f"checkpoint_dir={world / 'ck'}", "--data", data, "--output", world / "s.csv", "-q"],
                         capsys)  # fmt: skip
    _check(code, out, err, ["checkpoint"])
    assert snapshot(world) == before


def test_the_corpus_is_large():
    n = len(DATA_RUNS) + len(CASES) + len(MODEL_CASES) + 2 + 1 + 2 + 4  # + device, read-only, NaN, checkpoints
    assert n >= 80, n
