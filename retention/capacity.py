"""Capacity planning arithmetic for ``labwitness plan`` (docs/planning.md): pure, no I/O.

From the cameras' bitrates, the retention policy and measured costs, what an
installation needs: storage for the whole retention period (with the policy's
margin, the sweep's lag and the store's replication), recorder nodes (CPU per
stream with headroom, and the per-node camera cap), network bandwidth (cameras
in, to storage, the catch-up after an outage) and the index database's size.

How long footage is held comes from :mod:`retention.policy` (the same
``RetentionPolicy`` that sets every object's retain-until), never a second copy of
the month arithmetic.  Every measured figure below is a named constant with how it
was measured; the CLI lets each be overridden.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone

from labwitness.errors import ValidationError
from labwitness.segment_limits import MAX_TARGET_SECONDS
from retention.policy import RetentionPolicy

# -- measured constants -------------------------------------------------------------------

#: CPU seconds one recorder spends per stream-minute of 1080p25 H.264 ~4 Mbit/s, native RTSP client,
#: 60 s segments, upload with lock read-back included.  bench/README.md "Figures per source",
#: 2026-12-04, 2-core box, 10 streams x 2 min (`bench record --source all`): 0.302 whole process
#: (start-up and drain included), 0.226 recording window; other sources 0.23-0.28 (window),
#: --find-max 100-150 streams 0.32-0.35 (10 s segments).  The whole-process figure is the planning one.
CPU_S_PER_STREAM_MIN = 0.30
#: The same bench's ``h265-g711`` row (G.711 transcoded to AAC), window 0.275: what a site of such cameras plans with.
CPU_S_PER_STREAM_MIN_H265_G711 = 0.28
#: Share of a node's cores the recorder may plan to use: the rest absorbs the reconnect storm after an
#: outage, the catch-up upload, the retention jobs and the bench's observed run-to-run spread (+-15 %).
NODE_CPU_HEADROOM = 0.70
#: Most streams one recorder process was seen to record with nothing lost and uploads keeping pace
#: (p99 close->locked < 5 s): bench/README.md ``--find-max``, 2026-11-25, 2 cores with SeaweedFS on the same
#: box (200 streams lost nothing but uploads fell behind).  One Python process per node: more cores than
#: that box's are not assumed to carry more streams than were measured.
MEASURED_STREAMS_PER_PROCESS = 150
#: Cameras one recorder node holds at most: ``Settings.max_cameras_per_node`` (docs/cluster.md).
DEFAULT_MAX_CAMERAS_PER_NODE = 64
#: Index bytes per row on PostgreSQL 15, heap + TOAST + every index, VACUUM ANALYZEd, measured by
#: ``python -m bench.plan_rowsize --rows 100000`` (2026-12-04): segment rows shaped like the recorder's
#: (real key layout, SHA-256, version id, codec, 1080p), one gap per 50 segments, one journal_outbox row
#: per segment with its JSON body.  Result: segment 673.5 B/row plain (heap 341, indexes 332), 703.1 B/row
#: partitioned by month on start_ms with the primary key (id, start_ms) as migration 0015 makes it (the
#: figure used); gap 303 plain / 418 partitioned (2,000 rows over 4 months: partly page overhead, kept as
#: the conservative figure); journal_outbox 768 (mostly its JSON body).
DB_BYTES_PER_SEGMENT = 703
DB_BYTES_PER_GAP = 418
DB_BYTES_PER_JOURNAL_ROW = 768
#: coverage_day: one row per camera and day (small, fixed columns); estimated from its columns
#: (8-byte ints, a 64-char id, PK index) rather than measured: at 64 cameras it is 12 k rows, noise.
DB_BYTES_PER_COVERAGE_DAY = 150
#: Gaps per camera and day assumed for planning (reconnects, storage outages); a site's own
#: rate comes from ``--from-running``.  Gap rows are a rounding error beside segments at any rate seen.
GAPS_PER_CAMERA_DAY = 4.0
#: Free room the database needs beside its data: VACUUM, index rebuilds and a migration that copies a
#: table (0015's partitioning) temporarily take as much again.
DB_PROVISION_FACTOR = 2.0
#: Fill storage disks to at most this share (SeaweedFS fills volumes whole; a full disk stops writes).
STORAGE_MAX_FILL = 0.80
#: How often the expiry sweep runs (``LABWITNESS_SWEEP_INTERVAL_H`` default): expired footage waits for it.
SWEEP_INTERVAL_H = 24.0

_BITRATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)\s*(bit/s|bits/s|bit|bps|b/s|b)?\s*$")
_SCALE = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}


def parse_bitrate(text: str | float | int) -> float:
    """Bits per second from ``4M``, ``4Mbit``, ``4 Mbit/s``, ``512k``, ``4000000`` (SI: k = 1000).

    Bytes (``4MB``, ``MB/s``) are refused rather than guessed: cameras state bits."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        s = str(text)
        if re.search(r"B(/s|ps)?\s*$", s.strip()) and not re.search(r"(?i)bit", s):
            raise ValidationError(f"码率请用比特表示，例如 4M 或 4Mbit / give the bitrate in bits, e.g. 4M or 4Mbit, not bytes: {s!r}")
        m = _BITRATE.match(s)
        if not m:
            raise ValidationError(f"无法识别的码率 / not a bitrate: {s!r} (e.g. 4M, 4Mbit, 512k, 4000000)")
        value = float(m.group(1)) * _SCALE[m.group(2).lower()]
    if not math.isfinite(value) or value <= 0:
        raise ValidationError(f"码率须大于 0 / the bitrate must be above 0, got {text!r}")
    return value


@dataclass(frozen=True)
class PlanInput:
    """What the plan is computed from; ``bitrates_bps`` has one entry per camera."""

    bitrates_bps: tuple[float, ...]
    months: int = 6
    margin_days: int = 7
    replication: int = 2
    segment_seconds: float = 60.0
    cpu_s_per_stream_min: float = CPU_S_PER_STREAM_MIN
    cores_per_node: float = 2.0
    max_cameras_per_node: int = DEFAULT_MAX_CAMERAS_PER_NODE
    outage_hours: float = 24.0
    catch_up_hours: float = 24.0
    gaps_per_camera_day: float = GAPS_PER_CAMERA_DAY
    #: where each figure came from ("constant" or "measured: ..."), shown with the plan
    sources: dict[str, str] = field(default_factory=dict)

    @classmethod
    def uniform(cls, cameras: int, bitrate: str | float, **kw) -> "PlanInput":
        if isinstance(cameras, bool) or not isinstance(cameras, int) or cameras <= 0:
            raise ValidationError(f"摄像机数须为正整数 / --cameras must be a whole number above 0, got {cameras!r}")
        return cls(bitrates_bps=(parse_bitrate(bitrate),) * cameras, **kw)


def _positive(name: str, value: float, *, integer: bool = False) -> None:
    bad = isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0
    if bad or (integer and int(value) != value):
        kind = "正整数 / a whole number above 0" if integer else "大于 0 / above 0"
        raise ValidationError(f"{name} 须为{kind}, got {value!r}")


def held_seconds(policy: RetentionPolicy, sweep_interval_h: float = SWEEP_INTERVAL_H) -> float:
    """The longest a second of footage stays in storage: the policy's retain-until (months + margin) at
    its longest over a four-year calendar cycle (31 Mar + 6 months is longer than 31 Aug + 6), plus the
    wait for the next sweep.  Every day of 2024-2027 is tried, so leap years are in."""
    first = datetime(2024, 1, 1, 23, 59, 59, tzinfo=timezone.utc)
    longest = max((policy(first + timedelta(days=d)) - (first + timedelta(days=d))).total_seconds() for d in range(1461))
    return longest + sweep_interval_h * 3600


@dataclass(frozen=True)
class Plan:
    cameras: int
    ingest_bps: float
    held_days: float
    storage_logical_bytes: int
    storage_replicated_bytes: int
    storage_provision_bytes: int
    cpu_cores_per_stream: float
    streams_per_node_cpu: int
    streams_per_node: int
    recorder_nodes: int
    recorder_nodes_n_plus_1: int
    to_storage_bps: float
    storage_internal_bps: float
    catch_up_upload_bps: float
    spool_bytes_per_node: int
    segments_held: int
    gaps_held: int
    db_bytes: int
    db_provision_bytes: int
    journal_backlog_bytes: int
    inputs: dict

    def to_json(self) -> dict:
        return asdict(self)


def plan(p: PlanInput) -> Plan:
    """The plan for ``p``; bad input (no cameras, a bitrate or count of 0 or below, retention under
    six months) raises :class:`ValidationError` / :class:`~labwitness.errors.RetentionTooShortError`."""
    if not p.bitrates_bps:
        raise ValidationError("摄像机数须为正整数 / --cameras must be a whole number above 0, got 0")
    for b in p.bitrates_bps:
        _positive("码率 / bitrate", b)
    policy = RetentionPolicy(months=p.months, margin_days=p.margin_days)  # refuses < 6 months, as at start-up
    _positive("--replication", p.replication, integer=True)
    _positive("--segment-seconds", p.segment_seconds)
    if p.segment_seconds > MAX_TARGET_SECONDS:
        raise ValidationError(f"--segment-seconds 不能超过 / must be at most {MAX_TARGET_SECONDS}, got {p.segment_seconds}")
    _positive("--cpu-per-stream", p.cpu_s_per_stream_min)
    _positive("--cores-per-node", p.cores_per_node)
    _positive("--max-cameras-per-node", p.max_cameras_per_node, integer=True)
    _positive("--outage-hours", p.outage_hours)
    _positive("--catch-up-hours", p.catch_up_hours)
    if p.gaps_per_camera_day < 0:
        raise ValidationError(f"gaps per camera-day must be >= 0, got {p.gaps_per_camera_day}")

    cameras = len(p.bitrates_bps)
    ingest_bps = float(sum(p.bitrates_bps))
    held_s = held_seconds(policy)
    logical = ingest_bps / 8 * held_s
    replicated = logical * p.replication

    per_stream = p.cpu_s_per_stream_min / 60.0  # cores one stream keeps busy
    by_cpu = max(1, math.floor(p.cores_per_node * NODE_CPU_HEADROOM / per_stream + 1e-9))  # 1.4/0.1 is 13.999…
    by_cpu = min(by_cpu, MEASURED_STREAMS_PER_PROCESS)
    per_node = min(by_cpu, p.max_cameras_per_node)
    nodes = math.ceil(cameras / per_node)
    # one node down (SIGKILL, upgrade) and its cameras still fit on the others under the same limits
    nodes_n1 = nodes + 1

    # after an outage of the store, the spool holds outage_hours of footage; uploading it within
    # catch_up_hours while recording goes on needs the live rate plus the backlog's share
    catch_up = ingest_bps * (1 + p.outage_hours / p.catch_up_hours)
    spool_node = min(per_node, cameras) * (ingest_bps / cameras) / 8 * p.outage_hours * 3600

    segments = math.ceil(cameras * held_s / p.segment_seconds)
    gaps = math.ceil(cameras * held_s / 86400 * p.gaps_per_camera_day)
    coverage_days = math.ceil(cameras * held_s / 86400)
    db = segments * DB_BYTES_PER_SEGMENT + gaps * DB_BYTES_PER_GAP + coverage_days * DB_BYTES_PER_COVERAGE_DAY
    # the journal outbox drains every minute; during a store outage it holds one row per segment
    journal = math.ceil(cameras * p.outage_hours * 3600 / p.segment_seconds) * DB_BYTES_PER_JOURNAL_ROW

    inputs = {k: v for k, v in asdict(p).items() if k != "bitrates_bps"}
    inputs["bitrate_bps_mean"] = ingest_bps / cameras
    return Plan(
        cameras=cameras, ingest_bps=ingest_bps, held_days=round(held_s / 86400, 2),
        storage_logical_bytes=round(logical), storage_replicated_bytes=round(replicated),
        storage_provision_bytes=round(replicated / STORAGE_MAX_FILL),
        cpu_cores_per_stream=per_stream, streams_per_node_cpu=by_cpu, streams_per_node=per_node,
        recorder_nodes=nodes, recorder_nodes_n_plus_1=nodes_n1,
        to_storage_bps=ingest_bps, storage_internal_bps=ingest_bps * (p.replication - 1),
        catch_up_upload_bps=catch_up, spool_bytes_per_node=round(spool_node),
        segments_held=segments, gaps_held=gaps, db_bytes=db + journal,
        db_provision_bytes=round((db + journal) * DB_PROVISION_FACTOR), journal_backlog_bytes=journal,
        inputs=inputs,
    )


def from_measured(camera_ids: list[str], bitrates_bps: dict[str, float | None], *, fallback_bps: float | None = None,
                  gaps_per_camera_day: float | None = None, **kw) -> PlanInput:
    """The plan input of a running installation: each enabled camera at its measured bitrate; a camera
    without footage in the window at ``fallback_bps`` (the ``--bitrate`` given) or else at the mean of
    the measured ones.  ``sources`` says which figure came from where."""
    if not camera_ids:
        raise ValidationError("注册表中没有启用的摄像机 / no enabled camera in the registry: nothing to plan from")
    measured = {c: b for c, b in bitrates_bps.items() if c in camera_ids and b}
    if fallback_bps is None and measured:
        fallback_bps = sum(measured.values()) / len(measured)
    if fallback_bps is None:
        raise ValidationError("没有近期录像可测码率，请用 --bitrate 指定 / no recent footage to measure a bitrate "
                              "from: give --bitrate")
    rates = tuple(measured.get(c, fallback_bps) for c in camera_ids)
    sources = dict(kw.pop("sources", {}))
    sources["bitrate"] = f"measured: {len(measured)} of {len(camera_ids)} cameras from recent segments"
    if len(measured) < len(camera_ids):
        sources["bitrate"] += f"; {len(camera_ids) - len(measured)} at {fallback_bps / 1e6:.2f} Mbit/s"
    extra = {} if gaps_per_camera_day is None else {"gaps_per_camera_day": gaps_per_camera_day}
    return PlanInput(bitrates_bps=rates, sources=sources, **extra, **kw)
