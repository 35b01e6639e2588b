"""What an evidence package cannot vouch for, said in its job status, manifest and
the UI: a window not over yet (footage after the export does not exist), a camera
with little or no footage in its window.  Pure: a function of named inputs."""

from __future__ import annotations

from dataclasses import dataclass

from labwitness.clock import from_ms
from storage.layout import iso_ms

#: a camera covering less of its window than this is named in the warnings
LOW_COVERAGE = 0.95


@dataclass(frozen=True)
class WindowFacts:
    camera_id: str
    start_ms: int
    end_ms: int
    coverage: float  # share of the window (margins included) with stored footage, 0..1
    #: share of the test windows themselves covered; None when unknown. Low coverage is
    #: judged on this: uncovered margins alone do not make the test's footage incomplete
    test_coverage: float | None = None


def export_warnings(now_ms: int, windows: list[WindowFacts], low_coverage: float = LOW_COVERAGE) -> list[dict]:
    """Warnings as ``{"code", "message", "camera_id"?}``, in a stable order: the
    window first (once, for the latest end), then each camera."""
    out: list[dict] = []
    latest = max((w.end_ms for w in windows), default=None)
    if latest is not None and latest > now_ms:
        at = iso_ms(from_ms(latest))
        out.append({"code": "window_not_over",
                    "message": f"录像时段尚未结束（至 {at}），导出时刻之后的录像尚不存在 / "
                               f"the footage window runs until {at}, after this export: footage after it does not exist yet"})
    for w in sorted(windows, key=lambda w: (w.camera_id, w.start_ms)):
        if w.coverage <= 0:
            out.append({"code": "no_footage", "camera_id": w.camera_id,
                        "message": f"{w.camera_id}：时段内没有录像，证据包中不含该摄像机 / "
                                   f"{w.camera_id}: no footage in the window; the package has no file for this camera"})
        elif (w.coverage if w.test_coverage is None else w.test_coverage) < low_coverage:
            out.append({"code": "low_coverage", "camera_id": w.camera_id, "message": _low_coverage_message(w)})
    return out


def _low_coverage_message(w: WindowFacts) -> str:
    if w.test_coverage is None:
        return (f"{w.camera_id}：录像仅覆盖时段的 {w.coverage:.1%} / "
                f"{w.camera_id}: footage covers only {w.coverage:.1%} of the window")
    return (f"{w.camera_id}：录像仅覆盖检测时段的 {w.test_coverage:.1%}（含前后余量 {w.coverage:.1%}） / "
            f"{w.camera_id}: footage covers only {w.test_coverage:.1%} of the test itself ({w.coverage:.1%} with the margins)")
