"""What one camera's content check carries from one sample (and one job run) to the next.

:class:`DetectorState` holds the sharpness baseline, the last judged frame, the
runs of consecutive bad samples (:func:`retention.content.fold` opens events
from them) and the bitstream summary of the last decoded sample;
:func:`decode_reason` compares a sample's bitstream with that summary to decide
whether the sample must be decoded at all.  Pure: no I/O, no clock.
"""

from __future__ import annotations

import base64
import copy
import json
import zlib
from dataclasses import asdict, dataclass, field

import numpy as np

from retention.content_detect import ContentConfig


@dataclass
class Run:
    """Consecutive samples showing one condition."""

    start_ms: int
    last_ms: int
    count: int = 1
    detail: str = ""

    @property
    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class DetectorState:
    """Everything carried from one sample (and one job run) to the next; JSON-serialisable."""

    baseline: float | None = None  # sharpness baseline (linear)
    baseline_n: int = 0
    prev_ms: int | None = None  # last sample folded into events
    frame_ms: int | None = None  # time of prev_small, the last frame judged
    prev_small: np.ndarray | None = None
    runs: dict[str, Run] = field(default_factory=dict)
    moved_checked_ms: int | None = None
    #: the last decoded sample's verdict (kind -> detail) and bitstream summary, and the
    #: previous sample's coded-picture digest: what :func:`decode_reason` compares with
    verdict: dict[str, str] | None = None
    coded: "Coded | None" = None
    prev_digest: str | None = None
    prev_bytes: int | None = None  # the previous sample's coded size
    changes: list[float] = field(default_factory=list)  # recent relative changes of the coded size

    @property
    def jitter(self) -> float:
        """The camera's usual relative change of the coded size from one sample to the
        next: a median, so one odd keyframe (an encoder restart) does not blind the gate."""
        if not self.changes:
            return 0.0
        v = sorted(self.changes)
        return v[len(v) // 2]

    def observe(self, coded_bytes: int, digest: str | None, cfg: "ContentConfig") -> bool:
        """Note a sample's coded size and digest (every sample, decoded or not);
        True if its coded picture repeats the previous one bit for bit."""
        repeat = digest is not None and digest == self.prev_digest
        if self.prev_bytes:
            self.changes = (self.changes + [round(abs(coded_bytes - self.prev_bytes) / self.prev_bytes, 4)]
                            )[-cfg.gate_jitter_window:]
        self.prev_bytes, self.prev_digest = coded_bytes, digest
        return repeat

    def to_json(self) -> str:
        d = {"v": 1, "baseline": self.baseline, "baseline_n": self.baseline_n, "prev_ms": self.prev_ms,
             "frame_ms": self.frame_ms, "moved_checked_ms": self.moved_checked_ms,
             "runs": {k: asdict(r) for k, r in self.runs.items()},
             "verdict": self.verdict, "coded": asdict(self.coded) if self.coded else None,
             "prev_digest": self.prev_digest, "prev_bytes": self.prev_bytes, "changes": self.changes}
        if self.prev_small is not None:
            h, w = self.prev_small.shape
            d["prev"] = {"h": h, "w": w, "z": base64.b64encode(zlib.compress(self.prev_small.tobytes(), 1)).decode()}
        return json.dumps(d, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> "DetectorState":
        if not text:
            return cls()
        d = json.loads(text)
        if not d or d.get("v") != 1:
            return cls()
        prev = None
        if d.get("prev"):
            p = d["prev"]
            prev = np.frombuffer(zlib.decompress(base64.b64decode(p["z"])), np.uint8).reshape(p["h"], p["w"]).copy()
        return cls(d.get("baseline"), d.get("baseline_n", 0), d.get("prev_ms"), d.get("frame_ms"), prev,
                   {k: Run(**r) for k, r in (d.get("runs") or {}).items()}, d.get("moved_checked_ms"),
                   d.get("verdict"), Coded(**d["coded"]) if d.get("coded") else None, d.get("prev_digest"),
                   d.get("prev_bytes"), list(d.get("changes") or []))

    def copy(self) -> "DetectorState":
        c = copy.copy(self)
        c.runs = {k: copy.copy(r) for k, r in self.runs.items()}
        c.verdict = dict(self.verdict) if self.verdict is not None else None
        c.changes = list(self.changes)
        return c  # prev_small and coded are replaced, never changed in place

    def restore(self, saved: "DetectorState") -> None:
        self.__dict__.update(saved.__dict__)


# -- deciding what to decode ----------------------------------------------------------
@dataclass(frozen=True)
class Coded:
    """What a sampled keyframe's bitstream says without decoding it."""

    bytes: int  # coded picture size (VCL NAL units only)
    activity: int | None  # quietest second's coded size since the previous sample
    repeat: bool  # bit-identical coded picture to the previous sample's


def decode_reason(last: Coded | None, cur: Coded, undecoded: int, cfg: ContentConfig,
                  jitter: float = 0.0) -> str | None:
    """Why this sample must be decoded, or None: it may take the last decoded
    sample's verdict.  ``undecoded``: samples since the last decoded one;
    ``jitter``: the camera's usual relative change of the coded size between
    samples (:meth:`DetectorState.observe`).

    The conditions all show in the bitstream: a black, covered or defocused
    picture codes to far fewer bits (``bytes``); a frozen one makes the seconds
    between keyframes nearly empty (``activity``) or repeats its keyframe bit for
    bit (``repeat``); recovering from any of them reverses the change.  A moved
    camera may not, so a sample is decoded at least every
    ``decode_at_least_every_s`` (the moved check runs once a minute anyway).
    The job decodes the skipped samples after all when the next decoded verdict
    differs (:mod:`retention.content_job`), so events start and end where
    decoding every sample would put them."""
    every = max(1, round(cfg.decode_at_least_every_s / cfg.sample_seconds))
    if last is None:
        return "first"
    if undecoded + 1 >= every:
        return "interval"
    share = min(max(cfg.gate_coded_change, cfg.gate_jitter_factor * jitter), cfg.gate_coded_change_max)
    if abs(cur.bytes - last.bytes) > share * max(last.bytes, 1):
        return "coded-size"
    if cur.repeat != last.repeat:
        return "repeat"
    a, b = cur.activity, last.activity
    if a is not None and b is not None:  # unknown (a segment's first second) is not a change
        f = cfg.gate_activity_factor
        if a * f < b or a > b * f:
            return "activity"
    return None

