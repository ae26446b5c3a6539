"""A local two-node Ray cluster on loopback only, for tests and benchmarks (``benchmarks/bench_batch.py``).

Ray binds and connects on the machine's non-loopback address too, so the
cluster lives in a network namespace of its own (``ip netns``: only ``lo``,
up), where every socket is on 127.0.0.1: a head (``ray start --head``) and a
second node (``ray start --address``), each ``--block``ing in its own process
session. Commands run in the namespace with :meth:`LocalRay.run`. On exit the
two sessions are ended by their ids, then any process left in the namespace
(``ip netns pids``: only ours are there), and the namespace is deleted.

:func:`unavailable` says why it cannot run here (no root, no ``ip``, no Ray),
for a clear skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

PORT = 6379
ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_DOCKER_CPU_WARNING": "1", "TOPREC_NO_TRACK": "1"}


def _ray_bin() -> str | None:
    cand = Path(sys.executable).with_name("ray")
    return str(cand) if cand.exists() else shutil.which("ray")


def unavailable() -> str | None:
    """Why a local namespaced Ray cluster cannot start here (None: it can)."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return "ray is not installed (pip install 'toprec[ray]')"
    if _ray_bin() is None:
        return "the ray command is not on PATH"
    if not sys.platform.startswith("linux") or shutil.which("ip") is None:
        return "network namespaces need Linux and iproute2's ip"
    if os.geteuid() != 0:
        return "creating a network namespace (ip netns add) needs root"
    name = f"tpr{uuid.uuid4().hex[:8]}"
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if r.returncode != 0:
        return f"ip netns add failed: {r.stderr.strip()[:120]}"
    subprocess.run(["ip", "netns", "delete", name], capture_output=True)
    return None


class LocalRay:
    """``with LocalRay(nodes=2, cpus=1) as c: c.run([...])`` -- see the module docstring."""

    def __init__(self, nodes: int = 2, cpus: int = 1, timeout: float = 60.0):
        self.nodes, self.cpus, self.timeout = nodes, cpus, timeout
        self.ns = f"tpr{uuid.uuid4().hex[:8]}"
        self.address = f"127.0.0.1:{PORT}"
        self.procs: list[subprocess.Popen] = []
        self.tmp = ""
        self.env = {**os.environ, **ENV}

    def _in_ns(self, cmd: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *cmd]

    def run(self, cmd: list[str], **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("env", self.env)
        return subprocess.run(self._in_ns(cmd), **kw)

    def _start(self, args: list[str]) -> None:
        log = open(Path(self.tmp) / f"node{len(self.procs)}.log", "w")
        cmd = [_ray_bin(), "start", "--block", "--node-ip-address=127.0.0.1", f"--num-cpus={self.cpus}",
               "--disable-usage-stats", *args]  # fmt: skip
        self.procs.append(subprocess.Popen(self._in_ns(cmd), stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                           start_new_session=True))  # fmt: skip

    def _wait_started(self, i: int, deadline: float) -> None:
        """Until node ``i``'s ``ray start`` says it is up (it prints that once its raylet has registered)."""
        log = Path(self.tmp) / f"node{i}.log"
        while "Ray runtime started" not in (log.read_text() if log.exists() else ""):
            if time.monotonic() > deadline or self.procs[i].poll() is not None:
                raise RuntimeError(f"Ray node {i} did not start:\n{self.logs()}")
            time.sleep(0.2)

    def _nodes(self) -> int:
        code = ("import ray; ray.init(address='%s', log_to_driver=False, configure_logging=False); "
                "print(sum(1 for n in ray.nodes() if n['Alive']))" % self.address)  # fmt: skip
        r = self.run([sys.executable, "-c", code], timeout=60)
        try:
            return int(r.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return 0

    def __enter__(self) -> "LocalRay":
        subprocess.run(["ip", "netns", "add", self.ns], check=True, capture_output=True)
        try:
            subprocess.run(self._in_ns(["ip", "link", "set", "lo", "up"]), check=True, capture_output=True)
            self.tmp = tempfile.mkdtemp(prefix="tpr-ray-", dir="/tmp")  # short: Ray's unix socket paths
            self._start(["--head", f"--port={PORT}", "--include-dashboard=false", f"--temp-dir={self.tmp}"])
            deadline = time.monotonic() + self.timeout
            self._wait_started(0, deadline)
            for i in range(1, self.nodes):
                self._start([f"--address={self.address}"])
                self._wait_started(i, deadline)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def logs(self) -> str:
        return "\n".join(p.read_text()[-2000:] for p in sorted(Path(self.tmp).glob("node*.log"))) if self.tmp else ""

    def __exit__(self, *exc) -> None:
        # everything in our namespace is ours: the two sessions we started and what they spawned
        for sig, rounds in ((signal.SIGTERM, 20), (signal.SIGKILL, 50)):
            for _ in range(rounds):
                r = subprocess.run(["ip", "netns", "pids", self.ns], capture_output=True, text=True)
                pids = [int(x) for x in r.stdout.split()]
                pids += [p.pid for p in self.procs if p.poll() is None]
                if not pids:
                    break
                for pid in set(pids):
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
                time.sleep(0.1)
        for p in self.procs:
            p.wait()
        subprocess.run(["ip", "netns", "delete", self.ns], capture_output=True)
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
