"""What a stopping recorder leaves behind, told to the person who stopped it
(``Ctrl-C`` on ``serve``/``demo``, the end of ``record``): what this run uploaded,
and that the spool is empty, or what is still in it and where."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from recorder.spool import CameraSpool


@dataclass(frozen=True)
class StopReport:
    uploaded_segments: int  # stored, locked and indexed by this process
    uploaded_bytes: int
    remaining_segments: int  # still in the spool, not yet stored or not yet indexed
    remaining_bytes: int
    remaining_gaps: int  # recorded gaps not yet in the index
    spool_dir: Path

    @classmethod
    def of(cls, spools: list[CameraSpool], spool_dir: Path, uploaded_segments: int, uploaded_bytes: int) -> "StopReport":
        left = [c for s in spools for c in s.committed()]
        gaps = sum(1 for s in spools for _ in s.finished_gaps())
        return cls(uploaded_segments, uploaded_bytes, len(left), sum(c.meta.size for c in left), gaps, spool_dir)

    @property
    def spool_empty(self) -> bool:
        return self.remaining_segments == 0 and self.remaining_gaps == 0

    def message(self) -> str:
        done = (f"本次已上传并锁定 {self.uploaded_segments} 个分段（{_mb(self.uploaded_bytes)}）/ "
                f"uploaded and locked {self.uploaded_segments} segments ({_mb(self.uploaded_bytes)}) this run")
        if self.spool_empty:
            return f"{done}; 本地缓存已清空 / the spool is empty ({self.spool_dir})"
        gaps = f"、{self.remaining_gaps} 段缺口记录" if self.remaining_gaps else ""
        gaps_en = f" and {self.remaining_gaps} gap records" if self.remaining_gaps else ""
        return (f"{done}; 仍有 {self.remaining_segments} 个分段（{_mb(self.remaining_bytes)}）{gaps}留在本地缓存 "
                f"{self.spool_dir}，下次启动时继续上传 / {self.remaining_segments} segments "
                f"({_mb(self.remaining_bytes)}){gaps_en} remain in the spool at {self.spool_dir}; "
                "they are uploaded at the next start")


def _mb(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB"
