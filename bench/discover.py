"""Discovery benchmark: many simulated ONVIF cameras on loopback.

    python -m bench.discover [--cameras 50] [--timeout 2.0] [--rounds 3]

Starts N :class:`~simulator.onvif.OnvifCameraSimulator` in
this process (one idle thread, one HTTP and two UDP sockets each) sharing a
free WS-Discovery port on 127.0.0.1, and measures, ``--rounds`` times each:

(a) multicast probe (``discover(query_devices=False)``): wall time until the
    complete result, cameras found / missing / listed twice, datagrams read;
(b) directed probe to every camera's unicast address, multicast off (the
    scan ends as soon as every target answered);
(c) the full scan: multicast probe, then the ONVIF queries of every camera
    (device information, clock offset, services, profiles, stream and
    snapshot URIs) with digest auth, 32 at a time (the default).

Goal for (a) and (b): within the probe timeout + 1 s, every camera found,
none twice. Results are printed and written to ``bench/out/discover-*.json``.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from camera_discovery.discovery import discover
from camera_discovery.models import DiscoveredDevice
from camera_discovery.probe import probe
from simulator.onvif import OnvifCameraSimulator

OUT = Path(__file__).resolve().parent / "out"
USER, PASSWORD = "admin", "bench-pw"
console = Console(width=None if sys.stdout.isatty() else 130)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _measure(run: Callable[[], tuple[list[str], int, int]], expected: set[str]) -> dict:
    started = time.monotonic()
    endpoints, answers, errors = run()
    elapsed = time.monotonic() - started
    return {
        "elapsed_s": round(elapsed, 3),
        "found": len(set(endpoints) & expected),
        "missing": len(expected - set(endpoints)),
        "listed_twice": len(endpoints) - len(set(endpoints)),
        "unexpected": len(set(endpoints) - expected),
        "datagrams": answers,
        "device_errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cameras", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=2.0, help="probe timeout, seconds")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    port = _free_port()
    started = time.monotonic()
    sims = [
        OnvifCameraSimulator(
            name=f"bench cam {i:03d}", rtsp_url=f"rtsp://127.0.0.1:8554/cam{i}",
            sub_rtsp_url=f"rtsp://127.0.0.1:8554/cam{i}-sub", username=USER, password=PASSWORD,
            clock_offset_s=(i % 7) * 1.5 - 4.0, discovery_port=port,
        ).start()
        for i in range(args.cameras)
    ]
    console.print(f"{len(sims)} simulated cameras on 127.0.0.1, WS-Discovery port {port}, "
                  f"started in {time.monotonic() - started:.2f} s")
    expected = {s.endpoint for s in sims}
    offsets = {s.endpoint: s.clock_offset_s for s in sims}

    def multicast() -> tuple[list[str], int, int]:
        result = probe(args.timeout, port=port, interfaces=["127.0.0.1"])
        return [m.endpoint for m in result.matches], result.answers, len(result.bad_answers)

    def directed() -> tuple[list[str], int, int]:
        result = probe(args.timeout, [s.discovery_address for s in sims], port=port, multicast=False)
        return [m.endpoint for m in result.matches], result.answers, len(result.bad_answers)

    worst_offset_error = [0.0]

    def full_scan() -> tuple[list[str], int, int]:
        devices: list[DiscoveredDevice] = discover(
            args.timeout, port=port, interfaces=["127.0.0.1"], username=USER, password=PASSWORD)
        for d in devices:
            if d.endpoint in offsets and d.clock_offset_s is not None:
                worst_offset_error[0] = max(worst_offset_error[0], abs(d.clock_offset_s - offsets[d.endpoint]))
        return [d.endpoint or "" for d in devices], 0, sum(1 for d in devices if d.error)

    results: dict[str, list[dict]] = {"multicast": [], "directed": [], "full_scan": []}
    try:
        for _ in range(args.rounds):
            results["multicast"].append(_measure(multicast, expected))
            results["directed"].append(_measure(directed, expected))
            results["full_scan"].append(_measure(full_scan, expected))
    finally:
        for sim in sims:
            sim.stop()

    goal = args.timeout + 1.0
    table = Table(title=f"discovery of {args.cameras} cameras on loopback (probe timeout {args.timeout:g} s)")
    for column in ("mode", "elapsed s (median / max)", "found", "missing", "twice", "datagrams", "errors", "goal"):
        table.add_column(column)
    for mode, rounds in results.items():
        elapsed = [r["elapsed_s"] for r in rounds]
        ok = all(r["missing"] == 0 and r["listed_twice"] == 0 and r["device_errors"] == 0 for r in rounds)
        within = max(elapsed) <= goal if mode != "full_scan" else True
        table.add_row(
            mode, f"{statistics.median(elapsed):.3f} / {max(elapsed):.3f}",
            str(min(r["found"] for r in rounds)), str(max(r["missing"] for r in rounds)),
            str(max(r["listed_twice"] for r in rounds)), str(max(r["datagrams"] for r in rounds)),
            str(max(r["device_errors"] for r in rounds)),
            ("[green]met[/]" if ok and within else "[red]missed[/]") if mode != "full_scan" else "-",
        )
    console.print(table)
    console.print(f"full scan: worst clock-offset error {worst_offset_error[0]:.3f} s "
                  f"(offsets from {min(offsets.values()):+.1f} to {max(offsets.values()):+.1f} s)")
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"discover-{datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps({
        "cameras": args.cameras, "probe_timeout_s": args.timeout, "goal_s": goal,
        "worst_clock_offset_error_s": round(worst_offset_error[0], 3), "results": results,
    }, indent=1))
    console.print(f"written to {path}")


if __name__ == "__main__":
    main()
