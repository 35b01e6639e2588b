from __future__ import annotations

import os
import signal

import pytest

from api.settings import load_settings
from labwitness.errors import ConfigError, RetentionTooShortError
from storage.seaweed import EmbeddedSeaweed

from conftest import ACCESS, SECRET, make_store, wait_for


@pytest.mark.parametrize("overrides, error, needle", [
    ({"retention_months": 5}, RetentionTooShortError, "6"),
    ({"retention_months": 0}, RetentionTooShortError, "LABWITNESS_RETENTION_MONTHS"),
    ({"retention_margin_days": -1}, ConfigError, "MARGIN"),
    ({"segment_seconds": 0}, ConfigError, "SEGMENT_SECONDS"),
    ({"segment_seconds": -3}, ConfigError, "SEGMENT_SECONDS"),
    ({"segment_seconds": "abc"}, ConfigError, "segment_seconds"),
    ({"first_segment_seconds": -1}, ConfigError, "FIRST_SEGMENT_SECONDS"),
    ({"segment_seconds": 10, "first_segment_seconds": 11}, ConfigError, "FIRST_SEGMENT_SECONDS"),
])
def test_invalid_settings_refused(overrides, error, needle):
    with pytest.raises(error) as e:
        load_settings(**overrides)
    assert needle in str(e.value)


@pytest.mark.parametrize("keys, missing", [
    ({}, ["LABWITNESS_S3_ACCESS_KEY", "LABWITNESS_S3_SECRET_KEY"]),
    ({"s3_access_key": "ak"}, ["LABWITNESS_S3_SECRET_KEY"]),
    ({"s3_secret_key": "sk"}, ["LABWITNESS_S3_ACCESS_KEY"]),
    ({"s3_access_key": "ak", "s3_secret_key": ""}, ["LABWITNESS_S3_SECRET_KEY"]),
])
def test_an_external_store_needs_its_keys(keys, missing):
    """No default credential: an external endpoint without both keys is refused at start-up."""
    with pytest.raises(ConfigError) as e:
        load_settings(s3_endpoint="http://s3.example:9000", **keys)
    assert all(m in str(e.value) for m in missing) and "外部对象存储" in str(e.value) and "no default" in str(e.value)


def test_no_keys_needed_for_the_embedded_store():
    s = load_settings()
    assert s.s3_endpoint is None and s.s3_access_key is None and s.s3_secret_key is None
    s = load_settings(s3_endpoint="http://s3.example:9000", s3_access_key="ak", s3_secret_key="sk")
    assert s.s3_secret_key is not None and s.s3_secret_key.get_secret_value() == "sk"


def test_environment_and_config_file(tmp_path, monkeypatch):
    cfg = tmp_path / "lw.toml"
    cfg.write_text('segment_seconds = 30\nretention_months = 12\ns3_bucket = "from-file"\n')
    monkeypatch.setenv("LABWITNESS_CONFIG", str(cfg))
    monkeypatch.setenv("LABWITNESS_S3_BUCKET", "from-env")
    s = load_settings()
    assert (s.segment_seconds, s.retention_months, s.s3_bucket) == (30, 12, "from-env")
    monkeypatch.setenv("LABWITNESS_RETENTION_MONTHS", "3")
    with pytest.raises(RetentionTooShortError):
        load_settings()


@pytest.mark.s3
def test_embedded_seaweed_restarts_after_a_crash(tmp_path):
    sw = EmbeddedSeaweed(tmp_path / "sw", ACCESS, SECRET).start()
    try:
        store = make_store(sw, bucket="supervised")
        first = sw.proc.pid
        os.killpg(first, signal.SIGKILL)
        wait_for(lambda: sw.restarts >= 1, 30, what="supervisor restart")
        assert sw.proc.pid != first
        assert store.check().retention_enforced  # same endpoint, same bucket, lock still on
        # every listening socket of weed is on loopback
        import subprocess

        out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
        mine = [l for l in out.splitlines() if f"pid={sw.proc.pid}," in l]
        assert mine and all("127.0.0.1:" in l.split()[3] for l in mine), mine
    finally:
        sw.stop()


@pytest.mark.s3
def test_a_launched_store_is_waited_for_by_start_and_stopped_once(tmp_path):
    """The demo launches weed before its imports (EmbeddedSeaweed.launch); start() then only waits."""
    sw = EmbeddedSeaweed(tmp_path / "sw", ACCESS, SECRET).launch()
    try:
        pid = sw.proc.pid
        assert sw.launched_at is not None
        assert sw.start() is sw and sw.proc.pid == pid  # the same weed, not a second one
        assert make_store(sw, bucket="launched").check().retention_enforced
    finally:
        sw.stop()
        sw.stop()  # (the runtime and the CLI both stop it: a no-op the second time)
    assert sw.proc.poll() is not None
