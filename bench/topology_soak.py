"""bench/topology_soak: the topology test's script (issue 16 §3), repeated for longer.

    sudo .venv/bin/python -m bench.topology_soak [--rounds 5] [--cameras 8] [--segment-seconds 2] [--out FILE]

Runs as root (network namespaces).  Builds the same topology as tests/test_topology.py (its harness:
tests/netns.py, tests/topology.py, tests/topology_scenario.py): PostgreSQL, the SeaweedFS cluster,
N live cameras, an API node, two recorder nodes and a jobs node, each in its own namespace.  Each
round SIGKILLs ``rec-1`` (restarted), cuts ``rec-2`` off from PostgreSQL for three leases and kills
(then restarts) a volume server; after the last round an export's jobs node is SIGKILLed mid-way.
It prints per event kind the failover times measured (the hole between the old node's last footage
and the new node's first, per camera: min / median / max) and the verdict of the test's checks,
and writes everything as JSON (``--out``).  Exit 0 when the checks found nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--cameras", type=int, default=8)
    p.add_argument("--segment-seconds", type=float, default=2.0)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs of every node)")
    args = p.parse_args(argv)
    sys.path.insert(0, str(TESTS))  # the harness lives with the test it serves
    import netns
    import topology_scenario as sc
    from topology import LabCluster

    why = netns.available()
    if why:
        print(why, file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="lw-topology-soak-"))
    t0 = time.monotonic()
    with netns.Topology(work / "topo") as topo:
        lab = LabCluster(topo, work / "lab", cameras=args.cameras, segment_seconds=args.segment_seconds)
        try:
            lab.start_infrastructure()
            rep = sc.run(lab, rounds=args.rounds, log=lambda m: print(f"[{time.monotonic() - t0:7.1f}s] {m}", flush=True))
            problems = sc.check(lab, rep)
        finally:
            lab.stop_infrastructure()
    by_kind: dict[str, list[float]] = {}
    for e in rep.events:
        by_kind.setdefault(e.name.split("#")[0], []).extend(e.failover_s.values())
    summary = {
        "rounds": args.rounds, "cameras": args.cameras, "segment_seconds": args.segment_seconds,
        "wall_s": round(time.monotonic() - t0, 1), "lease_s": sc.LEASE_S, "renew_s": sc.RENEW_S,
        "failover_s": {k: {"n": len(v), "min": min(v), "median": statistics.median(v), "max": max(v)}
                       for k, v in by_kind.items() if v},
        "export": {k: v for k, v in rep.export.items() if k != "verify_out"},
        "events": rep.figures(), "problems": problems, "workdir": str(work) if args.keep else None,
    }
    text = json.dumps(summary, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.write_text(text)
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
