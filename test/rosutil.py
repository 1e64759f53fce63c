"""Helpers for the ROS tests: an isolated DDS environment per test run and child processes that
are always reaped. Other engineers run tests on this machine at the same time, so every run gets
its own ROS_DOMAIN_ID and its own topic namespace, and discovery stays on localhost."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def have_interfaces() -> bool:
    try:
        import semcomm_ros.msg  # noqa: F401
    except ImportError:
        return False
    return True


def ros_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    # 0 is everyone's default; 101-232 are valid Fast DDS domains (port ranges stay < 65535).
    env["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(101, 232))
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.pop("ROS_STATIC_PEERS", None)
    env["RMW_IMPLEMENTATION"] = "rmw_fastrtps_cpp"
    env["PYTHONUNBUFFERED"] = "1"
    env["OMP_NUM_THREADS"] = "1"
    env.setdefault("RCUTILS_COLORIZED_OUTPUT", "0")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    if extra:
        env.update(extra)
    return env


def unique_ns() -> str:
    return "/t" + uuid.uuid4().hex[:10]


class Procs:
    """Child processes started with :meth:`start`; :meth:`stop_all` ends them (SIGINT, then
    SIGKILL), only the ones started here."""

    def __init__(self, env: dict, logdir: Path):
        self.env = env
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, args: list[str], stdout=None) -> subprocess.Popen:
        log = open(self.logdir / f"{name}.log", "w")
        p = subprocess.Popen([sys.executable, *args], env=self.env, cwd=ROOT,
                             stdout=stdout if stdout is not None else log, stderr=log,
                             text=True, start_new_session=True)
        self.procs.append((name, p))
        return p

    def node(self, name: str, module: str, ns: str, params: dict | None = None,
             remap: dict | None = None, args: list[str] | None = None) -> subprocess.Popen:
        cmd = ["-m", f"semcomm_ros.nodes.{module}", *(args or []), "--ros-args", "-r", f"__ns:={ns}"]
        for k, v in (params or {}).items():
            cmd += ["-p", f"{k}:={json.dumps(v) if isinstance(v, (list, bool)) else v}"]
        for k, v in (remap or {}).items():
            cmd += ["-r", f"{k}:={v}"]
        return self.start(name, cmd)

    def log(self, name: str) -> str:
        try:
            return (self.logdir / f"{name}.log").read_text()
        except FileNotFoundError:
            return ""

    def logs(self) -> str:
        return "\n".join(f"----- {n} (rc={p.poll()}) -----\n{self.log(n)[-3000:]}" for n, p in self.procs)

    def check_alive(self):
        dead = [(n, p.returncode) for n, p in self.procs if p.poll() is not None]
        assert not dead, f"processes exited early: {dead}\n{self.logs()}"

    def stop(self, p: subprocess.Popen, timeout: float = 5.0) -> int | None:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(5)
        return p.returncode

    def stop_all(self):
        for _, p in reversed(self.procs):
            self.stop(p)


@contextmanager
def processes(tmp_path: Path, env: dict | None = None):
    procs = Procs(env or ros_env(), tmp_path / "logs")
    try:
        yield procs
    finally:
        procs.stop_all()


def wait_for(pred, timeout: float, what: str, procs: Procs | None = None, interval: float = 0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        if procs is not None:
            procs.check_alive()
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}"
                         + (f"\n{procs.logs()}" if procs is not None else ""))


class Echo:
    """``semcomm_ros.ros.topic echo`` in a child process; its JSON lines collected by a thread."""

    def __init__(self, procs: Procs, name: str, pairs: list[str], count: int = 100000,
                 timeout: float = 300, qos: str = "stats"):
        import threading

        self.msgs: list[dict] = []
        self.p = procs.start(name, ["-m", "semcomm_ros.ros.topic", "echo", *pairs, "--count", str(count),
                                    "--timeout", str(timeout), "--qos", qos], stdout=subprocess.PIPE)
        self._lock = threading.Lock()
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self):
        for line in self.p.stdout:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if "topic" in rec:
                rec["msg"]["_t"] = time.monotonic()
                with self._lock:
                    self.msgs.append(rec)

    def on(self, suffix: str) -> list[dict]:
        with self._lock:
            return [r["msg"] for r in self.msgs if r["topic"].endswith("/" + suffix)]


def set_params(procs: Procs, node: str, **values) -> tuple[int, str]:
    """Set parameters of a running node from another process; (exit code, JSON results)."""
    args = [f"{k}:={json.dumps(v)}" for k, v in values.items()]
    p = subprocess.run([sys.executable, "-m", "semcomm_ros.ros.topic", "param", node, *args],
                       env=procs.env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr
