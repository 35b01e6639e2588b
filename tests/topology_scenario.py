"""The topology script (issue 16 §3), shared by tests/test_topology.py and bench/topology_soak.py.

Two recorder nodes, one API node, a jobs node, PostgreSQL, the SeaweedFS cluster and N live
cameras, each in its own namespace (tests/topology.py).  :func:`run` plays the faults in order and
returns what happened (:class:`Report`); :func:`check` says what is wrong with it:

1. steady state: every camera recorded, by exactly one node;
2. SIGKILL ``rec-1``: its cameras go to ``rec-2``; ``rec-1`` is restarted;
3. ``rec-2`` cut off from PostgreSQL (blackhole routes both ways) for longer than a lease: its
   cameras go to ``rec-1``; healed, its spool uploads;
4. SIGKILL one volume server: recording and uploads go on;
5. an export started on the API node; the jobs node running it SIGKILLed mid-export; a second jobs
   node finishes it; the package verifies with the lab's key.

Throughout, the API node's ``/api/v1/health`` is read every second; afterwards the index is read
directly: each camera's footage is complete but for ``failover`` gaps (each ≤ 15 s), and two nodes
overlap on a camera only around a failover.
"""

from __future__ import annotations

import threading
import time
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone

import httpx
from sqlalchemy import create_engine, inspect, text

from topology import LabCluster

LEASE_S = 6.0
RENEW_S = 1.5
FAILOVER_GOAL_S = 15.0
PARTITION_S = 3 * LEASE_S  # "longer than a lease"
#: the only holes footage may have: a node lost (``failover``) or a camera moved by a node stopping or
#: rebalancing (``handover``, at a segment boundary), each at most FAILOVER_GOAL_S
MOVE_REASONS = ("failover", "handover")
STOP_SLACK_S = 2.0  # a cut node's last segment is closed at most this long after its lease ran out
LEASE_ENV = {"LABWITNESS_LEASE_SECONDS": str(LEASE_S), "LABWITNESS_LEASE_RENEW_SECONDS": str(RENEW_S)}


def now_ms() -> int:
    return int(time.time() * 1000)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class Event:
    name: str  # kill-rec-1, partition-rec-2, kill-volume, kill-jobs-1
    node: str
    at_ms: int
    until_ms: int | None = None  # a partition's end
    cameras: list[str] = field(default_factory=list)  # the cameras the node held then
    moved_ms: dict[str, int] = field(default_factory=dict)  # camera -> when footage resumed on another node
    failover_s: dict[str, float] = field(default_factory=dict)  # camera -> hole between the two nodes' footage
    stopped_s: dict[str, float] = field(default_factory=dict)  # partition: camera -> the cut node's footage end, after the cut


@dataclass
class Report:
    started_ms: int = 0  # steady state reached
    ended_ms: int = 0
    events: list[Event] = field(default_factory=list)
    health: list[tuple[int, dict]] = field(default_factory=list)
    export: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # found while running

    def event(self, name: str) -> Event:
        return next(e for e in self.events if e.name == name)

    def figures(self) -> dict:
        return {e.name: {"node": e.node, "cameras": e.cameras, "failover_s": e.failover_s,
                          **({"stopped_after_cut_s": e.stopped_s} if e.stopped_s else {})} for e in self.events}


class Index:
    """Reads of the cluster's PostgreSQL from the test's namespace."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url, pool_pre_ping=True)
        cols = {c["name"] for c in inspect(self.engine).get_columns("segment")}
        self.writer = "COALESCE(node_id, recorder_id)" if "node_id" in cols else "recorder_id"

    def segments(self, camera: str, since_ms: int = 0) -> list[tuple[int, int, str]]:
        with self.engine.connect() as c:
            rows = c.execute(text(f"SELECT start_ms, end_ms, {self.writer} FROM segment WHERE camera_id = :c "
                                  "AND end_ms > :s ORDER BY start_ms"), {"c": camera, "s": since_ms}).all()
        return [tuple(r) for r in rows]

    def gaps(self, camera: str, since_ms: int = 0) -> list[tuple[int, int, str]]:
        with self.engine.connect() as c:
            rows = c.execute(text("SELECT start_ms, end_ms, reason FROM gap WHERE camera_id = :c AND end_ms > :s "
                                  "ORDER BY start_ms"), {"c": camera, "s": since_ms}).all()
        return [tuple(r) for r in rows]

    def holders(self) -> dict[str, str | None]:
        with self.engine.connect() as c:
            rows = c.execute(text("SELECT camera_id, node_id, expires_at_ms FROM camera_lease")).all()
        t = now_ms()
        return {cam: (node if node and exp > t else None) for cam, node, exp in rows}

    def sessions(self) -> str:
        """The database's view of its clients and who holds lease rows locked: why a claim may not happen."""
        with self.engine.connect() as c:
            act = c.execute(text("SELECT pid, client_addr, state, now() - xact_start AS xact_age, left(query, 80) "
                                 "FROM pg_stat_activity WHERE datname IS NOT NULL AND pid <> pg_backend_pid() "
                                 "AND state <> 'idle' ORDER BY xact_start")).all()
            locks = c.execute(text("SELECT l.pid, a.client_addr, l.mode, l.granted FROM pg_locks l JOIN pg_stat_activity a "
                                   "USING (pid) WHERE l.relation = 'camera_lease'::regclass")).all()
        return "sessions not idle:\n" + "\n".join(map(str, act)) + "\nlocks on camera_lease:\n" + "\n".join(map(str, locks))

    def last_writer(self, camera: str) -> str | None:
        segs = self.segments(camera, now_ms() - 60_000)
        return segs[-1][2] if segs else None


def wait(pred, timeout: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


class HealthPoller(threading.Thread):
    def __init__(self, url: str, token: str, report: Report) -> None:
        super().__init__(daemon=True)
        self.url, self.token, self.report, self.stop = url, token, report, threading.Event()

    def run(self) -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {self.token}"}, timeout=5) as client:
            while not self.stop.wait(1.0):
                try:
                    r = client.get(f"{self.url}/api/v1/health")
                    if r.status_code in (200, 503):
                        self.report.health.append((now_ms(), r.json()))
                except (httpx.TransportError, ValueError):
                    pass


def _moved(idx: Index, ev: Event, away_from: str, timeout: float) -> None:
    """Wait until each of ``ev.cameras`` has footage from a node other than ``away_from`` after ``ev.at_ms``;
    the failover time is the hole between the old node's last footage and the new node's first."""
    def done():
        for cam in ev.cameras:
            if cam in ev.moved_ms:
                continue
            segs = idx.segments(cam, ev.at_ms - 30_000)
            new = [s for s in segs if s[2] != away_from and s[0] >= ev.at_ms - 1000]
            if new:
                old_end = max((s[1] for s in segs if s[2] == away_from and s[0] < new[0][0]), default=ev.at_ms)
                ev.moved_ms[cam] = new[0][0]
                ev.failover_s[cam] = round((new[0][0] - old_end) / 1000, 2)
        return len(ev.moved_ms) == len(ev.cameras)
    try:
        wait(done, timeout, f"{ev.name}: cameras {ev.cameras} recording elsewhere")
    except AssertionError as e:
        raise AssertionError(f"{e}; moved: {ev.moved_ms}; leases now: {idx.holders()}\n{idx.sessions()}") from None


def run(lab: LabCluster, *, token_out: list | None = None, rounds: int = 1, log=print) -> Report:
    rep = Report()
    t = lab.topo
    bootstrap = "topo-" + __import__("secrets").token_urlsafe(24)
    lab.extra_env.update({**LEASE_ENV, "LABWITNESS_BOOTSTRAP_ADMIN_TOKEN": bootstrap})
    lab.start_node("api", "api")
    lab.wait_up("api")
    api = httpx.Client(base_url=lab.base_url("api"), headers={"Authorization": f"Bearer {bootstrap}"}, timeout=30)
    assert api.post("/api/v1/areas", json={"id": "topo", "name": "拓扑测试区"}).status_code in (200, 201)
    for i, cam in enumerate(lab.camera_ids()):
        r = api.post("/api/v1/cameras", json={"id": cam, "rtsp_url": lab.camera_url(i), "area_id": "topo"})
        assert r.status_code == 201, r.text
    keys = api.get("/.well-known/labwitness-keys.json").json()["keys"]
    (lab.workdir / "lab.pub").write_text(keys[0]["public_key_pem"])
    if token_out is not None:
        token_out.append(bootstrap)
    for name, roles in (("rec-1", "recorder"), ("rec-2", "recorder"), ("jobs-1", "jobs")):
        lab.start_node(name, roles)
    for name in ("rec-1", "rec-2", "jobs-1"):
        lab.wait_up(name)
    idx = Index(lab.pg.url)
    poller = HealthPoller(lab.base_url("api"), bootstrap, rep)
    poller.start()
    cams = lab.camera_ids()
    try:
        # 1. steady state
        wait(lambda: all(len(idx.segments(c)) >= 3 for c in cams), 120, "every camera recorded")
        wait(lambda: {idx.last_writer(c) for c in cams} == {"rec-1", "rec-2"}, 60,
             "cameras spread over both recorders")
        rep.started_ms = now_ms()
        time.sleep(3 * lab.segment_seconds)
        for round_no in range(rounds):
            log(f"round {round_no + 1}: steady, holders {idx.holders()}")
            _round(lab, idx, rep, suffix="" if rounds == 1 else f"#{round_no + 1}", log=log)
        # 5. an export, its jobs node killed mid-way
        _export(lab, api, rep, log)
        time.sleep(2 * lab.segment_seconds)
        rep.ended_ms = now_ms() - int(3 * lab.segment_seconds * 1000)  # what is surely uploaded by now
        wait(lambda: all(idx.segments(c, rep.ended_ms) for c in cams), 60, "footage past the end of the script")
    finally:
        poller.stop.set()
        poller.join(10)
    return rep


def _round(lab: LabCluster, idx: Index, rep: Report, *, suffix: str, log) -> None:
    cams = lab.camera_ids()
    # 2. SIGKILL a recorder node
    held = [c for c in cams if idx.last_writer(c) == "rec-1"]
    ev = Event("kill-rec-1" + suffix, "rec-1", now_ms(), cameras=held)
    lab.kill_node("rec-1")
    rep.events.append(ev)
    _moved(idx, ev, "rec-1", LEASE_S + 60)
    log(f"{ev.name}: failover {ev.failover_s}")
    lab.start_node("rec-1", "recorder")
    lab.wait_up("rec-1")
    time.sleep(LEASE_S + 2 * lab.segment_seconds)  # rec-1 back, heartbeating, claims what is free
    # 3. partition the other from PostgreSQL for longer than a lease
    held = [c for c in cams if idx.last_writer(c) == "rec-2"]
    ev = Event("partition-rec-2" + suffix, "rec-2", now_ms(), cameras=held)
    lab.topo.cut("rec-2", "db")
    rep.events.append(ev)
    try:
        _moved(idx, ev, "rec-2", PARTITION_S + 60)
        remaining = PARTITION_S - (now_ms() - ev.at_ms) / 1000
        if remaining > 0:
            time.sleep(remaining)
    finally:
        lab.topo.heal("rec-2", "db")
        ev.until_ms = now_ms()
    log(f"{ev.name}: failover {ev.failover_s}")
    spool = lab.workdir / "spool" / "rec-2"
    # what the cut node's spool held at the heal must upload; it may record again by now (a camera shed to it),
    # so the segments it writes after the heal are not waited for
    kept = {p.with_name(p.name.removesuffix(".part")) for p in spool.rglob("*.mp4*")}
    wait(lambda: not [p for p in kept if p.exists() or p.with_name(p.name + ".part").exists()], 120,
         "rec-2's spool uploaded after the partition")
    for cam in ev.cameras:  # when the cut node stopped recording: its lease ran out, it could not renew
        ends = [s[1] for s in idx.segments(cam, ev.at_ms - 30_000) if s[2] == "rec-2" and s[0] < ev.until_ms]
        ev.stopped_s[cam] = round((max(ends, default=ev.at_ms) - ev.at_ms) / 1000, 2)
    # 4. a volume server dies; recording and uploads go on
    victim = "volume-2" if "volume-2" in lab.storage.procs else next(n for n in lab.storage.procs if n.startswith("volume"))
    ev = Event("kill-volume" + suffix, victim, now_ms(), cameras=list(cams))
    lab.storage.kill(victim)
    rep.events.append(ev)
    after = ev.at_ms + int(2 * lab.segment_seconds * 1000)
    wait(lambda: all(idx.segments(c, after) for c in cams), 60, "footage stored after the volume server died")
    lab.storage.start_component(victim)
    log(f"{ev.name}: uploads went on")


def _export(lab: LabCluster, api: httpx.Client, rep: Report, log) -> None:
    started, ended = rep.started_ms, now_ms() - int(2 * lab.segment_seconds * 1000)
    rec = {"report_no": "JC-TOPO-1", "commission_no": "WT-TOPO-1", "project_name": "拓扑", "test_item": "failover",
           "sample_ids": ["S-1"], "area_ids": ["topo"], "equipment_ids": [], "operator": "张三",
           "started_at": iso(started), "ended_at": iso(ended)}
    r = api.put("/api/v1/test-records/REC-TOPO-1", json=rec)
    assert r.status_code in (200, 201), r.text
    r = api.post("/api/v1/reports/JC-TOPO-1/exports")
    assert r.status_code == 202, r.text
    pkg = r.json()
    # ``state`` is the queue's own (queued | running | done | failed); ``status`` stays "running" while queued
    seen = wait(lambda: (s := api.get(pkg["status_url"]).json()).get("state", s["status"]) != "queued" and s, 120,
                "the export to be taken by a jobs node", interval=0.05)
    ev = Event("kill-jobs-1", "jobs-1", now_ms())
    lab.kill_node("jobs-1")
    rep.events.append(ev)
    rep.export = {"id": pkg["id"], "status_at_kill": seen.get("state", seen["status"]), "worker": seen.get("worker"),
                  "progress_at_kill": seen.get("progress")}
    lab.start_node("jobs-2", "jobs")
    done = wait(lambda: (s := api.get(pkg["status_url"]).json()).get("state", s["status"]) in ("done", "failed") and s, 240,
                "the export to finish on jobs-2")
    rep.export.update(status=done.get("state", done["status"]), finished_by=done.get("worker"), error=done.get("error"),
                      finished_s=round((now_ms() - ev.at_ms) / 1000, 1))
    if done["status"] == "done":
        path = lab.workdir / "evidence.zip"
        with api.stream("GET", done["download_url"]) as resp:
            assert resp.status_code == 200
            with open(path, "wb") as f:
                for chunk in resp.iter_bytes():
                    f.write(chunk)
        with zipfile.ZipFile(path) as zf:
            rep.export["files"] = sorted(n for n in zf.namelist() if n.endswith(".mp4"))
        v = lab.lw(["verify", str(path), "--public-key", str(lab.workdir / "lab.pub")])
        rep.export["verify_exit"] = v.returncode
        rep.export["verify_out"] = v.stderr[-500:]
    log(f"export: {rep.export}")


# -- the verdict ---------------------------------------------------------------------------------

def failover_windows(rep: Report) -> list[tuple[int, int]]:
    """Where two nodes may both have footage of a camera, or neither: around each recorder event."""
    out = []
    for e in rep.events:
        if e.name.startswith(("kill-rec", "partition-rec")):
            end = max([e.until_ms or e.at_ms, *e.moved_ms.values()]) + int(FAILOVER_GOAL_S * 1000)
            out.append((e.at_ms - int(LEASE_S * 1000) - 5000, end))
    return out


def check(lab: LabCluster, rep: Report) -> list[str]:
    idx = Index(lab.pg.url)
    problems = list(rep.problems)
    windows = failover_windows(rep)
    lo, hi = rep.started_ms, rep.ended_ms
    for cam in lab.camera_ids():
        segs = [s for s in idx.segments(cam, lo) if s[0] < hi]
        gaps = [g for g in idx.gaps(cam, lo) if g[0] < hi]
        for g in gaps:
            if g[2] in MOVE_REASONS and (g[1] - g[0]) / 1000 > FAILOVER_GOAL_S:
                problems.append(f"{cam}: {g[2]} gap {iso(g[0])} of {(g[1] - g[0]) / 1000:.1f}s > {FAILOVER_GOAL_S}s")
        # every moment of [lo, hi] is footage or a failover gap
        cursor = lo
        for start, end, _ in segs:
            if start > cursor + 500:
                holes = _uncovered(cursor, start, [g for g in gaps if g[2] in MOVE_REASONS])
                for a, b in holes:
                    reasons = sorted({g[2] for g in gaps if g[0] < b and g[1] > a})
                    problems.append(f"{cam}: {(b - a) / 1000:.1f}s without footage at {iso(a)} "
                                    f"(gaps there: {reasons or 'none'})")
            cursor = max(cursor, end)
        if cursor < hi - 500:
            problems.append(f"{cam}: no footage after {iso(cursor)}")
        # two nodes on the same time: only around a failover
        for i, a in enumerate(segs):
            for b in segs[i + 1:]:
                if b[0] >= a[1]:
                    break
                overlap = (max(a[0], b[0]), min(a[1], b[1]))
                if a[2] == b[2]:
                    problems.append(f"{cam}: {a[2]} has two segments over {iso(overlap[0])}")
                elif not any(w0 <= overlap[0] and overlap[1] <= w1 for w0, w1 in windows):
                    problems.append(f"{cam}: {a[2]} and {b[2]} both recorded {iso(overlap[0])}–{iso(overlap[1])}, "
                                    "outside any failover")
    for e in rep.events:
        for cam, s in e.stopped_s.items():
            # it renewed last at most just before the cut; its lease ends LEASE_S later, and so must its footage
            if s > LEASE_S + STOP_SLACK_S:
                problems.append(f"{e.name}: {e.node} went on recording {cam} {s}s after the cut, past its lease "
                                f"({LEASE_S}s + {STOP_SLACK_S}s)")
        for cam, s in e.failover_s.items():
            if s > FAILOVER_GOAL_S:
                problems.append(f"{e.name}: {cam} took {s}s to resume elsewhere (> {FAILOVER_GOAL_S}s)")
    if rep.export.get("status") != "done":
        problems.append(f"export did not finish: {rep.export}")
    elif rep.export.get("verify_exit") != 0:
        problems.append(f"export does not verify: {rep.export.get('verify_out')}")
    problems += health_problems(rep)
    return problems


def _uncovered(a: int, b: int, gaps: list[tuple[int, int, str]], slack: int = 500) -> list[tuple[int, int]]:
    out, cursor = [], a
    for g0, g1, _ in sorted(gaps):
        if g1 <= cursor or g0 >= b:
            continue
        if g0 > cursor + slack:
            out.append((cursor, g0))
        cursor = max(cursor, g1)
    if cursor < b - slack:
        out.append((cursor, b))
    return out


def _nodes_in(doc) -> list[dict]:
    """The per-node entries of a health document, wherever it lists them (``nodes``: a list or a map)."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k in ("nodes", "cluster_nodes") and isinstance(v, list):
                return [n for n in v if isinstance(n, dict)]
            if k in ("nodes", "cluster_nodes") and isinstance(v, dict):
                return [{"node_id": nid, **n} for nid, n in v.items() if isinstance(n, dict)]
            found = _nodes_in(v)
            if found:
                return found
    return []


def _node_ok(entry: dict) -> bool:
    for key in ("status", "state"):
        if key in entry:
            return str(entry[key]).lower() in ("ok", "up", "alive", "running", "healthy")
    if "alive" in entry:
        return bool(entry["alive"])
    return True


def health_problems(rep: Report) -> list[str]:
    """Health must have shown each node event (the node not ok) and each failover (a ``failover`` gap)."""
    problems = []
    if rep.health and not any(_nodes_in(doc) for _, doc in rep.health):
        problems.append("health lists no nodes at all (GET /api/v1/health: expected a `nodes` list of "
                        "{node_id, status|state}, from the cluster_node heartbeats)")
    for e in rep.events:
        if e.name.startswith("kill-volume"):
            continue  # the store's own health: checked by helper s3cluster's tests, not visible per volume here
        end = (e.until_ms or e.at_ms) + 30_000
        seen = False
        for at, doc in rep.health:
            if e.at_ms <= at <= end:
                entry = next((n for n in _nodes_in(doc) if n.get("node_id", n.get("id")) == e.node), None)
                if entry is not None and not _node_ok(entry):
                    seen = True
                    break
        if not seen:
            problems.append(f"health never showed {e.node} down/stale after {e.name}")
        if e.cameras and not any(g.get("reason") == "failover"
                                 for at, doc in rep.health if at >= e.at_ms
                                 for c in (doc.get("cameras") or {}).values() if isinstance(c, dict)
                                 for g in c.get("gaps", [])):
            problems.append(f"health never listed a failover gap after {e.name}")
    return problems
