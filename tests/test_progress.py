"""Output into a log (stderr / stdout not a terminal): progress lines during long fits, nothing cut at 80 columns."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from toprec import progress


def toprec(*args, env_extra=None, cwd=None):
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "TERMINAL_WIDTH", "LINES")}
    env["TOPREC_NO_TRACK"] = "1"
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "toprec", *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)  # fmt: skip


def test_a_fit_with_stderr_piped_writes_a_line_per_epoch_and_quiet_silences_it(competition_dir):
    args = ["evaluate", "--data", competition_dir, "--model", "multidae", "-p", "epochs=3", "-p", "patience=0",
            "--random", "4"]  # fmt: skip
    p = toprec(*args, env_extra={"TOPREC_LOG_EVERY": "0"})
    assert p.returncode == 0, p.stderr
    lines = p.stderr.splitlines()
    for epoch in (1, 2, 3):
        assert any(ln.startswith(f"multidae: search epoch {epoch} loss ") and "recall@10" in ln for ln in lines), p.stderr
    assert any(ln.startswith("multidae: fit: started") for ln in lines), p.stderr
    assert any(ln.startswith("multidae: fit: done") for ln in lines), p.stderr
    assert "\x1b[" not in p.stderr and "\r" not in p.stderr  # plain lines, no live bar
    q = toprec(*args, "--quiet", env_extra={"TOPREC_LOG_EVERY": "0"})
    assert q.returncode == 0, q.stderr
    assert "epoch" not in q.stderr and "started" not in q.stderr and "done" not in q.stderr, q.stderr


def test_log_task_prints_start_progress_heartbeat_and_end_only_for_long_work(monkeypatch, capsys):
    monkeypatch.setenv("TOPREC_LOG_EVERY", "0.5")
    progress.set_quiet(False)
    with progress.task("tiny"):
        pass
    with progress.task("solve"):  # a closed-form solve: no steps, a start line after a moment, an end line
        time.sleep(1.0)
    with progress.task("train", total=4) as bar:
        for e in range(1, 5):
            time.sleep(0.3)
            bar.update(completed=e, description=f"train epoch {e}")
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert not any(ln.startswith("tiny") for ln in lines), err
    assert [ln.split(" [")[0] for ln in lines if ln.startswith("solve")] == ["solve: started", "solve: done"], err
    epochs = [ln for ln in lines if ln.startswith("train epoch")]
    assert 1 <= len(epochs) <= 4 and lines[-1].startswith("train epoch 4 (4/4): done"), err
    monkeypatch.setenv("TOPREC_LOG_EVERY", "0.2")
    with progress.task("long solve"):  # nothing else printed for 6 x 0.2 s: a "still running" line
        time.sleep(2.0)
    err = capsys.readouterr().err
    assert "long solve: still running" in err, err
    progress.set_quiet(True)
    try:
        with progress.task("quiet", total=2) as bar:
            time.sleep(0.6)
            bar.update(completed=2, description="quiet epoch 2")
    finally:
        progress.set_quiet(False)
    assert capsys.readouterr().err == ""


def test_silenced_is_per_thread_and_starts_no_watcher(monkeypatch, capsys):
    import threading

    monkeypatch.setenv("TOPREC_LOG_EVERY", "0.2")
    progress.set_quiet(False)
    seen = []

    def other():  # another thread, while this one is silenced: still prints
        with progress.task("other thread"):
            time.sleep(0.6)

    with progress.silenced():
        worker = threading.Thread(target=other)
        worker.start()
        with progress.task("served request") as t:
            seen.append(isinstance(t, progress.LogTask) and t._thread is not None)
            time.sleep(0.6)
        worker.join()
    assert seen == [False]  # no watcher thread for the silenced task
    err = capsys.readouterr().err
    assert "served request" not in err and "other thread: started" in err, err
    assert not progress.is_quiet()


def test_output_into_a_file_is_not_wrapped_at_80_columns(tmp_path, competition_dir):
    long_dir = tmp_path / ("a_dataset_folder_whose_name_alone_is_longer_than_eighty_columns_" + "x" * 30)
    competition_dir.rename(long_dir)
    p = toprec("evaluate", "--data", long_dir, "--model", "popularity", "--random", "4")
    assert p.returncode == 0, p.stderr
    loaded = [ln for ln in p.stderr.splitlines() if ln.startswith("loaded ")]
    assert len(loaded) == 1 and "repeated user-item events dropped)" in loaded[0], p.stderr
    title = [ln for ln in p.stdout.splitlines() if long_dir.name in ln]
    assert len(title) == 1 and "held-out events" in title[0], p.stdout  # the table's title on one line
    assert any(ln.strip().startswith("competition(last=1, random=4, seed=0)") for ln in p.stdout.splitlines()), p.stdout
    row = [ln for ln in p.stdout.splitlines() if "recall_random@10" in ln]
    assert len(row) == 1 and any(c.isdigit() for c in row[0]), p.stdout
    h = toprec("evaluate", "--help")
    assert h.returncode == 0 and "…" not in h.stdout, h.stdout
    assert "auto|competition|ml-100k|ml-1m|ml-csv|hetrec-lastfm|recbole|table" in h.stdout, h.stdout
    assert "MLflow tracking URI" in h.stdout


def test_the_console_keeps_a_terminal_width_and_columns(monkeypatch):
    import io

    from rich.console import Console

    c = progress.make_console(file=io.StringIO())
    assert c.width == progress.UNWRAPPED
    monkeypatch.setenv("COLUMNS", "100")
    assert progress.make_console(file=io.StringIO()).width == 100
    assert progress.make_console(file=io.StringIO(), width=90).width == 90
    assert isinstance(c, Console)
