"""The prefetching stitch (api.media) against the one it replaced (tests/stitchref.py, the code
of before, verbatim): the same stored segments -- H.264 with AAC audio, through the recorder's
own SegmentWriter, in real S3 -- give the same bytes, the same result, the same progress calls,
a failed fetch raises the same error after the same segments; a failed write raises the write's
own error; and a stitch stopped early leaves no fetch or write thread behind."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import random
import socket
import threading
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path

import av
import pytest

import api.media as media
import stitchref
from index.models import Segment
from conftest import ACCESS, SECRET
from labwitness.errors import StorageError, StorageUnavailableError
from recorder.segmenter import SegmentWriter
from retention.integrity import sha256_of
from simulator.clip import make_clip
from storage.hashing import file_sha256
from storage.s3 import S3ObjectStore
from storage.layout import SegmentMeta

SEG_S = 4
N_SEGS = 4
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)


def _split(clip: Path, out_dir: Path) -> list[Path]:
    """The clip (video + AAC) cut at every SEG_S seconds of video into recorder segments."""
    paths = []
    with av.open(str(clip)) as src:  # open while the writers use its streams as templates
        v, a = src.streams.video[0], src.streams.audio[0]
        packets = [p for p in src.demux(v, a) if p.size and p.dts is not None]
        v0 = next(p.dts for p in packets if p.stream.type == "video")
        cut = int(Fraction(SEG_S) / v.time_base)

        def seg_of(p: av.Packet) -> int:
            t = p.dts * p.stream.time_base - v0 * v.time_base
            return max(0, min(N_SEGS - 1, int(t / SEG_S)))

        for k in range(N_SEGS):
            path = out_dir / f"seg{k}.mp4"
            with open(path, "wb") as f:
                w = SegmentWriter(f, v, a, base_dts=v0 + k * cut)
                for p in packets:
                    if seg_of(p) != k:
                        continue
                    if p.stream.type == "video":
                        w.write_video(p, p.dts, p.pts)
                    else:
                        w.write_audio(p)
                w.close()
            paths.append(path)
    return paths


@pytest.fixture(scope="module")
def seg_files(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("stitch")
    clip = make_clip(d / "clip.mp4", seconds=SEG_S * N_SEGS, fps=25, gop=25, audio=True)
    return _split(clip.path, d)


@pytest.fixture
def stored(store, seg_files) -> list[Segment]:
    segs = []
    for i, path in enumerate(seg_files):
        start = T0 + timedelta(seconds=i * SEG_S)
        meta = SegmentMeta(camera_id="cam-st", start=start, end=start + timedelta(seconds=SEG_S),
                           media_duration_ms=SEG_S * 1000, codec="h264", width=640, height=360,
                           sha256=file_sha256(path), size=path.stat().st_size, recorder_id="test", session_id="s",
                           sequence=i + 1, audio_codec="aac")
        obj = store.put_segment(path, meta, datetime.now(timezone.utc) + timedelta(days=1))
        segs.append(Segment(id=i + 1, camera_id="cam-st", start_ms=int(start.timestamp() * 1000),
                            end_ms=int(meta.end.timestamp() * 1000), media_duration_ms=SEG_S * 1000, key=meta.key,
                            version_id=obj.version_id, size=meta.size, sha256=meta.sha256, audio_codec="aac"))
    return segs


class Stop(Exception):
    pass


def _run(stitch, store, segs, lo, hi, stop_after: int | None = None):
    out, calls = io.BytesIO(), []

    def progress(frac: float) -> None:
        calls.append(frac)
        if stop_after is not None and len(calls) == stop_after:
            raise Stop("stop")  # as a LostClaim raised by the exporter's progress

    try:
        res = stitch(store, segs, lo, hi, out, progress)
    except BaseException as e:  # noqa: BLE001 -- compared between the two stitches
        return None, out.getvalue(), calls, e
    return res, out.getvalue(), calls, None


def _ms(seg: Segment, s: float) -> int:
    return seg.start_ms + int(s * 1000)


@pytest.mark.parametrize("budget", [1, media.PREFETCH_BYTES])  # one segment ahead; several
@pytest.mark.parametrize("window", ["all", "mid"])
def test_same_bytes_as_the_sequential_stitch(store, stored, monkeypatch, budget, window):
    monkeypatch.setattr(media, "PREFETCH_BYTES", budget)
    # "mid": from inside the second segment (a keyframe search) to inside the last (a cut)
    lo, hi = ((stored[0].start_ms, stored[-1].end_ms) if window == "all"
              else (_ms(stored[1], 1.5), _ms(stored[-1], 2.3)))
    old, old_bytes, old_calls, old_err = _run(stitchref.stitch, store, stored, lo, hi)
    new, new_bytes, new_calls, new_err = _run(media.stitch, store, stored, lo, hi)
    assert old_err is None and new_err is None
    assert new_bytes == old_bytes and len(new_bytes) > 100_000
    assert dataclasses.asdict(new) == dataclasses.asdict(old)
    assert new.sha256 == hashlib.sha256(new_bytes).hexdigest()
    assert new_calls == old_calls
    with av.open(io.BytesIO(new_bytes)) as c:  # audio included, as stored
        assert c.streams.audio and c.streams.audio[0].codec_context.name == "aac"
        assert sum(1 for p in c.demux(c.streams.audio[0]) if p.size) > 0


def test_a_failed_fetch_raises_the_same_error_after_the_same_segments(store, stored):
    segs = list(stored)
    segs[2] = segs[2].model_copy(update={"version_id": "no-such-version"})  # a version the store does not have
    lo, hi = stored[0].start_ms, stored[-1].end_ms
    _, old_bytes, old_calls, old_err = _run(stitchref.stitch, store, segs, lo, hi)
    _, new_bytes, new_calls, new_err = _run(media.stitch, store, segs, lo, hi)
    assert isinstance(old_err, StorageError)
    assert type(new_err) is type(old_err) and str(new_err) == str(old_err)
    assert new_calls == old_calls == [0.25, 0.5]  # two segments muxed before it, in both
    assert new_bytes == old_bytes
    assert not [t for t in threading.enumerate() if t.name.startswith("stitch-")]


def test_a_stitch_stopped_early_leaves_no_fetch_thread(store, stored):
    lo, hi = stored[0].start_ms, stored[-1].end_ms
    _, _, calls, err = _run(media.stitch, store, stored, lo, hi, stop_after=1)
    assert isinstance(err, Stop) and calls == [0.25]
    assert not [t for t in threading.enumerate() if t.name.startswith("stitch-")]


class _FullDisk(io.BytesIO):
    """An output that takes ``room`` bytes, then fails as a full disk does."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room

    def write(self, b) -> int:
        if self.tell() + len(b) > self.room:
            raise OSError(28, "No space left on device")
        return super().write(b)


@pytest.mark.parametrize("where", [0.1, 0.5, 1.0])
def test_a_failed_write_raises_the_writes_own_error(store, stored, where):
    """A disk that fills up early, half way, or at the very last bytes (the trailer, written when the
    output is closed): the stitch raises the write's OSError, which a lab admin can act on -- never
    PyAV's "Error in PyAV callback" with no cause, which its trailer reports after a failed write
    (the sequential stitch of before raised that one, or the OSError, by timing) -- and stops its
    threads."""
    lo, hi = stored[0].start_ms, stored[-1].end_ms
    whole = _run(media.stitch, store, stored, lo, hi)[0].bytes
    out = _FullDisk(whole - 1 if where == 1.0 else int(whole * where))
    with pytest.raises(OSError) as e:
        media.stitch(store, stored, lo, hi, out)
    assert type(e.value) is OSError and e.value.errno == 28, repr(e.value)
    assert 0 < len(out.getvalue()) < whole
    assert not [t for t in threading.enumerate() if t.name.startswith("stitch-")]


class _CuttingProxy:
    """127.0.0.1:port -> the store; every answer is cut after ``limit`` bytes (headers included) and the
    connection closed, as a store that restarts while it sends a body."""

    def __init__(self, target: tuple[str, int], limit: int) -> None:
        self.target, self.limit = target, limit
        self.lsock = socket.create_server(("127.0.0.1", 0))
        self.port = self.lsock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            up = socket.create_connection(self.target)
            threading.Thread(target=self._pump, args=(c, up, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, c, self.limit), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket, limit: int | None) -> None:
        sent = 0
        try:
            while data := a.recv(65536):
                if limit is not None:
                    data = data[:limit - sent]
                b.sendall(data)
                sent += len(data)
                if limit is not None and sent >= limit:
                    break
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.lsock.close()


def test_a_body_cut_short_is_the_store_not_answering_naming_the_segment(seaweed, store, stored):
    """A segment whose body breaks off half way (the store restarted while sending it): the stitch
    raises StorageUnavailableError naming that object -- not urllib3's ProtocolError -- and leaves
    no thread; the integrity job's read and a ranged read say the same."""
    proxy = _CuttingProxy(("127.0.0.1", seaweed.ports["s3"]), limit=stored[1].size // 2)
    try:
        cut = S3ObjectStore(f"http://127.0.0.1:{proxy.port}", ACCESS, SECRET, store.bucket)
        lo, hi = stored[0].start_ms, stored[-1].end_ms
        with pytest.raises(StorageUnavailableError) as e:
            media.stitch(cut, stored[1:], lo, hi, io.BytesIO())
        assert stored[1].key in str(e.value)
        assert not [t for t in threading.enumerate() if t.name.startswith("stitch-")]
        with pytest.raises(StorageUnavailableError, match=stored[2].key):
            sha256_of(cut, stored[2].key, stored[2].version_id)
        with cut.open(stored[3].key, stored[3].version_id) as body:  # a whole read of a cut body too
            with pytest.raises(StorageUnavailableError, match=stored[3].key):
                body.read()
    finally:
        proxy.close()
    # the same objects through the store itself are whole
    assert sha256_of(store, stored[2].key, stored[2].version_id) == (stored[2].sha256, stored[2].size)


@pytest.mark.parametrize("sizes", [[7], [1, 1, 1], [3, 5, 2, 9], [4096] * 3 + [17], [65536, 1, 65535]])
def test_a_fetched_segment_reads_and_seeks_as_one_buffer(sizes):
    """The fetched chunks are read by the demuxer as one file: every read and seek as io.BytesIO's."""
    rng = random.Random(sum(sizes))
    whole = bytes(rng.randrange(256) for _ in range(sum(sizes)))
    chunks, at = [], 0
    for n in sizes:
        chunks.append(whole[at:at + n])
        at += n
    f, ref = media._Fetched(chunks), io.BytesIO(whole)
    assert f.size == len(whole)
    for _ in range(300):
        op = rng.random()
        if op < 0.6:
            n = rng.choice([-1, 0, 1, 2, rng.randrange(len(whole) + 3), len(whole) + 10])
            assert f.read(n) == ref.read(n)
        else:
            whence = rng.choice([io.SEEK_SET, io.SEEK_CUR, io.SEEK_END])
            off = rng.randrange(-len(whole), len(whole) + 5)
            if {io.SEEK_SET: 0, io.SEEK_CUR: ref.tell(), io.SEEK_END: len(whole)}[whence] + off < 0:
                continue  # BytesIO refuses a negative position; the demuxer never asks for one
            assert f.seek(off, whence) == ref.seek(off, whence)
        assert f.tell() == ref.tell()
