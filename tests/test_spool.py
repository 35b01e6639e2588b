"""Spool invariants and salvage of unfinished fragmented MP4 files."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import av
import pytest

from labwitness.errors import SpoolError
from recorder.recovery import recover
from recorder.spool import CameraSpool, SpoolQuota, complete_fragments_end
from simulator.clip import make_clip
from storage.layout import SegmentMeta


def _fmp4(path, seconds=4):
    """A real fragmented MP4 (1 s fragments) remuxed from a generated clip."""
    clip = make_clip(path.with_suffix(".src.mp4"), seconds=seconds, fps=25, width=320, height=240)
    with av.open(str(clip.path)) as src, av.open(str(path), "w", format="mp4", options={
            "movflags": "frag_keyframe+empty_moov+default_base_moof", "frag_duration": "1000000"}) as dst:
        out = dst.add_stream_from_template(src.streams.video[0])
        for pkt in src.demux(src.streams.video[0]):
            if pkt.dts is None:
                continue
            pkt.stream = out
            dst.mux(pkt)
    return clip


def _frames(path) -> int:
    with av.open(str(path)) as c:
        return sum(len(p.decode()) for p in c.demux(c.streams.video[0]) if p.size) + len(c.streams.video[0].codec_context.decode(None) or [])


@pytest.mark.parametrize("cut", [1.0, 0.75, 0.5, 0.2, 0.01])
def test_salvage_keeps_every_complete_fragment(tmp_path, cut):
    path = tmp_path / "seg.mp4"
    clip = _fmp4(path)
    whole = path.stat().st_size
    assert whole - 512 < complete_fragments_end(path) <= whole  # only the trailing mfra index may follow
    truncated = path.read_bytes()[: int(whole * cut)]
    path.write_bytes(truncated)
    end = complete_fragments_end(path)
    if end == 0:
        return  # not even the first fragment: nothing playable to keep
    path.write_bytes(truncated[:end])
    frames = _frames(path)
    assert 0 < frames <= clip.frames
    assert cut < 1.0 or frames == clip.frames
    # at most one fragment (~1 s) plus the unfinished bytes are lost
    lost_s = (clip.frames - frames) / 25
    assert lost_s <= (1 - cut) * 4 + 1.05


def test_recover_commits_the_salvaged_segment(tmp_path):
    root = tmp_path / "spool"
    root.mkdir()
    quota = SpoolQuota(root, None, 0)
    spool = CameraSpool(root, "cam-r", quota)
    seq = spool.next_seq()
    part, mp4, rec, open_rec = spool.paths(seq)
    _fmp4(part)
    data = part.read_bytes()
    part.write_bytes(data[: int(len(data) * 0.7)])  # killed mid-fragment
    start = datetime(2026, 11, 25, 1, 2, 3, tzinfo=timezone.utc)
    open_rec.write_text(f'{{"start_estimate": "{start.isoformat()}", "session_id": "s", "recorder_id": "r"}}')
    reports = recover(spool)
    assert reports[0]["salvaged"] and reports[0]["lost_bytes"] > 0
    (c,) = spool.committed()
    assert c.meta.start == start and c.meta.end > start and c.state == "pending"
    assert c.meta.frames == _frames(c.mp4) and c.meta.size == c.mp4.stat().st_size
    assert not part.exists() and not open_rec.exists()
    assert spool.last_end == c.meta.end


def test_recover_discards_only_a_part_without_any_fragment(tmp_path):
    root = tmp_path / "spool"
    root.mkdir()
    spool = CameraSpool(root, "cam-r", SpoolQuota(root, None, 0))
    part, *_ = spool.paths(spool.next_seq())
    part.write_bytes(b"\x00\x00\x00\x18ftypisom")
    assert recover(spool)[0]["salvaged"] is False
    assert not part.exists()


def test_release_refuses_before_stored_and_indexed(tmp_path):
    root = tmp_path / "spool"
    root.mkdir()
    spool = CameraSpool(root, "cam-r", SpoolQuota(root, None, 0))
    seq = spool.next_seq()
    out = spool.open_segment(seq, {})
    out.write(b"bytes")
    now = datetime.now(timezone.utc)
    meta = SegmentMeta("cam-r", now, now + timedelta(seconds=1), 1000, "h264", 1, 1, out.sha.hexdigest(), 5, "r", "s", seq)
    c = spool.commit(seq, out, meta)
    with pytest.raises(SpoolError):
        spool.release(c)
    spool.mark_stored(c, "v1", now, "COMPLIANCE")
    with pytest.raises(SpoolError):
        spool.release(c)  # stored but not indexed: still kept
    c.indexed = True
    spool.release(c)
    assert not c.mp4.exists() and not c.record.exists()


def test_quota_refuses_bytes_before_writing_them(tmp_path):
    root = tmp_path / "spool"
    root.mkdir()
    quota = SpoolQuota(root, 100, 0)
    spool = CameraSpool(root, "cam-q", quota)
    out = spool.open_segment(spool.next_seq(), {})
    out.write(b"x" * 60)
    with pytest.raises(SpoolError):
        out.write(b"y" * 60)
    out.close()
    assert (root / "cam-q" / "000000000000.mp4.part").stat().st_size == 60
    assert not quota.has_room(50) and quota.has_room(40)


def test_sequence_survives_restart(tmp_path):
    root = tmp_path / "spool"
    root.mkdir()
    q = SpoolQuota(root, None, 0)
    a = CameraSpool(root, "c", q)
    assert [a.next_seq() for _ in range(3)] == [0, 1, 2]
    assert CameraSpool(root, "c", q).next_seq() == 3


def test_a_segment_writer_past_a_refused_write_keeps_naming_the_refusal(tmp_path):
    """Once the spool refused a write, every later call on the segment's muxer fails; each raises the
    spool's refusal (what the worker logs and classifies as "spool full"), never PyAV's cause-less
    "Error in PyAV callback" that its muxer reports for every call after a failed write."""
    from recorder.segmenter import SegmentWriter

    clip = make_clip(tmp_path / "c.mp4", seconds=6, fps=25, width=320, height=240)
    spool = CameraSpool(tmp_path / "spool", "cam-w", SpoolQuota(tmp_path / "spool", 12_000, 0))
    out = spool.open_segment(1, {})
    errors = []
    with av.open(str(clip.path)) as src:
        v = src.streams.video[0]
        writer = SegmentWriter(out, v, None, 0)
        for p in src.demux(v):
            if p.dts is None:
                continue
            try:
                writer.write_video(p, p.dts, p.pts)
            except Exception as e:  # noqa: BLE001 -- every one is looked at below
                errors.append(e)
                if len(errors) == 4:
                    break
        try:
            writer.close()
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    assert len(errors) >= 4 and out.failed is not None
    assert all(e is out.failed for e in errors), [repr(e) for e in errors]
    out.close()
