"""Is the recorded picture usable?  A sample judged, samples folded into events.

:func:`judge` applies the detectors (:mod:`retention.content_detect`) to one
sampled frame with what the camera carries from the previous samples
(:mod:`retention.content_state`) and advances it; :func:`fold` turns judged
samples into events; :func:`unusable_ms` measures what the events cover.  No
I/O, no clock.

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

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from retention.content_detect import (
    KINDS, ContentConfig, FrameStats, Reference, check_moved, downscale, frame_stats, is_blackout, is_defocused,
    is_frozen, is_uniform,
)
from retention.content_state import DetectorState, Run


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
