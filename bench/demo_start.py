"""Demo start benchmark: ``bash deploy/dev.sh demo`` to the first segment locked in S3.

    python -m bench.demo_start [--runs 2] [--cameras 2] [--keep]

Starts the demo as the README does (``bash deploy/dev.sh demo --port P --data-dir D``,
the venv already installed) ``--runs`` times on one data directory: the first run
makes the data directory (SeaweedFS identity, index, tokens), every later one is a
*warm* start, a second run as a person re-running the demo makes it.  Each run is
timed from the moment ``bash`` is started to the moment the demo's index holds a
segment of this run whose lock was read back (``lock_mode`` COMPLIANCE and a
retain-until: the uploader indexes a segment only after ``put_segment`` verified its
Object Lock), polled every 50 ms in the demo's SQLite index; then the demo is stopped
with SIGINT, as Ctrl-C does, and waited for.

Where the time goes (seconds from the start of ``bash``; steps may overlap):

* ``dev.sh`` checks: until ``bash`` execs the ``labwitness`` Python process
  (``/proc/PID/exe`` polled every 5 ms);
* Python start + imports: until ``run_demo`` is entered;
* simulators, SeaweedFS, store check, migrations, discovery, demo set-up, recorders
  started, API: the demo's own marks (``DATA_DIR/demo-start.json``, written by
  :class:`api.demo.StartSteps` once the API is up; SeaweedFS, store check and
  migrations are :attr:`api.runtime.Runtime.start_steps`);
* RTSP connect: recorders started -> the first segment's start (its first frame);
* first segment: its start -> its end (the cut);
* upload + lock: its end -> the index row seen (the poll adds up to 50 ms).

Also the CPU seconds of the demo process until then: on a shared box the wall clock
follows the load, the CPU much less.  Goal: the warm start < 15 s.  The first run
(new data directory) is printed beside it.  Results go to ``bench/out/demo-start-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.procstat import proc_cpu

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
GOAL_S = 15.0
POLL_S = 0.05
TIMEOUT_S = 180.0

console = Console(width=None if sys.stdout.isatty() else 130)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_locked(index: Path, since_ms: int) -> tuple[int, int, str] | None:
    """(start ms, end ms, camera) of the first segment of this run whose lock was verified, if any."""
    if not index.exists():
        return None
    try:
        with sqlite3.connect(f"file:{index}?mode=ro", uri=True, timeout=1) as db:
            return db.execute(
                "SELECT start_ms, end_ms, camera_id FROM segment WHERE start_ms >= ? AND lock_mode = 'COMPLIANCE' "
                "AND retain_until_ms IS NOT NULL ORDER BY end_ms LIMIT 1", (since_ms,)).fetchone()
    except sqlite3.Error:  # not migrated yet, or busy: the next poll
        return None


def baseline_tree(ref: str, into: Path) -> Path:
    """The code of git ``ref`` (e.g. ``main``) exported into ``into``: the same run's baseline."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def one_run(data_dir: Path, cameras: int, log_path: Path, code: Path | None = None) -> dict:
    """One demo start, timed; the demo is stopped (SIGINT) once its first segment is locked.

    ``code``: a baseline tree (:func:`baseline_tree`) run instead of this one, with this
    checkout's venv (``LABWITNESS_VENV``) and the tree first on ``PYTHONPATH``, so its modules
    shadow the editable install's."""
    port = free_port()
    root, env = REPO, None
    if code is not None:
        root = code
        env = dict(os.environ, LABWITNESS_VENV=str(REPO / ".venv"),
                   PYTHONPATH=str(code) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = ["bash", str(root / "deploy" / "dev.sh"), "demo", "--port", str(port), "--data-dir", str(data_dir),
           "--cameras", str(cameras)]
    (data_dir / "demo-start.json").unlink(missing_ok=True)
    wall0 = time.time()
    t0 = time.monotonic()
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(cmd, cwd=root, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)
    exec_at = locked_at = cpu_s = None
    seg = None
    try:
        deadline = t0 + TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None:
            if exec_at is None:
                try:
                    if "python" in os.readlink(f"/proc/{proc.pid}/exe"):
                        exec_at = time.monotonic() - t0
                except OSError:
                    pass
                time.sleep(0.005)
                continue
            seg = first_locked(data_dir / "index.sqlite3", int(wall0 * 1000))
            if seg is not None:
                locked_at = time.monotonic() - t0
                cpu_s = proc_cpu(proc.pid)  # bash's, then (same pid, exec) the demo's own threads
                break
            time.sleep(POLL_S)
    finally:
        stop_t = time.monotonic()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # as Ctrl-C: the demo uploads what is left and says so
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    stop_s = time.monotonic() - stop_t
    if locked_at is None:
        tail = log_path.read_text(errors="replace").splitlines()[-20:]
        raise RuntimeError(f"no locked segment within {TIMEOUT_S:g} s (demo exit {proc.returncode}); log tail:\n"
                           + "\n".join(tail))
    marks_f = data_dir / "demo-start.json"  # (a baseline from before bench/demo_start writes none)
    marks = json.loads(marks_f.read_text())["steps"] if marks_f.exists() else {}
    rel = {k: (round(a - wall0, 3), round(b - wall0, 3)) for k, (a, b) in marks.items()}
    start_s, end_s = seg[0] / 1000 - wall0, seg[1] / 1000 - wall0
    rec = rel["recorders_started"][1] if "recorders_started" in rel else None
    steps = {
        "dev.sh checks": (0.0, exec_at),
        "python start + imports": (exec_at, rel["run_demo"][0] if "run_demo" in rel else None),
        **{name: rel[key] for name, key in (
            ("simulators", "simulators"), ("SeaweedFS start", "seaweedfs"), ("store check (Object Lock)", "store_check"),
            ("schema migrations", "migrations"), ("runtime (all of it)", "runtime"), ("ONVIF discovery", "discovery"),
            ("demo set-up", "demo_setup"), ("recorders started", "recorders_started"), ("API up", "api")) if key in rel},
        "RTSP connect (to first frame)": (rec, round(start_s, 3)),
        "first segment": (round(start_s, 3), round(end_s, 3)),
        "upload + lock (+ poll)": (round(end_s, 3), round(locked_at, 3)),
    }
    return {"seconds": round(locked_at, 3), "cpu_s": cpu_s, "steps": steps, "camera": seg[2], "stop_s": round(stop_s, 2),
            "exit_code": proc.returncode, "log": str(log_path)}


def print_runs(runs: list[dict], base: list[dict]) -> None:
    t = Table(title="bench/demo_start — `bash deploy/dev.sh demo` to the first segment locked (s from bash start; "
                    "steps overlap where they run in parallel)")
    t.add_column("step")
    for i, _ in enumerate(runs):
        t.add_column("run 1 (new data dir)" if i == 0 else f"run {i + 1} (warm)", justify="right")
    for i, _ in enumerate(base):
        t.add_column(f"baseline run {i + 1}" + (" (new)" if i == 0 else " (warm)"), justify="right")
    names = list(runs[-1]["steps"]) if runs else []  # (a baseline run may know fewer steps)
    runs = runs + base
    for name in names:
        cells = []
        for r in runs:
            a, b = r["steps"].get(name, (None, None))
            cells.append("—" if a is None or b is None else f"{b - a:5.2f}  ({a:.2f}→{b:.2f})")
        t.add_row(name, *cells)
    t.add_row("[bold]first segment locked[/]", *(f"[bold]{r['seconds']:.2f}[/]" for r in runs))
    t.add_row("CPU s of the demo process until then (not weed's, not the simulators')",
              *(f"{r['cpu_s']:.2f}" for r in runs))
    t.add_row("ratio to the goal (15 s)", *(f"{r['seconds'] / GOAL_S:.2f}" for r in runs))
    t.add_row("stop (SIGINT → exit, uploads the rest)", *(f"{r['stop_s']:.1f} (exit {r['exit_code']})" for r in runs))
    console.print(t)
    ours = runs[:len(runs) - len(base)]
    warm = ours[-1]["seconds"] if len(ours) > 1 else None
    if warm is not None:
        ok = warm < GOAL_S
        console.print(f"[bold]warm start to first segment locked: {warm:.2f} s[/] (goal < {GOAL_S:g} s: "
                      + ("[green]met[/])" if ok else "[red]missed[/])"))
        if len(base) > 1:
            b = base[-1]["seconds"]
            console.print(f"baseline (same run, warm): {b:.2f} s; this code / baseline = {warm / b:.2f}; "
                          f"CPU s {ours[-1]['cpu_s']:.2f} / {base[-1]['cpu_s']:.2f} = {ours[-1]['cpu_s'] / base[-1]['cpu_s']:.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.demo_start", description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=2, help="demo starts on one data directory (default 2: new, warm)")
    ap.add_argument("--cameras", type=int, default=2, help="simulated cameras (the demo's default 2)")
    ap.add_argument("--keep", action="store_true", help="keep the demo's data directory")
    ap.add_argument("--baseline", metavar="REF", help="also start the demo of git REF (e.g. main) as many times, "
                                                      "alternating with this code's, on a data directory of its own")
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = OUT / f"demo-start-{stamp}"
    data_dir = run_dir / "data"
    data_dir.mkdir(parents=True)
    load0 = os.getloadavg()
    runs: list[dict] = []
    base: list[dict] = []
    code = baseline_tree(args.baseline, run_dir / "baseline-code") if args.baseline else None
    base_dir = run_dir / "baseline-data"
    base_dir.mkdir()
    try:
        for i in range(args.runs):
            if code is not None:  # alternating, so that both see the same load
                r = one_run(base_dir, args.cameras, run_dir / f"baseline-{i + 1}.log", code)
                console.print(f"baseline run {i + 1}: first segment locked after {r['seconds']:.2f} s")
                base.append(r)
            r = one_run(data_dir, args.cameras, run_dir / f"demo-{i + 1}.log")
            console.print(f"run {i + 1}: first segment locked after {r['seconds']:.2f} s")
            runs.append(r)
    finally:
        result = {"started": stamp, "argv": sys.argv[1:] if argv is None else argv, "cpus": os.cpu_count(),
                  "load_before": load0, "load_after": os.getloadavg(), "goal_s": GOAL_S, "runs": runs,
                  "baseline": {"ref": args.baseline, "runs": base}}
        out_f = OUT / f"demo-start-{stamp}.json"
        out_f.write_text(json.dumps(result, indent=1))
        if not args.keep:
            for d in (data_dir, base_dir, run_dir / "baseline-code"):
                shutil.rmtree(d, ignore_errors=True)
    print_runs(runs, base)
    console.print(f"load average before {load0[0]:.2f} / after {result['load_after'][0]:.2f}; results: {out_f}")
    return 0 if len(runs) > 1 and runs[-1]["seconds"] < GOAL_S else 1


if __name__ == "__main__":
    sys.exit(main())
