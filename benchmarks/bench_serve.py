"""`toprec serve` under load on loopback: throughput and latency, 1 and 2 workers, against a plain Flask app.

    python benchmarks/bench_serve.py --model-dir /tmp/serve_ease            # a `submit --save-model` folder
    python benchmarks/bench_serve.py --data /tmp/synth --model-dir /tmp/m   # fit EASE on the data first
    python benchmarks/bench_serve.py --model-dir /tmp/rr --workers 1 --no-flask  # an `ensemble --save-model` pipeline

For each server (toprec serve with 1 and 2 workers; a single-process Flask
app in the style of Cornac's serving app: the same loaded model, one route
per request kind, werkzeug's threaded server) and each request kind
(known-user GET; new-user POST with a 50-item history drawn from a real
user's events), a load generator on the same machine (``--clients``
processes x ``--threads`` keep-alive connections, raw sockets) sends
requests for ``--duration`` seconds (at most ``--max-requests``). Prints one
markdown table: requests/s, p50/p99 latency, errors (non-200 or failed), and
the memory of the server processes (RSS; USS = private, what one more worker
adds; PSS = shared pages split between processes).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ load generator
def _read_response(sock, buf: bytearray) -> tuple[int, bool]:
    """Read one HTTP/1.1 response from ``sock`` (``buf`` holds leftovers); returns (status, keep_alive)."""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            break
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    head = bytes(buf[:end]).decode("latin-1")
    lines = head.split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, close = 0, lines[0].startswith("HTTP/1.0")
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        k = k.strip().lower()
        if k == "content-length":
            length = int(v)
        elif k == "connection":
            close = v.strip().lower() == "close"
    total = end + 4 + length
    while len(buf) < total:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    del buf[:total]
    return status, not close


def _client(port: int, requests: list[bytes], duration: float, threads: int, max_requests: int, seed: int, q) -> None:
    lat: list[list[float]] = [[] for _ in range(threads)]
    errors = [0] * threads
    deadline = time.perf_counter() + duration
    budget = max_requests // threads

    def run(t: int) -> None:
        rng = random.Random(seed * 1000 + t)
        sock, buf = None, bytearray()
        out = lat[t]
        for _ in range(budget):
            if time.perf_counter() >= deadline:
                break
            req = requests[rng.randrange(len(requests))]
            t0 = time.perf_counter()
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    buf = bytearray()
                sock.sendall(req)
                status, keep = _read_response(sock, buf)
                out.append(time.perf_counter() - t0)
                if status != 200:
                    errors[t] += 1
                if not keep:
                    sock.close()
                    sock = None
            except OSError:
                errors[t] += 1
                out.append(time.perf_counter() - t0)
                if sock is not None:
                    sock.close()
                sock = None
        if sock is not None:
            sock.close()

    ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    q.put((np.concatenate([np.asarray(x) for x in lat]), sum(errors), time.perf_counter() - t0))


def load(port: int, requests: list[bytes], duration: float, clients: int, threads: int, max_requests: int) -> dict:
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_client, args=(port, requests, duration, threads, max_requests // clients, i, q))
             for i in range(clients)]  # fmt: skip
    for p in procs:
        p.start()
    parts = [q.get() for _ in procs]
    for p in procs:
        p.join()
    lat = np.concatenate([p[0] for p in parts])
    errors = sum(p[1] for p in parts)
    elapsed = max(p[2] for p in parts)
    ok = len(lat) - errors
    return {"requests": int(len(lat)), "errors": int(errors), "seconds": round(elapsed, 1),
            "rps": ok / elapsed if elapsed else 0.0, "p50_ms": float(np.percentile(lat, 50) * 1e3) if len(lat) else 0,
            "p99_ms": float(np.percentile(lat, 99) * 1e3) if len(lat) else 0}  # fmt: skip


# ------------------------------------------------------------------ requests
def build_requests(model_dir: Path, key: str, n: int = 2000, hist_len: int = 50, seed: int = 0):
    ids = json.loads((model_dir / "ids.json").read_text())
    from toprec.models import Recommender

    pipeline = model_dir / "pipeline.json"  # an ensemble pipeline: its first member has the training matrix
    first = model_dir / json.loads(pipeline.read_text())["members"][0]["path"] if pipeline.exists() else model_dir
    m = Recommender.load(first, mmap=True)
    X = m.train_matrix
    rng = np.random.default_rng(seed)
    users = rng.choice(len(ids["users"]), size=n)
    get = [(f"GET /v1/users/{ids['users'][u]}/recommendations?k=10 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"X-API-Key: {key}\r\n\r\n").encode() for u in users]  # fmt: skip
    lens = np.diff(X.indptr)
    donors = np.flatnonzero(lens >= hist_len)
    post = []
    for u in rng.choice(donors, size=n):
        items = X.indices[X.indptr[u] : X.indptr[u + 1]]
        h = rng.choice(items, size=hist_len, replace=False)
        body = json.dumps({"history": [ids["items"][i] for i in h], "k": 10}).encode()
        post.append(b"POST /v1/recommendations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    + f"X-API-Key: {key}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)  # fmt: skip
    return {"GET known user": get, "POST new user (50 items)": post}


# ------------------------------------------------------------------ servers
FLASK_APP = r'''
import json, sys
from flask import Flask, request, jsonify
from werkzeug.serving import WSGIRequestHandler
from toprec.app import serving
s = serving.load(sys.argv[1])
app = Flask(__name__)

@app.route("/v1/users/<user>/recommendations")
def user(user):
    a = s.answer_for_user(user, int(request.args.get("k", 10)))
    return jsonify(a.to_json())

@app.route("/v1/recommendations", methods=["POST"])
def history():
    body = request.get_json()
    return jsonify(s.answer_for_history(body["history"], int(body.get("k", 10))).to_json())

@app.route("/health")
def health():
    return {"status": "ok"}

WSGIRequestHandler.protocol_version = "HTTP/1.1"  # keep-alive, as for uvicorn
app.run(host="127.0.0.1", port=int(sys.argv[2]), threaded=True)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(port: int, proc, timeout: float = 180) -> None:
    import http.client

    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.returncode}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("server did not start")


def memory(pid: int) -> dict:
    import psutil

    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    out = []
    for p in procs:
        try:
            mi = p.memory_full_info()
            out.append({"pid": p.pid, "rss": mi.rss, "uss": mi.uss, "pss": mi.pss})
        except psutil.Error:
            pass
    return {"processes": out}


def start(kind: str, model_dir: Path, key_file: Path, workers: int):
    port = free_port()
    env = {**os.environ, "TOPREC_NO_TRACK": "1"}
    if kind == "flask":
        cmd = [sys.executable, "-c", FLASK_APP, str(model_dir), str(port)]
    else:
        cmd = [sys.executable, "-m", "toprec", "serve", str(model_dir), "--port", str(port), "--workers",
               str(workers), "--api-key-file", str(key_file), "--watch", "0"]  # fmt: skip
    # never a pipe nobody reads: werkzeug logs every request, a full pipe would block the server
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_up(port, proc)
    return proc, port


def stop(proc) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", type=Path, required=True)
    ap.add_argument("--data", type=Path, help="fit EASE on this data into --model-dir first (when it is missing)")
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--max-requests", type=int, default=200_000)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--no-flask", action="store_true")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    if not (a.model_dir / "model.json").exists() and not (a.model_dir / "pipeline.json").exists():
        if a.data is None:
            raise SystemExit(f"{a.model_dir}: no model; give --data to fit EASE")
        subprocess.run([sys.executable, "-m", "toprec", "submit", "--data", str(a.data), "--model", "ease",
                        "--output", str(a.model_dir) + ".csv", "--save-model", str(a.model_dir)], check=True)  # fmt: skip
    key = "bench-key"
    key_file = a.model_dir.parent / (a.model_dir.name + ".key")
    key_file.write_text(key + "\n")
    reqs = build_requests(a.model_dir, key)
    servers = [(f"toprec serve, {w} worker{'s' if w > 1 else ''}", "toprec", w) for w in map(int, a.workers.split(","))]
    if not a.no_flask:
        servers.append(("Flask, 1 process (threaded)", "flask", 1))
    rows = []
    for label, kind, workers in servers:
        proc, port = start(kind, a.model_dir, key_file, workers)
        try:
            load(port, reqs["GET known user"][:50], 2.0, 1, 2, 2000)  # warm up (page cache, lazy caches)
            for what, rq in reqs.items():
                up = os.getloadavg()
                r = load(port, rq, a.duration, a.clients, a.threads, a.max_requests)
                r.update(server=label, request=what, load_before=round(up[0], 2), load_after=round(os.getloadavg()[0], 2))
                mem = memory(proc.pid)["processes"]
                workers_mem = mem[1:] if kind == "toprec" and workers > 1 else mem
                r["rss_mb"] = round(sum(p["rss"] for p in workers_mem) / len(workers_mem) / 2**20, 1)
                r["uss_mb"] = round(sum(p["uss"] for p in workers_mem) / len(workers_mem) / 2**20, 1)
                r["pss_total_mb"] = round(sum(p["pss"] for p in mem) / 2**20, 1)
                rows.append(r)
                print(json.dumps(r), flush=True)
        finally:
            stop(proc)
    print()
    what = "EASE"
    if (a.model_dir / "pipeline.json").exists():
        meta = json.loads((a.model_dir / "pipeline.json").read_text())
        what = f"an ensemble pipeline (method {meta['method']}, {len(meta['members'])} members)"
    elif (a.model_dir / "model.json").exists():
        what = json.loads((a.model_dir / "model.json").read_text()).get("model", "a model")
    print(f"{what}, {a.model_dir}; load generator: {a.clients} processes x {a.threads} keep-alive connections, "
          f"{a.duration:.0f} s per row; os.cpu_count() = {os.cpu_count()}")
    print()
    print("| server | request | req/s | p50 ms | p99 ms | requests | errors | RSS/worker MB | USS/worker MB | "
          "PSS total MB | load avg before/after |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['server']} | {r['request']} | {r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
              f"{r['requests']:,} | {r['errors']} | {r['rss_mb']} | {r['uss_mb']} | {r['pss_total_mb']} | "
              f"{r['load_before']} / {r['load_after']} |")
    flask = {r["request"]: r["rps"] for r in rows if r["server"].startswith("Flask")}
    if flask:
        print()
        for r in rows:
            if not r["server"].startswith("Flask") and flask.get(r["request"]):
                print(f"- {r['server']}, {r['request']}: {r['rps'] / flask[r['request']]:.2f}x Flask")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
