"""Is the recorded picture usable?  Pure detectors, per-camera state, event folding.

Footage that exists but shows nothing fails the retention rule as surely as a
gap.  This module judges one sampled keyframe at a time (the job decodes one
every ``sample_seconds``, see :mod:`retention.keyframes`); it does no I/O and
reads no clock.

Per sample (grayscale, first downscaled to ``analysis_width`` with area
averaging, which also averages sensor noise away):

blackout
    mean luma below ``blackout_mean`` *and* its 99th percentile below
    ``blackout_p99`` (video-range black is 16): a dark picture with no bright
    part.  An IR picture or a lit corner is not a blackout.
obscured (covered or defocused lens)
    either the picture is uniform (luma standard deviation below
    ``uniform_std``: tape, a hand, a bag over the lens), or its *normalised
    sharpness* ``var(Laplacian(g)) / var(g)`` fell below
    ``sharpness_ratio`` x the camera's own baseline.  Dividing by the
    picture's variance makes the measure independent of gain: dimming the
    lights scales both terms alike, defocus removes high frequencies only.
    The baseline is the camera's own (an exponential mean in the log domain of
    samples with no finding, seeded from the approved reference if any).
frozen
    the picture did not change between two consecutive samples while the
    stream advanced ``sample_seconds``: mean absolute difference below
    ``frozen_mad`` *and* no 8x8-pixel block changed by more than
    ``frozen_block`` (so a small moving object or a running clock overlay
    is change).  Live sensor noise alone exceeds these at the analysis size.
    Once a frozen run has begun it continues under ``frozen_hold`` times
    looser thresholds (hysteresis): the encoder re-codes a still picture's
    keyframes slightly differently now and then.
moved
    the scene no longer matches the admin-approved reference frame.  ORB
    features (on histogram-equalised frames: lighting-robust) are matched to
    the reference's, a similarity transform is fitted with RANSAC (moving
    people and noise become outliers) and the camera counts as moved when the
    picture's centre shifted more than ``moved_shift`` of the width, turned
    more than ``moved_rotation_deg`` or zoomed more than ``moved_scale``;
    or when a reference rich in features finds almost no consistent match in
    a lit, contrasted picture *and* the coarse layouts (64 px wide, the 5 % of
    cells that differ most left out, so a bright object passing by does not
    count) no longer correlate (the camera points somewhere else entirely; a dark picture is
    not judged this way, its equalised noise matches nothing; a scene with
    unstable features but the same layout is "cannot tell", not "moved").
    A camera rarely moves, so while none is suspected the check runs once per
    ``moved_check_every_s`` (its verdict holds in between); once suspected,
    on every sample.

A precedence keeps one explanation per sample: blackout hides the others
(a black picture is also uniform and unchanging), a uniform picture hides
frozen and moved.

Events (:func:`fold`): a condition seen in ``min_samples[kind]`` consecutive
samples opens an event starting at the first of them (for frozen: at the
earlier frame of the first unchanged pair); further samples extend its end;
the first sample without the condition closes it at that sample's time.  A
hole in the samples longer than ``max_sample_gap_s`` (no footage) closes open
events at their last bad sample: a gap is accounted as a gap, not as content.
"""

from __future__ import annotations

import base64
import copy
import json
import math
import zlib
from dataclasses import asdict, dataclass, field
from typing import Iterable, Mapping, Sequence

import cv2
import numpy as np

KINDS = ("blackout", "obscured", "frozen", "moved")


@dataclass(frozen=True)
class ContentConfig:
    """Thresholds; luma levels are 8-bit video range (black 16, white 235)."""

    sample_seconds: float = 10.0
    analysis_width: int = 320
    blackout_mean: float = 28.0
    blackout_p99: float = 48.0
    uniform_std: float = 5.0
    sharpness_ratio: float = 0.3
    baseline_alpha: float = 0.1
    frozen_mad: float = 0.3
    frozen_block: float = 1.5
    #: once a frozen run has begun, it continues below thresholds this many times higher: the
    #: encoder's rate control re-codes a still picture a little differently now and then
    frozen_hold: float = 1.7
    moved_shift: float = 0.04
    moved_rotation_deg: float = 3.0
    moved_scale: float = 0.08
    moved_min_inliers: int = 12
    moved_min_ref_keypoints: int = 60
    #: "does not match at all" is only concluded on a lit, contrasted picture (equalising a dark
    #: one turns its noise into features that match nothing)
    moved_min_mean: float = 40.0
    moved_min_std: float = 15.0
    #: without a geometric match, "moved" also needs the coarse layout (64 px wide, zero-mean
    #: normalised correlation with the reference) to differ: features of a scene with little
    #: structure (a plain wall, noise-like texture) are unstable, its layout is not
    moved_max_layout_ncc: float = 0.5
    moved_check_every_s: float = 60.0
    orb_features: int = 300
    min_samples: Mapping[str, int] = field(
        default_factory=lambda: {"blackout": 1, "obscured": 2, "frozen": 3, "moved": 3})
    max_sample_gap_s: float = 60.0
    #: decoding is what costs; a sampled keyframe whose bitstream says nothing changed since
    #: the last decoded one takes that one's verdict (:func:`decode_reason`), but one is
    #: decoded at least this often (<= sample_seconds: every sample is decoded)
    decode_at_least_every_s: float = 60.0
    #: coded picture size changed, against the last decoded one's, by more than this share, or
    #: more than ``gate_jitter_factor`` x the camera's usual sample-to-sample change (the median
    #: of the last ``gate_jitter_window`` changes), but never a threshold above
    #: ``gate_coded_change_max``: a noisy picture hides a defocus in a few per cent of its bits
    gate_coded_change: float = 0.03
    gate_jitter_factor: float = 4.0
    gate_jitter_window: int = 8
    gate_coded_change_max: float = 0.2
    #: quietest second's coded size (activity) changed by more than this factor, either way
    gate_activity_factor: float = 2.0
    thumbnail_width: int = 320
    jpeg_quality: int = 85

    def need(self, kind: str) -> int:
        return max(1, int(self.min_samples.get(kind, 1)))


# -- measuring one frame ------------------------------------------------------------
def downscale(gray: np.ndarray, width: int) -> np.ndarray:
    """Area-averaged downscale to ``width`` (aspect kept), uint8."""
    h, w = gray.shape[:2]
    if w <= width:
        return np.ascontiguousarray(gray)
    height = max(1, round(h * width / w))
    return cv2.resize(gray, (width, height), interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class FrameStats:
    mean: float
    p99: float
    std: float
    sharpness: float  # var(Laplacian) / var(luma); 0 for a uniform picture


def frame_stats(small: np.ndarray) -> FrameStats:
    f = small.astype(np.float32)
    mean, std = float(f.mean()), float(f.std())
    p99 = float(np.percentile(small, 99))
    lap = cv2.Laplacian(f, cv2.CV_32F, ksize=3)
    var = std * std
    sharp = float(lap.var()) / var if var > 1e-6 else 0.0
    return FrameStats(mean, p99, std, sharp)


def is_blackout(s: FrameStats, cfg: ContentConfig) -> bool:
    return s.mean < cfg.blackout_mean and s.p99 < cfg.blackout_p99


def is_uniform(s: FrameStats, cfg: ContentConfig) -> bool:
    return s.std < cfg.uniform_std


def is_defocused(s: FrameStats, baseline: float | None, cfg: ContentConfig) -> bool:
    return baseline is not None and baseline > 0 and s.sharpness < cfg.sharpness_ratio * baseline


def frame_change(prev: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    """(mean absolute difference, largest 8x8-block mean absolute difference)."""
    if prev.shape != cur.shape:
        return math.inf, math.inf
    d = cv2.absdiff(prev, cur).astype(np.float32)
    mad = float(d.mean())
    h, w = d.shape
    bh, bw = h // 8 * 8, w // 8 * 8
    blocks = d[:bh, :bw].reshape(bh // 8, 8, bw // 8, 8).mean(axis=(1, 3)) if bh and bw else d
    return mad, float(blocks.max())


def is_frozen(prev: np.ndarray | None, cur: np.ndarray, cfg: ContentConfig, holding: bool = False) -> tuple[bool, float, float]:
    """Unchanged picture; ``holding``: a frozen run is already under way (looser thresholds)."""
    if prev is None:
        return False, math.nan, math.nan
    mad, block = frame_change(prev, cur)
    k = cfg.frozen_hold if holding else 1.0
    return (mad < cfg.frozen_mad * k and block < cfg.frozen_block * k), mad, block


# -- the reference frame ---------------------------------------------------------------
@dataclass
class Reference:
    """An approved reference frame, prepared once: equalised picture and ORB features."""

    small: np.ndarray
    keypoints: tuple
    descriptors: np.ndarray | None
    sharpness: float

    @classmethod
    def from_gray(cls, gray: np.ndarray, cfg: ContentConfig) -> "Reference":
        small = downscale(gray, cfg.analysis_width)
        kp, desc = _orb(small, cfg)
        return cls(small, kp, desc, frame_stats(small).sharpness)

    @classmethod
    def from_jpeg(cls, jpeg: bytes, cfg: ContentConfig) -> "Reference":
        gray = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
        if gray is None:
            raise ValueError("reference is not a JPEG")
        return cls.from_gray(gray, cfg)


def _orb(small: np.ndarray, cfg: ContentConfig):
    eq = cv2.equalizeHist(small)
    orb = cv2.ORB_create(nfeatures=cfg.orb_features, scaleFactor=1.2, nlevels=4, edgeThreshold=15, patchSize=15,
                         fastThreshold=10)
    kp, desc = orb.detectAndCompute(eq, None)
    return tuple(kp), desc


def layout_ncc(a: np.ndarray, b: np.ndarray, width: int = 64, trim: float = 0.05) -> float:
    """Zero-mean normalised correlation of two pictures' coarse layouts (gain- and offset-invariant),
    leaving out the ``trim`` share of cells that differ most.

    Without the trim a bright object passing through (a person in a white coat, a
    lamp-lit trolley) weighs as much in a 64-px layout as the whole room's shading
    does, and a still camera looked "pointed elsewhere" (correlation 0.3-0.5 in the
    benchmark's scene, 0.66-0.79 with the trim); a camera that really points
    elsewhere differs in most cells (a flipped or another room: 0.2-0.35).  A larger
    trim would start to hide exactly those differences."""
    def norm(c: np.ndarray) -> np.ndarray:
        c = c - c.mean()
        return c / (float(np.sqrt((c * c).sum())) or 1.0)

    def coarse(x: np.ndarray) -> np.ndarray:
        return norm(cv2.GaussianBlur(downscale(x, width).astype(np.float32), (0, 0), 1.0))

    ca, cb = coarse(a), coarse(b)
    if ca.shape != cb.shape:
        cb = norm(cv2.resize(cb, (ca.shape[1], ca.shape[0]), interpolation=cv2.INTER_AREA))
    if trim > 0:
        d = np.abs(ca - cb)
        keep = d <= np.quantile(d, 1.0 - trim)
        ca, cb = norm(ca[keep]), norm(cb[keep])
    return float((ca * cb).sum())


@dataclass(frozen=True)
class MoveCheck:
    moved: bool | None  # None: cannot tell (too little texture)
    shift: float = 0.0  # of the picture width
    rotation_deg: float = 0.0
    scale: float = 1.0
    inliers: int = 0
    detail: str = ""


def check_moved(ref: Reference, small: np.ndarray, cfg: ContentConfig) -> MoveCheck:
    if ref.descriptors is None or len(ref.keypoints) < cfg.moved_min_ref_keypoints:
        return MoveCheck(None, detail="reference has too little texture to compare")
    if small.shape != ref.small.shape:
        small = cv2.resize(small, (ref.small.shape[1], ref.small.shape[0]), interpolation=cv2.INTER_AREA)
    kp, desc = _orb(small, cfg)
    if desc is None or len(kp) < cfg.moved_min_ref_keypoints // 2:
        return MoveCheck(None, detail=f"picture has too little texture ({len(kp)} features)")
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(ref.descriptors, desc, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.8 * p[1].distance]
    inliers, m = 0, None
    if len(good) >= 3:
        src = np.float32([ref.keypoints[g.queryIdx].pt for g in good])
        dst = np.float32([kp[g.trainIdx].pt for g in good])
        m, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=3.0,
                                              maxIters=2000, confidence=0.995)
        inliers = int(mask.sum()) if mask is not None else 0
        if m is not None and not 0.5 < math.hypot(m[0, 0], m[1, 0]) < 2.0:
            m, inliers = None, 0  # degenerate fit (features bunched in one spot): no geometric match
    if m is None or inliers < cfg.moved_min_inliers:
        mean, std = float(small.mean()), float(small.std())
        if mean < cfg.moved_min_mean or std < cfg.moved_min_std:
            return MoveCheck(None, inliers=inliers, detail=f"too dark or flat to compare (mean {mean:.0f}, std {std:.0f})")
        ncc = layout_ncc(ref.small, small)
        if ncc > cfg.moved_max_layout_ncc:
            return MoveCheck(None, inliers=inliers, detail=f"few stable features ({inliers}); layout still matches (ncc {ncc:.2f})")
        return MoveCheck(True, inliers=inliers,
                         detail=f"scene does not match the reference ({inliers} consistent features of {len(good)}, "
                                f"layout ncc {ncc:.2f})")
    h, w = ref.small.shape
    c = np.array([w / 2, h / 2, 1.0])
    shift = float(np.hypot(*(m @ c - c[:2]))) / w
    rot = math.degrees(math.atan2(m[1, 0], m[0, 0]))
    scale = float(math.hypot(m[0, 0], m[1, 0]))
    moved = shift > cfg.moved_shift or abs(rot) > cfg.moved_rotation_deg or abs(math.log(max(scale, 1e-6))) > cfg.moved_scale
    return MoveCheck(moved, shift, rot, scale, inliers,
                     f"shift {shift * 100:.1f}% of width, rotation {rot:.1f}°, scale {scale:.2f}, {inliers} inliers")


# -- per-camera state ----------------------------------------------------------------
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


# -- judging one sample --------------------------------------------------------------
@dataclass(frozen=True)
class Finding:
    kind: str
    since_ms: int  # when the condition is known to hold from (frozen: the earlier frame)
    detail: str = ""


@dataclass(frozen=True)
class Judgement:
    t_ms: int
    findings: tuple[Finding, ...]
    stats: FrameStats
    metrics: dict


def judge(state: DetectorState, t_ms: int, gray: np.ndarray, cfg: ContentConfig,
          reference: Reference | None = None) -> Judgement:
    """Judge one sampled frame (grayscale, any size) and advance ``state``'s
    frame memory and sharpness baseline.  Events are :func:`fold`'s business;
    fold each judgement before judging the next sample (frozen's hysteresis
    reads the runs)."""
    small = downscale(gray, cfg.analysis_width)
    s = frame_stats(small)
    metrics: dict = {"mean": round(s.mean, 1), "p99": round(s.p99, 1), "std": round(s.std, 2),
                     "sharpness": round(s.sharpness, 4), "baseline": state.baseline}
    found: list[Finding] = []
    prev_ms = state.frame_ms
    gap = prev_ms is not None and t_ms - prev_ms > cfg.max_sample_gap_s * 1000
    if is_blackout(s, cfg):
        found.append(Finding("blackout", t_ms, f"mean luma {s.mean:.1f}, 99th percentile {s.p99:.0f}"))
    elif is_uniform(s, cfg):
        found.append(Finding("obscured", t_ms, f"uniform picture (luma std {s.std:.1f})"))
    else:
        if is_defocused(s, state.baseline, cfg):
            found.append(Finding("obscured", t_ms,
                                 f"sharpness {s.sharpness:.3f} < {cfg.sharpness_ratio:g} x baseline {state.baseline:.3f}"))
        frozen, mad, block = is_frozen(state.prev_small, small, cfg, holding="frozen" in state.runs)
        metrics.update(change_mad=None if math.isnan(mad) else round(mad, 3),
                       change_block=None if math.isnan(block) else round(block, 3))
        if frozen and prev_ms is not None and t_ms > prev_ms:
            found.append(Finding("frozen", prev_ms if not gap else t_ms,
                                 f"no change over {(t_ms - prev_ms) / 1000:.0f} s (mean diff {mad:.2f})"))
        last = state.moved_checked_ms
        if reference is not None and ("moved" in state.runs or last is None or t_ms < last
                                      or t_ms - last >= cfg.moved_check_every_s * 1000):
            mc = check_moved(reference, small, cfg)
            state.moved_checked_ms = t_ms
            metrics.update(moved=mc.moved, shift=round(mc.shift, 4), rotation=round(mc.rotation_deg, 2),
                           inliers=mc.inliers)
            if mc.moved:
                found.append(Finding("moved", t_ms, mc.detail))
    # the camera's own sharpness baseline learns only from samples with nothing wrong
    if not found and not is_uniform(s, cfg) and s.sharpness > 0:
        if state.baseline is None:
            state.baseline = s.sharpness
        else:
            a = cfg.baseline_alpha
            state.baseline = math.exp((1 - a) * math.log(state.baseline) + a * math.log(s.sharpness))
        state.baseline_n += 1
    state.prev_small, state.frame_ms = small, t_ms
    return Judgement(t_ms, tuple(found), s, metrics)


# -- events --------------------------------------------------------------------------
@dataclass(frozen=True)
class EventUpdate:
    """An event as it now stands; the index keeps one row per (camera, kind, start_ms)."""

    kind: str
    start_ms: int
    end_ms: int
    ongoing: bool
    detail: str = ""


def fold(state: DetectorState, samples: Iterable[tuple[int, Sequence[Finding]]], cfg: ContentConfig) -> list[EventUpdate]:
    """Fold judged samples (time, findings), in time order, into event updates.

    Updates ``state.runs`` and ``state.prev_ms``; returns every event that was
    opened, extended or closed (the latest version of each), in order.
    """
    out: dict[tuple[str, int], EventUpdate] = {}

    def emit(kind: str, run: Run, end_ms: int, ongoing: bool) -> None:
        out[(kind, run.start_ms)] = EventUpdate(kind, run.start_ms, end_ms, ongoing, run.detail[:2000])

    for t_ms, findings in samples:
        if state.prev_ms is not None and t_ms <= state.prev_ms:
            continue  # already folded (a re-run over the same footage)
        if state.prev_ms is not None and t_ms - state.prev_ms > cfg.max_sample_gap_s * 1000:
            for kind, run in list(state.runs.items()):  # no footage in between: close at the last bad sample
                if run.count >= cfg.need(kind):
                    emit(kind, run, run.last_ms, False)
            state.runs.clear()
        now = {f.kind: f for f in findings}
        for kind in KINDS:
            run = state.runs.get(kind)
            f = now.get(kind)
            if f is None:
                if run is not None:
                    if run.count >= cfg.need(kind):
                        emit(kind, run, t_ms, False)
                    del state.runs[kind]
                continue
            if run is None:
                run = state.runs[kind] = Run(min(f.since_ms, t_ms), t_ms, 1, f.detail)
            else:
                run.last_ms, run.count = t_ms, run.count + 1
            if run.count >= cfg.need(kind):
                emit(kind, run, t_ms, True)
        state.prev_ms = t_ms
    return list(out.values())


# -- coverage: "recorded but not usable" ---------------------------------------------------
def unusable_ms(events: Iterable, start_ms: int, end_ms: int) -> int:
    """Milliseconds of [start_ms, end_ms) covered by content events (any kind,
    overlaps merged).  ``events`` are rows with ``start_ms``/``end_ms`` (e.g.
    :class:`index.models.ContentEvent`)."""
    spans = sorted((max(e.start_ms, start_ms), min(e.end_ms, end_ms)) for e in events)
    total, cursor = 0, start_ms
    for lo, hi in spans:
        lo = max(lo, cursor)
        if hi > lo:
            total += hi - lo
            cursor = hi
    return total


def unusable_by_kind(events: Iterable, start_ms: int, end_ms: int) -> dict[str, int]:
    by: dict[str, list] = {}
    for e in events:
        by.setdefault(e.kind, []).append(e)
    return {k: unusable_ms(v, start_ms, end_ms) for k, v in sorted(by.items())}


def thumbnail_jpeg(bgr: np.ndarray, cfg: ContentConfig) -> bytes:
    """A small JPEG of a colour (BGR) picture, ``thumbnail_width`` wide."""
    h, w = bgr.shape[:2]
    if w > cfg.thumbnail_width:
        bgr = cv2.resize(bgr, (cfg.thumbnail_width, max(1, round(h * cfg.thumbnail_width / w))),
                         interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()
