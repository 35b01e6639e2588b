import pytest

from recorder.backoff import Backoff, RetryGate
from recorder.timing import SessionTimeline


def test_first_segment_anchored_on_least_delayed_packet():
    tl = SessionTimeline()
    # true origin 1000.0; delays 0.30, 0.05, 0.20 s
    for media, delay in [(0.0, 0.30), (0.04, 0.05), (0.08, 0.20)]:
        tl.observe(media, 1000.0 + media + delay)
    start, end = tl.close_segment(0.0, 2.0)
    assert start == pytest.approx(1000.05)
    assert end == pytest.approx(1002.05)


@pytest.mark.parametrize(
    "local_drift_s, expected_end",
    [
        (0.0, 2000.0 + 60.0),  # clocks agree
        (+0.100, 2000.0 + 60.0 * (1 + 500e-6)),  # host says longer: clamped at +500 ppm
        (-0.100, 2000.0 + 60.0 * (1 - 500e-6)),  # host says shorter: clamped at -500 ppm
        (+0.001, 2000.0 + 60.001),  # within the band: follows the host clock
    ],
)
def test_later_segments_contiguous_and_rate_clamped(local_drift_s, expected_end):
    tl = SessionTimeline()
    tl.observe(0.0, 1940.0)
    s0, e0 = tl.close_segment(0.0, 60.0)
    assert (s0, e0) == (1940.0, 2000.0)
    tl.observe(60.0, 2000.0 + local_drift_s)
    tl.observe(120.0, 2060.0 + local_drift_s)
    s1, e1 = tl.close_segment(60.0, 120.0)
    assert s1 == e0  # contiguous
    assert e1 == pytest.approx(expected_end)


def test_close_without_packets_is_an_error():
    with pytest.raises(ValueError):
        SessionTimeline().close_segment(0, 1)


def test_backoff_schedule():
    b = Backoff(initial_s=0.25, cap_s=10)
    delays = [b.next_delay() for _ in range(10)]
    assert delays[0] == 0.0
    assert delays[1:7] == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0]
    assert delays[7:] == [10.0, 10.0, 10.0]
    b.reset()
    assert b.next_delay() == 0.0


def test_retry_gate_closes_for_the_backoff_delay_never_less_than_its_floor():
    """The uploader's gate per resource (storage, index): a failure closes it for the next
    backoff delay (at least 0.5 s, also the first time), a success opens it for good."""
    g = RetryGate(initial_s=0.5, cap_s=4.0)
    assert g.is_open(0.0)
    delays = [g.failed(100.0) for _ in range(6)]
    assert delays == [0.5, 0.5, 1.0, 2.0, 4.0, 4.0]
    assert not g.is_open(103.9) and g.is_open(104.0)  # retry time from the last failure
    g.succeeded()
    assert g.is_open(0.0) and g.failed(200.0) == 0.5 and not g.is_open(200.4)


@pytest.mark.parametrize("state, age_s, stalled", [
    ("recording", 10, False),
    ("recording", 4 * 60 + 10 - 1, False),  # a long GOP may stretch a segment to 4 x target
    ("recording", 4 * 60 + 10 + 1, True),
    ("reconnecting", 10_000, False),  # reported as reconnecting, not as stalled
])
def test_health_by_output_not_liveness(tmp_path, state, age_s, stalled):
    from datetime import datetime, timedelta, timezone

    from labwitness.clock import FakeClock
    from recorder.spool import CameraSpool, SpoolQuota
    from recorder.worker import CameraWorker, RecorderConfig

    clock = FakeClock(datetime(2026, 11, 25, tzinfo=timezone.utc))
    w = CameraWorker("c", "rtsp://127.0.0.1/x", CameraSpool(tmp_path, "c", SpoolQuota(tmp_path, None, 0)),
                     RecorderConfig(segment_seconds=60, read_timeout_s=10), clock=clock)
    w.status.state = state
    w.status.last_segment_at = clock.now() - timedelta(seconds=age_s)
    assert w.stalled() is stalled


@pytest.mark.parametrize("exc, reason", [
    (FileNotFoundError(2, "No such file or directory", "/spool/cam/000000000004.mp4.part"), "spool_error"),
    (PermissionError(13, "Permission denied", "/spool/cam/000000000004.mp4.part"), "spool_error"),
    (ConnectionRefusedError(111, "Connection refused"), "refused"),
    (TimeoutError("timed out"), "timeout"),
    (ConnectionResetError(104, "Connection reset by peer"), "stream_ended"),
    (OSError(113, "No route to host"), "unreachable"),
])
def test_gap_reasons_tell_the_spool_from_the_camera(exc, reason):
    """A local file error (the spool) is never reported as the camera's fault."""
    from recorder.inputs import classify

    assert classify(exc)[0] == reason


def test_ffmpeg_errors_keep_their_camera_reasons():
    import av

    from recorder.inputs import classify

    unauthorized = av.error.HTTPUnauthorizedError(-1094995529, "Server returned 401 Unauthorized", "rtsp://cam/x")
    not_found = av.error.HTTPNotFoundError(-875574520, "Server returned 404 Not Found", "rtsp://cam/x")
    assert classify(unauthorized)[0] == "auth_failed" and classify(not_found)[0] == "not_found"
