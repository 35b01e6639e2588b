"""Every uncovered part of a footage window has a reason, and clips + gaps tile it.

The policy (``index.tiling``) as a table; the spool's facts read from a real
spool (``recorder.spool_view``); then a real app on SQLite and PostgreSQL with a
camera registered mid-window, an outage still going on, footage waiting in the
spool while storage is stopped, and a test window fully covered inside margins
that are not.
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timezone

import pytest

from index.tiling import OpenGap, Part, SpoolState, spans_coverage, uncovered

S = 1000  # ms


def _tiles(lo: int, hi: int, clips, parts: list[Part]) -> None:
    """Clips (clipped to the window) and parts cover [lo, hi) exactly; parts overlap nothing."""
    runs = sorted((max(a, lo), min(b, hi)) for a, b in clips if min(b, hi) > max(a, lo))
    merged: list[list[int]] = []
    for a, b in runs:
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    pieces = sorted([(a, b, "clip") for a, b in merged] + [(p.start_ms, p.end_ms, p.reason) for p in parts])
    cursor = lo
    for a, b, what in pieces:
        assert a == cursor, (f"hole or overlap at {cursor} before {what} {a}-{b}", pieces)
        assert b > a, pieces
        cursor = b
    assert cursor == hi, pieces


# (name, window, clips, recorded gaps, registered, spool, now, expected parts as (start, end, reason[, since]))
CASES = [
    ("fully covered", (0, 100), [(0, 60), (60, 100)], [], 0, SpoolState(), 200, []),
    ("nothing known", (0, 100), [], [], None, SpoolState(), None, [(0, 100, "unknown")]),
    ("clips stick out of the window", (10, 90), [(0, 50), (50, 120)], [], 0, SpoolState(), 200, []),
    ("registered mid-window", (0, 100), [(50, 100)], [], 40, SpoolState(), 200,
     [(0, 40, "not_registered"), (40, 50, "unknown")]),
    ("recorded gap, clipped to what no clip covers", (0, 100), [(0, 30), (60, 100)], [(20, 70, "timeout")], 0,
     SpoolState(), 200, [(30, 60, "timeout")]),
    ("spooled segments back to back become one part", (0, 100), [(0, 40)], [], 0,
     SpoolState(pending=((40, 50), (50, 60), (60, 70))), 70, [(40, 70, "pending_upload"), (70, 100, "future")]),
    ("spooled footage beats a recorded gap", (0, 100), [(0, 40)], [(40, 100, "refused")], 0,
     SpoolState(pending=((40, 55),)), 200, [(40, 55, "pending_upload"), (55, 100, "refused")]),
    ("a gap journaled in the spool, not indexed yet", (0, 100), [(0, 40), (70, 100)], [], 0,
     SpoolState(gaps=((40, 70, "stream_ended"),)), 200, [(40, 70, "stream_ended")]),
    ("outage still going on, begun before the window", (100, 200), [], [], 0,
     SpoolState(open_gap=OpenGap(50, "refused", "连接被拒绝 / connection refused")), 170,
     [(100, 170, "camera_offline", 50), (170, 200, "future")]),
    ("outage still going on after footage", (0, 100), [(0, 30)], [], 0, SpoolState(open_gap=OpenGap(30, "timeout")), 80,
     [(30, 80, "camera_offline", 30), (80, 100, "future")]),
    ("an open gap says nothing without now", (0, 100), [(0, 30)], [], 0, SpoolState(open_gap=OpenGap(30, "timeout")),
     None, [(30, 100, "unknown")]),
    ("a recorded gap beats 'not registered' (camera re-added)", (0, 100), [], [(0, 20, "recorder_stopped")], 50,
     SpoolState(), 200, [(0, 20, "recorder_stopped"), (20, 50, "not_registered"), (50, 100, "unknown")]),
    ("overlapping recorded gaps: the earlier keeps the overlap", (0, 100), [], [(10, 60, "timeout"), (40, 90, "refused")],
     0, SpoolState(), 200, [(0, 10, "unknown"), (10, 60, "timeout"), (60, 90, "refused"), (90, 100, "unknown")]),
    ("the future of a test still running", (0, 100), [(0, 50)], [], 0, SpoolState(pending=((50, 58),)), 58,
     [(50, 58, "pending_upload"), (58, 100, "future")]),
    ("all of it", (0, 1000), [(300, 400), (500, 600)], [(400, 450, "stream_ended")], 200,
     SpoolState(pending=((600, 650),), open_gap=OpenGap(700, "refused")), 900,
     [(0, 200, "not_registered"), (200, 300, "unknown"), (400, 450, "stream_ended"), (450, 500, "unknown"),
      (600, 650, "pending_upload"), (650, 700, "unknown"), (700, 900, "camera_offline", 700), (900, 1000, "future")]),
]


@pytest.mark.parametrize("name,window,clips,gaps,registered,spool,now,expected", CASES, ids=[c[0] for c in CASES])
def test_uncovered_parts_get_one_reason_each(name, window, clips, gaps, registered, spool, now, expected):
    lo, hi = window
    parts = uncovered(lo, hi, clips, gaps=gaps, registered_ms=registered, spool=spool, now_ms=now)
    got = [(p.start_ms, p.end_ms, p.reason, p.since_ms) if p.since_ms is not None else (p.start_ms, p.end_ms, p.reason)
           for p in parts]
    assert got == expected
    _tiles(lo, hi, clips, parts)


def test_details_travel_with_their_part():
    parts = uncovered(0, 100, [], gaps=[(0, 40, "timeout", "读取超时 / read timed out")], registered_ms=0,
                      spool=SpoolState(open_gap=OpenGap(40, "refused", "连接被拒绝 / connection refused")), now_ms=100)
    assert [(p.reason, p.detail) for p in parts] == [("timeout", "读取超时 / read timed out"),
                                                      ("camera_offline", "refused: 连接被拒绝 / connection refused")]


def test_random_windows_always_tile():
    rng = random.Random(12)
    for _ in range(2000):
        lo = rng.randrange(0, 50)
        hi = lo + rng.randrange(1, 200)

        def spans(n):
            out = []
            for _ in range(n):
                a = rng.randrange(-20, 260)
                out.append((a, a + rng.randrange(1, 40)))
            return out

        clips = spans(rng.randrange(0, 8))
        gaps = [(a, b, rng.choice(("timeout", "refused"))) for a, b in spans(rng.randrange(0, 4))]
        og = OpenGap(rng.randrange(-20, 260), "timeout") if rng.random() < 0.4 else None
        spool = SpoolState(pending=tuple(sorted(spans(rng.randrange(0, 5)))), open_gap=og)
        now = rng.choice((None, rng.randrange(0, 300)))
        parts = uncovered(lo, hi, clips, gaps=gaps, registered_ms=rng.choice((None, rng.randrange(-10, 250))),
                          spool=spool, now_ms=now)
        _tiles(lo, hi, clips, parts)


@pytest.mark.parametrize("clips,spans,expected", [
    ([(0, 100)], [(10, 20)], 1.0),  # the test itself fully covered
    ([(0, 15)], [(10, 20)], 0.5),
    ([(0, 15), (12, 18)], [(10, 20)], 0.8),  # overlapping clips are counted once
    ([(10, 12), (30, 40)], [(10, 20), (30, 40)], 0.6),  # two tests merged into one window
    ([], [(10, 20)], 0.0),
    ([(0, 100)], [], 0.0),
])
def test_coverage_of_the_test_windows_themselves(clips, spans, expected):
    assert spans_coverage(clips, spans) == pytest.approx(expected)


# -- the spool's facts, read from a real spool ------------------------------------------
def test_spool_reader_reports_waiting_segments_gaps_and_the_open_outage(tmp_path):
    from datetime import timedelta

    from recorder.spool import CameraSpool, SpoolQuota
    from recorder.spool_view import SpoolReader
    from storage.layout import SegmentMeta, iso_ms

    t0 = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)
    ms0 = int(t0.timestamp() * 1000)
    sp = CameraSpool(tmp_path / "spool", "cam-s", SpoolQuota(tmp_path / "spool", None, 0))

    def commit(start_s: int, end_s: int) -> None:
        seq = sp.next_seq()
        out = sp.open_segment(seq, {"start_estimate": iso_ms(t0 + timedelta(seconds=start_s))})
        out.write(b"\0" * 100)
        sp.commit(seq, out, SegmentMeta(camera_id="cam-s", start=t0 + timedelta(seconds=start_s),
                                        end=t0 + timedelta(seconds=end_s), media_duration_ms=(end_s - start_s) * 1000,
                                        codec="h264", width=640, height=360, sha256=out.sha.hexdigest(), size=100,
                                        recorder_id="r", session_id="s", sequence=seq))

    commit(0, 10)
    commit(10, 20)
    sp.record_gap(t0 + timedelta(seconds=20), t0 + timedelta(seconds=25), "stream_ended", "码流结束 / stream ended")
    commit(25, 30)
    seq = sp.next_seq()  # being written now
    out = sp.open_segment(seq, {"start_estimate": iso_ms(t0 + timedelta(seconds=30))})
    out.write(b"\0" * 10)
    sp.open_gap(t0 + timedelta(seconds=40), "refused", "连接被拒绝 / connection refused")

    now = {"ms": time.time_ns() // 1_000_000}
    reader = SpoolReader(tmp_path / "spool", now_ms=lambda: now["ms"])
    st = reader.state(["cam-s", "cam-none", "../etc"])
    assert set(st) == {"cam-s"}  # no spool, no entry; an impossible id is not a path
    s = st["cam-s"]
    written = (sp.dir / f"{seq:012d}.mp4.part").stat().st_mtime_ns // 1_000_000
    assert s.pending == ((ms0, ms0 + 10 * S), (ms0 + 10 * S, ms0 + 20 * S), (ms0 + 25 * S, ms0 + 30 * S),
                         (ms0 + 30 * S, now["ms"]))  # written to just now: being recorded until now
    assert s.gaps == ((ms0 + 20 * S, ms0 + 25 * S, "stream_ended"),)
    assert s.open_gap == OpenGap(ms0 + 40 * S, "refused", "连接被拒绝 / connection refused")
    # a writer silent for long (killed, not recovered yet) holds footage up to its last write only
    now["ms"] = written + 60_000
    assert reader.state(["cam-s"])["cam-s"].pending[-1] == (ms0 + 30 * S, written)
    # released segments (stored and indexed) leave the view
    first = sp.committed()[0]
    first.state, first.indexed = "stored", True
    sp.release(first)
    assert reader.state(["cam-s"])["cam-s"].pending[0] == (ms0 + 10 * S, ms0 + 20 * S)


# -- a real app on SQLite and PostgreSQL ----------------------------------------------------
@pytest.fixture
def paused_storage_app(tmp_path_factory, tmp_path, rtsp, db_url):
    """labwitness recording ``cam-live`` in area ``lixue`` into its own SeaweedFS, which the
    test may stop; footage windows with 30 s margins.  Yields (client, runtime, seaweed)."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.runtime import Runtime
    from api.settings import load_settings
    from conftest import ACCESS, SECRET, free_port
    from index.models import Area
    from storage.seaweed import EmbeddedSeaweed

    sw = EmbeddedSeaweed(tmp_path_factory.mktemp("sw-gaps"), ACCESS, SECRET, supervise=False).start()
    try:
        settings = load_settings(
            data_dir=tmp_path / "data", database_url=db_url, s3_endpoint=sw.endpoint, s3_access_key=ACCESS,
            s3_secret_key=SECRET, s3_bucket="gap-footage", segment_seconds=1.0, report_margin_s=30,
            retention_jobs=False, discovery_port=free_port(), discovery_interfaces="127.0.0.1")
        with Runtime(settings) as rt:
            rt.registry.put_area(Area(id="lixue", name="力学室", created_ms=0), actor="test")
            rt.registry.add_camera(rt.new_camera("cam-live", rtsp.url("/live"), area_id="lixue"), actor="test")
            with TestClient(create_app(settings, rt, sync_interval_s=0.5)) as client:
                try:
                    yield client, rt, sw
                finally:
                    sw.resume()  # so that the runtime's exit can upload what is left
    finally:
        sw.stop()


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def _check_tiling(cam: dict) -> list[tuple[int, int, str]]:
    lo, hi = _ms(cam["window_start"]), _ms(cam["window_end"])
    parts = [Part(_ms(g["start"]), _ms(g["end"]), g["reason"]) for g in cam["gaps"]]
    _tiles(lo, hi, [(_ms(c["start"]), _ms(c["end"])) for c in cam["clips"]], parts)
    return [(p.start_ms, p.end_ms, p.reason) for p in parts]


def test_report_footage_explains_every_uncovered_part(paused_storage_app):
    """cam-live records; cam-late is registered mid-window and never connects (an
    outage going on); storage stops so footage waits in the spool; the test window
    is fully covered while its 30 s margins are not."""
    from fastapi.testclient import TestClient

    from conftest import free_port, wait_for
    from labwitness.clock import utc_ms
    from webtools import sign_in

    client, rt, sw = paused_storage_app
    wait_for(lambda: len(list(rt.index.iter_segments("cam-live"))) >= 6, 60, what="indexed segments")
    segs = list(rt.index.iter_segments("cam-live"))
    started, ended = segs[1].start_ms, segs[-1].end_ms  # a test window inside indexed footage
    assert all(a.end_ms == b.start_ms for a, b in zip(segs[1:], segs[2:])), "footage of the test window is contiguous"
    rt.registry.add_camera(rt.new_camera("cam-late", f"rtsp://127.0.0.1:{free_port()}/nothing-listens", area_id="lixue"),
                           actor="test")
    wait_for(lambda: getattr(rt.spool_view.state(["cam-late"]).get("cam-late"), "open_gap", None), 30,
             what="cam-late's outage in its spool")
    tokens = {r: rt.tokens.create(f"gaps-{r}", r, "test")[1] for r in ("inspector", "ingest")}
    ingest, inspector = TestClient(client.app), TestClient(client.app)
    ingest.headers["Authorization"] = f"Bearer {tokens['ingest']}"
    inspector.headers["Authorization"] = f"Bearer {tokens['inspector']}"
    rec = {"report_no": "JC-GAPS-1", "area_ids": ["lixue"], "started_at": _iso(started), "ended_at": _iso(ended)}
    assert ingest.put("/api/v1/test-records/REC-G1", json=rec).status_code == 201

    sw.pause()  # storage stops: what is recorded from now on waits in the spool
    spool_dir = rt.settings.spool_path / "cam-live"
    wait_for(lambda: len(list(spool_dir.glob("[0-9]" * 12 + ".json"))) >= 3, 30, what="segments waiting in the spool")
    waiting = rt.spool_view.state(["cam-live"])["cam-live"].pending[:-1]  # committed ones; the last is being written
    outage = rt.spool_view.state(["cam-late"])["cam-late"].open_gap
    before = utc_ms(datetime.now(timezone.utc))
    body = inspector.get("/api/v1/reports/JC-GAPS-1/footage").json()
    after = utc_ms(datetime.now(timezone.utc))
    from api.records_routes import ReportFootage

    ReportFootage.model_validate(body)
    cams = {c["camera_id"]: c for c in body["cameras"]}
    assert set(cams) == {"cam-live", "cam-late"}
    lo, hi = started - 30 * S, ended + 30 * S

    # cam-live: the test itself fully covered, the margins not; each uncovered part says why
    live = cams["cam-live"]
    parts = _check_tiling(live)
    assert (_ms(live["window_start"]), _ms(live["window_end"])) == (lo, hi)
    assert live["test_coverage"] == 1.0
    covered = sum(min(_ms(c["end"]), hi) - max(_ms(c["start"]), lo) for c in live["clips"])
    assert live["coverage"] == round(covered / (hi - lo), 6) and live["coverage"] < 0.6
    registered_live = rt.registry.camera("cam-live").created_ms
    assert parts[0] == (lo, registered_live, "not_registered")
    assert {r for _, _, r in parts} <= {"not_registered", "unknown", "pending_upload", "future"}, parts
    pending = [(a, b) for a, b, r in parts if r == "pending_upload"]
    for a, b in waiting:  # every segment waiting in the spool is shown as such (or stored by now)
        assert any(pa <= a and b <= pb for pa, pb in pending) or any(
            _ms(c["start"]) <= a and b <= _ms(c["end"]) for c in live["clips"]), (a, b, parts)
    assert sum(b - a for a, b in pending) >= 2 * S
    last = parts[-1]
    assert last[2] == "future" and before <= last[0] <= after and last[1] == hi
    unknown = sum(b - a for a, b, r in parts if r == "unknown")
    assert unknown < 5 * S, parts  # at most the camera's connection set-up after registration

    # cam-late: registered mid-window, offline since its first attempt, nothing recorded
    late = cams["cam-late"]
    parts = _check_tiling(late)
    assert late["clips"] == [] and late["coverage"] == 0.0 and late["test_coverage"] == 0.0
    registered_late = rt.registry.camera("cam-late").created_ms
    assert lo < registered_late < hi
    reasons = [r for _, _, r in parts]
    assert reasons in (["not_registered", "camera_offline", "future"], ["not_registered", "unknown", "camera_offline", "future"])
    assert parts[0] == (lo, registered_late, "not_registered")
    offline = next(g for g in late["gaps"] if g["reason"] == "camera_offline")
    assert _ms(offline["since"]) == outage.start_ms == _ms(offline["start"]) and registered_late <= outage.start_ms
    assert offline["detail"].startswith(outage.reason) and outage.reason in ("refused", "unreachable", "timeout")

    # camera footage by time says the same
    window = {"start": _iso(lo), "end": _iso(hi)}
    by_time = inspector.get("/api/v1/cameras/cam-late/footage", params=window).json()
    assert [g["reason"] for g in by_time["gaps"]] == reasons
    assert _ms(next(g for g in by_time["gaps"] if g["reason"] == "camera_offline")["since"]) == outage.start_ms
    live_by_time = inspector.get("/api/v1/cameras/cam-live/footage", params=window).json()
    assert "pending_upload" in {g["reason"] for g in live_by_time["gaps"]}
    assert live_by_time["gaps"][0]["reason"] == "not_registered"

    # the web UI shows the reasons and both coverage figures, in zh-CN and English
    browser = sign_in(client.app, tokens["inspector"])
    page = browser.get("/ui/report", params={"no": "JC-GAPS-1"}).text
    for text in ("摄像机离线（仍在中断）", "摄像机尚未登记", "已录制，等待上传存储", "试验时段覆盖率", "100.0%"):
        assert text in page, text
    assert 'rect class="pending"' in page and 'data-reason="camera_offline"' in page
    browser.get("/lang/en")
    page = browser.get("/ui/report", params={"no": "JC-GAPS-1"}).text
    for text in ("camera offline (still going on)", "camera not registered yet", "recorded, waiting in the spool",
                 "test window coverage", "offline since"):
        assert text in page, text


def _iso(ms: int) -> str:
    from labwitness.clock import from_ms

    return from_ms(ms).isoformat()
