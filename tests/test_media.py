"""labwitness.media: the one box walker and NAL reader the recorder and retention share, on constructed bytes."""

from __future__ import annotations

import struct

import pytest

from labwitness.media import h26x, mp4
from retention.keyframe_decode import coded_picture


def box(typ: bytes, payload: bytes = b"", *, large: bool = False) -> bytes:
    if large:
        return struct.pack(">I4sQ", 1, typ, 16 + len(payload)) + payload
    return struct.pack(">I4s", 8 + len(payload), typ) + payload


def reader(data: bytes):
    reads = []

    def read(offset: int, length: int) -> bytes:
        reads.append((offset, length))
        return data[offset: offset + length]
    return read, reads


def test_walk_reads_headers_only_and_knows_largesize_and_to_the_end_boxes():
    data = box(b"ftyp", b"isom") + box(b"moof", b"x" * 40, large=True) + struct.pack(">I4s", 0, b"mdat") + b"y" * 100
    read, reads = reader(data)
    got = [(b.type, b.start, b.payload, b.end) for b in mp4.walk(read, 0, len(data))]
    assert got == [(b"ftyp", 0, 8, 12), (b"moof", 12, 28, 68), (b"mdat", 68, 76, len(data))]
    assert reads == [(0, 16), (12, 16), (68, 16)]  # one read a box, whatever its size
    assert list(mp4.boxes(data)) == list(mp4.walk(read, 0, len(data)))


def test_walk_stops_at_a_cut_header_and_refuses_a_size_below_its_header():
    cut = box(b"ftyp") + struct.pack(">I4s", 1, b"mdat") + b"\0\0"  # largesize cut off
    assert [b.type for b in mp4.boxes(cut)] == [b"ftyp"]
    assert [b.end for b in mp4.boxes(box(b"mdat", b"z" * 10)[:12])] == [18]  # body cut: the caller decides
    with pytest.raises(mp4.ParseError):
        list(mp4.boxes(struct.pack(">I4s", 4, b"free")))


@pytest.mark.parametrize("data, good", [
    (box(b"ftyp") + box(b"moov") + box(b"moof") + box(b"mdat", b"1") + box(b"moof") + box(b"mdat", b"22"), 51),
    (box(b"ftyp") + box(b"moov") + box(b"moof") + box(b"mdat", b"1") + box(b"moof") + box(b"mdat", b"22")[:-1], 33),
    (box(b"ftyp") + box(b"moov") + box(b"moof") + box(b"mdat", b"1") + struct.pack(">I4s", 3, b"moof"), 33),
    (box(b"ftyp") + box(b"moof") + box(b"mdat", b"1"), 0),  # no moov before it: not playable
    (box(b"ftyp") + box(b"moov") + box(b"mdat", b"1"), 0),  # an mdat without its moof
])
def test_complete_fragments_end(data, good):
    read, _ = reader(data)
    assert mp4.complete_fragments_end(read, len(data)) == good


def test_coded_picture_counts_vcl_units_only():
    avcc = bytes([1, 0x64, 0, 0x1F, 0xFF])  # lengthSizeMinusOne = 3
    idr, sei, filler = bytes([0x65]) + b"a" * 9, bytes([0x06]) + b"b" * 4, bytes([0x0C]) + b"\xff" * 6
    au = b"".join(len(n).to_bytes(4, "big") + n for n in (sei, idr, filler))
    other_sei = b"".join(len(n).to_bytes(4, "big") + n for n in (bytes([0x06]) + b"c" * 7, idr))
    assert [h26x.nal_type("h264", au[s]) for s, _ in h26x.length_prefixed(au, 4)] == [6, 5, 12]
    assert coded_picture("h264", avcc, au)[0] == len(idr)
    assert coded_picture("h264", avcc, au) == coded_picture("h264", avcc, other_sei)  # SEI and filler do not count
    two = b"".join(len(n).to_bytes(2, "big") + n for n in (sei, idr))
    assert h26x.length_size("h264", bytes([1, 0x64, 0, 0x1F, 0xFD])) == 2
    assert coded_picture("h264", bytes([1, 0x64, 0, 0x1F, 0xFD]), two)[0] == len(idr)
