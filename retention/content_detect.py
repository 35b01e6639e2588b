"""Is the recorded picture usable?  The pure detectors: one sampled frame measured and judged.

Footage that exists but shows nothing fails the retention rule as surely as a
gap.  These functions look at one sampled keyframe at a time (the job decodes
one every ``sample_seconds``, see :mod:`retention.keyframes`); they do no I/O,
read no clock and keep no state: what a camera carries from sample to sample
is :mod:`retention.content_state`, and how a sample's findings become events is
:mod:`retention.content`.

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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

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


# -- a picture to show ----------------------------------------------------------------
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
