"""retention.capacity: the plan arithmetic, table-driven (docs/planning.md)."""

from __future__ import annotations

import math

import pytest

from labwitness.errors import LabwitnessError, RetentionTooShortError, ValidationError
from retention import capacity
from retention.capacity import PlanInput, held_seconds, parse_bitrate, plan
from retention.policy import RetentionPolicy

DAY = 86400


@pytest.mark.parametrize("text, bps", [
    ("4M", 4e6), ("4m", 4e6), ("4Mbit", 4e6), ("4 Mbit/s", 4e6), ("4Mbps", 4e6), ("4Mb", 4e6),
    ("512k", 512e3), ("512kbit/s", 512e3), ("2.5M", 2.5e6), ("4000000", 4e6), ("1G", 1e9), (4e6, 4e6), (512, 512.0),
])
def test_bitrates_parse_as_bits_per_second(text, bps):
    assert parse_bitrate(text) == pytest.approx(bps)


@pytest.mark.parametrize("text", ["0", "0M", "-4M", "4MB", "4 MB/s", "4MBps", "fast", "", "4T", "4M4", -1, 0, float("nan")])
def test_bad_bitrates_are_refused(text):
    with pytest.raises(ValidationError):
        parse_bitrate(text)


@pytest.mark.parametrize("cameras", [0, -1, -64, True, 2.5])
def test_camera_count_must_be_positive(cameras):
    with pytest.raises(ValidationError):
        PlanInput.uniform(cameras, "4M")


@pytest.mark.parametrize("months", [0, 1, 5])
def test_retention_below_six_months_is_refused_as_at_start_up(months):
    with pytest.raises(RetentionTooShortError):
        plan(PlanInput.uniform(4, "4M", months=months))


@pytest.mark.parametrize("field, value", [
    ("replication", 0), ("replication", 1.5), ("segment_seconds", 0), ("segment_seconds", 601),
    ("cpu_s_per_stream_min", 0), ("cpu_s_per_stream_min", -0.3), ("cores_per_node", 0),
    ("max_cameras_per_node", 0), ("outage_hours", 0), ("catch_up_hours", -1), ("margin_days", -1),
])
def test_bad_parameters_are_refused(field, value):
    with pytest.raises(LabwitnessError) as e:  # ValidationError, or ConfigError from the policy
        plan(PlanInput.uniform(4, "4M", **{field: value}))
    assert "/" in str(e.value)  # zh / en message


def test_held_time_is_the_policys_longest_retention_plus_the_sweep_interval():
    # six calendar months are at most 184 days (e.g. 31 Aug -> 28/29 Feb is shorter; 1 Mar -> 1 Sep is 184)
    assert held_seconds(RetentionPolicy(6, 7)) == pytest.approx((184 + 7) * DAY + 24 * 3600, abs=1)
    assert held_seconds(RetentionPolicy(12, 0), sweep_interval_h=0) == pytest.approx(366 * DAY, abs=1)
    assert held_seconds(RetentionPolicy(6, 30)) - held_seconds(RetentionPolicy(6, 7)) == pytest.approx(23 * DAY, abs=1)


# cameras, bitrate, months, replication, cores, cap -> storage one copy (TB), recorder nodes
@pytest.mark.parametrize("cameras, bitrate, months, repl, cores, cap, tb_one_copy, nodes", [
    (1, "4M", 6, 1, 2, 64, 4e6 / 8 * 192 * DAY / 1e12, 1),
    (64, "4M", 6, 2, 2, 64, 64 * 4e6 / 8 * 192 * DAY / 1e12, 1),
    (65, "4M", 6, 2, 2, 64, 65 * 4e6 / 8 * 192 * DAY / 1e12, 2),
    (256, "2M", 6, 3, 8, 64, 256 * 2e6 / 8 * 192 * DAY / 1e12, 4),
    (256, "4M", 12, 2, 8, 100, 256 * 4e6 / 8 * (366 + 7 + 1) * DAY / 1e12, 3),
    (10, "512k", 6, 2, 2, 64, 10 * 512e3 / 8 * 192 * DAY / 1e12, 1),
])
def test_storage_and_nodes(cameras, bitrate, months, repl, cores, cap, tb_one_copy, nodes):
    p = plan(PlanInput.uniform(cameras, bitrate, months=months, replication=repl, cores_per_node=cores,
                               max_cameras_per_node=cap))
    assert p.storage_logical_bytes / 1e12 == pytest.approx(tb_one_copy, rel=1e-6)
    assert p.storage_replicated_bytes == pytest.approx(p.storage_logical_bytes * repl, rel=1e-9)
    assert p.storage_provision_bytes == pytest.approx(p.storage_replicated_bytes / capacity.STORAGE_MAX_FILL, rel=1e-9)
    assert p.recorder_nodes == nodes
    assert p.recorder_nodes_n_plus_1 == nodes + 1


# cpu per stream-minute, cores, cap -> streams per node (by CPU at 70 % of the cores, at most the
# measured 150 of one process, then the cap)
@pytest.mark.parametrize("cpu, cores, cap, by_cpu, per_node", [
    (0.30, 2, 64, 150, 64),        # the measured box: CPU is not what limits a node, the cap is
    (0.30, 2, 1000, 150, 150),     # 280 by CPU, but never more than was measured in one process
    (0.60, 1, 1000, 70, 70),
    (6.0, 2, 64, 14, 14),          # an expensive stream (e.g. a transcoding client): CPU limits
    (60.0, 1, 64, 1, 1),           # one stream takes a whole core: still one per node, never zero
    (120.0, 1, 64, 1, 1),
])
def test_streams_per_node(cpu, cores, cap, by_cpu, per_node):
    p = plan(PlanInput.uniform(100, "4M", cpu_s_per_stream_min=cpu, cores_per_node=cores, max_cameras_per_node=cap))
    assert p.streams_per_node_cpu == by_cpu
    assert p.streams_per_node == per_node
    assert p.recorder_nodes == math.ceil(100 / per_node)


# outage, catch-up -> upload rate as a multiple of ingest
@pytest.mark.parametrize("outage, catch_up, factor", [(24, 24, 2.0), (24, 12, 3.0), (1, 4, 1.25), (72, 24, 4.0)])
def test_catch_up_upload_after_an_outage(outage, catch_up, factor):
    p = plan(PlanInput.uniform(20, "4M", outage_hours=outage, catch_up_hours=catch_up, replication=3))
    assert p.ingest_bps == 80e6
    assert p.to_storage_bps == 80e6
    assert p.storage_internal_bps == 160e6  # the store copies each object twice more among its servers
    assert p.catch_up_upload_bps == pytest.approx(80e6 * factor)
    assert p.spool_bytes_per_node == pytest.approx(20 * 4e6 / 8 * outage * 3600, rel=1e-9)


@pytest.mark.parametrize("cameras, seg_s, gaps_day", [(64, 60, 4), (64, 10, 4), (256, 60, 0), (1, 600, 100)])
def test_database_size_from_measured_bytes_per_row(cameras, seg_s, gaps_day):
    p = plan(PlanInput.uniform(cameras, "4M", segment_seconds=seg_s, gaps_per_camera_day=gaps_day))
    held = 192 * DAY
    assert p.segments_held == math.ceil(cameras * held / seg_s)
    assert p.gaps_held == math.ceil(cameras * 192 * gaps_day)
    journal = math.ceil(cameras * 24 * 3600 / seg_s) * capacity.DB_BYTES_PER_JOURNAL_ROW
    assert p.journal_backlog_bytes == journal
    assert p.db_bytes == (p.segments_held * capacity.DB_BYTES_PER_SEGMENT + p.gaps_held * capacity.DB_BYTES_PER_GAP
                          + cameras * 192 * capacity.DB_BYTES_PER_COVERAGE_DAY + journal)
    assert p.db_provision_bytes == round(p.db_bytes * capacity.DB_PROVISION_FACTOR)


def test_64_cameras_half_a_year_is_about_17_million_segment_rows():
    # the figure bench/index_scale and docs/planning.md quote: 64 x 192 days of 1-minute segments
    p = plan(PlanInput.uniform(64, "4M"))
    assert p.segments_held == 64 * 192 * 1440
    assert 10e9 < p.db_bytes < 15e9


def test_from_measured_uses_each_cameras_rate_and_fills_the_others():
    inp = capacity.from_measured(["a", "b", "c"], {"a": 2e6, "b": 4e6, "x": 9e9})
    assert inp.bitrates_bps == (2e6, 4e6, 3e6)  # c: the mean of the measured; x: not enabled, ignored
    assert "2 of 3" in inp.sources["bitrate"]
    inp = capacity.from_measured(["a", "c"], {"a": 2e6}, fallback_bps=8e6)
    assert inp.bitrates_bps == (2e6, 8e6)
    with pytest.raises(ValidationError):
        capacity.from_measured([], {"a": 2e6})
    with pytest.raises(ValidationError):
        capacity.from_measured(["a"], {"a": None})
