"""A small public status page (zh-CN first, English second).

It shows whether each camera is being recorded and locked, never footage:
playing footage needs a token (the API) until the signed-in UI exists.
"""

from __future__ import annotations

from datetime import timedelta
from html import escape
from zoneinfo import ZoneInfo

from labwitness.clock import from_ms, utc_ms


def home_page(rt, tz: ZoneInfo) -> str:
    workers = rt.recorder.workers() if rt.recorder else {}
    now = rt.clock.now()
    rows = []
    for cam in rt.registry.cameras():
        w = workers.get(cam.id)
        f = rt.index.footage(cam.id, utc_ms(now - timedelta(hours=1)), utc_ms(now) + 1)
        clips = "".join(
            f'<li>{from_ms(s.start_ms).astimezone(tz):%H:%M:%S} '
            f'{s.media_duration_ms / 1000:.1f}s · {s.lock_mode or "未锁定 unlocked"} → '
            f'{from_ms(s.retain_until_ms).astimezone(tz):%Y-%m-%d}</li>' if s.retain_until_ms else ""
            for s in f.segments[-8:]
        )
        rows.append(
            f"<section><h2>{escape(cam.id)} <small>{escape(cam.name)}</small></h2>"
            f"<p>状态 State: <b>{escape(w.status.state if w else '未录制 not recording')}</b> · "
            f"近一小时覆盖率 coverage (1 h): {f.coverage * 100:.1f}% · 缺口 gaps: {len(f.gaps)}</p>"
            f"<ul>{clips}</ul></section>"
        )
    info = rt.store.info
    lock = "对象锁定 COMPLIANCE 已启用 / Object Lock enforced" if info.retention_enforced else "⚠ 存储未强制保留 / retention NOT enforced"
    return (
        "<!doctype html><html lang=zh-CN><meta charset=utf-8><title>labwitness 录像留存</title>"
        "<style>body{font-family:sans-serif;margin:2em}section{border-top:1px solid #ccc;padding:.5em 0}</style>"
        f"<h1>labwitness 检测区域录像留存 / Testing-area video retention</h1>"
        f"<p>{escape(info.location)} · {lock} · 保留 {rt.policy.months} 个月 + {rt.policy.margin_days} 天 / "
        f"kept {rt.policy.months} months + {rt.policy.margin_days} days</p>"
        + "".join(rows) + '<p><a href="/docs">API</a> · <a href="/api/v1/health">health</a></p></html>'
    )
