"""kill -9 during a write: the target is the old one (or absent), and the next successful write of the
same target leaves nothing behind (no ``.NAME.<pid>.*.tmp``, no ``.NAME.old.<pid>.*``).

Each writer runs in a child process that SIGKILLs itself at the worst moment (mid-write, or between
the two renames of a folder swap), so the test is exact rather than a race.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")


def _child(code: str) -> None:
    """Run ``code`` in a fresh interpreter that is expected to die of SIGKILL."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def _hidden(folder: Path, name: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}."))


def meta(epoch: int) -> dict:
    """A trainer.json as checkpoints.write makes it."""
    return {"fingerprint": {}, "phase": "search", "epoch": epoch, "done": False, "best_epoch": epoch,
            "best_metric": 0.5, "history": [], "optimizers": {}}  # fmt: skip


def _dataset():
    from conftest import clustered_events
    from toprec import Dataset

    ev = clustered_events(n_users=30, n_items=20, per_user=6)
    return Dataset.from_events(ev["user"].to_numpy(), ev["item"].to_numpy(), ev["time"].to_numpy())


def test_csv_writer_killed_mid_write_then_a_successful_write_cleans_up(tmp_path):
    out = tmp_path / "sub.csv"
    out.write_text("user,item\nold,1\n")
    _child(f"""
        import os, signal
        from toprec.io import atomic_path
        with atomic_path({str(out)!r}, suffix=".csv.tmp") as tmp:
            tmp.write_text("user,item\\nhalf")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    assert out.read_text() == "user,item\nold,1\n"  # the old file, whole
    assert len(_hidden(tmp_path, "sub.csv")) == 1  # the dead writer's temporary
    ds = _dataset()
    from toprec import models

    models.get("popularity").fit(ds).recommend(k=3).write_csv(out, ds)
    assert _hidden(tmp_path, "sub.csv") == []
    assert out.read_text().startswith("user,item\n")


def test_submit_killed_during_the_csv_write_leaves_the_old_file_and_no_leftover(tmp_path):
    """The real command, killed inside the CSV write (pyarrow's writer replaced by one that dies)."""
    from conftest import clustered_events, write_competition

    data = write_competition(tmp_path / "D", clustered_events(n_users=30, n_items=20, per_user=6))
    out = tmp_path / "sub.csv"
    out.write_text("previous\n")
    _child(f"""
        import os, signal, sys
        import pyarrow.csv as pacsv
        def die(*a, **k):
            os.kill(os.getpid(), signal.SIGKILL)
        pacsv.write_csv = die
        from toprec.cli import main
        main(["submit", "--data", {str(data)!r}, "--model", "popularity", "--output", {str(out)!r}, "-q",
              "--no-track"])
    """)
    assert out.read_text() == "previous\n" and len(_hidden(tmp_path, "sub.csv")) == 1
    from toprec.cli import main

    main(["submit", "--data", str(data), "--model", "popularity", "--output", str(out), "-q", "--no-track"])
    assert _hidden(tmp_path, "sub.csv") == [] and out.read_text().startswith("user,item\n")


def test_model_save_killed_mid_write_then_saved_again_cleanly(tmp_path):
    from toprec import models

    ds = _dataset()
    target = tmp_path / "model"
    models.get("popularity").fit(ds).save(target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    _child(f"""
        import os, signal
        from toprec.io import atomic_dir
        with atomic_dir({str(target)!r}) as tmp:
            (tmp / "model.json").write_text("{{half")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert len(_hidden(tmp_path, "model")) == 1
    models.get("popularity").fit(ds).save(target)
    assert _hidden(tmp_path, "model") == []
    assert models.Recommender.load(target).name == "popularity"


def test_checkpoint_swap_killed_between_the_renames(tmp_path):
    """The worst moment: the previous checkpoint moved aside, the new one not yet in place."""
    torch = pytest.importorskip("torch")
    from toprec.train import checkpoints

    ck = tmp_path / "ck"
    checkpoints.save(ck, {"w": torch.ones(3)}, meta(1))
    _child(f"""
        import os, signal
        import torch
        from toprec.train import checkpoints
        real = os.replace
        calls = []
        def replace(a, b):
            real(a, b)
            calls.append(1)
            if len(calls) == 1:  # the old checkpoint is aside: die before the new one moves in
                os.kill(os.getpid(), signal.SIGKILL)
        os.replace = replace
        checkpoints.save({str(ck)!r}, {{"w": torch.zeros(3)}}, {meta(2)!r})
    """)
    assert not (ck / "last").exists()
    assert any(n.startswith(".last.old.") for n in _hidden(ck, "last"))
    tensors, got = checkpoints.load(ck)  # the previous complete checkpoint, put back
    assert got["epoch"] == 1 and torch.equal(tensors["w"], torch.ones(3))
    checkpoints.save(ck, {"w": torch.full((3,), 2.0)}, meta(3))
    assert _hidden(ck, "last") == []
    assert checkpoints.load(ck)[1]["epoch"] == 3


def test_checkpoint_killed_mid_write_then_saved_again_cleanly(tmp_path):
    torch = pytest.importorskip("torch")
    from toprec.train import checkpoints

    ck = tmp_path / "ck"
    checkpoints.save(ck, {"w": torch.ones(2)}, meta(1))
    _child(f"""
        import os, signal
        from toprec.io import atomic_dir
        with atomic_dir({str(ck / "last")!r}) as tmp:
            (tmp / "state.safetensors").write_bytes(b"partial")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    assert checkpoints.load(ck)[1]["epoch"] == 1
    checkpoints.save(ck, {"w": torch.ones(2)}, meta(2))
    assert _hidden(ck, "last") == [] and checkpoints.load(ck)[1]["epoch"] == 2


def test_live_writers_temporaries_are_kept(tmp_path):
    """Only dead writers' leftovers go: a concurrent writer's temporary (live pid) is not touched."""
    from toprec.io import atomic_path

    live = tmp_path / f".x.csv.{os.getppid()}.abcdefgh.tmp"
    live.write_text("in progress")
    with atomic_path(tmp_path / "x.csv") as tmp:
        tmp.write_text("done")
    assert live.exists() and (tmp_path / "x.csv").read_text() == "done"


def test_files_get_the_umask_mode(tmp_path):
    """model.json and arrays.safetensors alike (safetensors used to write 0600)."""
    from toprec import models

    old = os.umask(0o022)
    try:
        folder = models.get("popularity").fit(_dataset()).save(tmp_path / "m")
        modes = {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()}
    finally:
        os.umask(old)
    assert modes == {"model.json": 0o644, "arrays.safetensors": 0o644}, modes
