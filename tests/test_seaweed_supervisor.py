"""The embedded store's supervisor (storage.seaweed): ports out of the kernel's way, restarts on
the same ports whatever held them up, and says so in the log.  Real weed processes throughout."""

from __future__ import annotations

import logging
import os
import signal
import socket
import time

import pytest

from storage.seaweed import GRPC_OFFSET, EmbeddedSeaweed, ephemeral_range, pick_ports

from conftest import ACCESS, SECRET, make_store, wait_for


def test_ports_lie_outside_the_ephemeral_range():
    """Outgoing connections take their local ports from the ephemeral range; one of them holding
    a port of a weed that is restarting kept it from starting (issue 12, test_faults flake)."""
    lo, hi = ephemeral_range()
    ports = pick_ports(5)
    assert len(set(ports)) == 5
    assert all(not lo <= q <= hi for p in ports for q in (p, p + GRPC_OFFSET)), (ports, lo, hi)


def _squat(port: int, within_s: float = 5.0) -> socket.socket:
    """Take ``port`` the moment the killed weed's listener is gone (before the supervisor's restart)."""
    deadline = time.monotonic() + within_s
    while True:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past the killed weed's TIME_WAITs
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
            return s
        except OSError:
            s.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)


@pytest.mark.s3
def test_a_restart_blocked_by_a_held_port_is_retried_and_comes_back_on_the_same_port(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="storage.seaweed")
    sw = EmbeddedSeaweed(tmp_path / "sw", ACCESS, SECRET).start()
    try:
        store = make_store(sw, bucket="held-port")
        endpoint = sw.endpoint
        os.killpg(sw.proc.pid, signal.SIGKILL)
        squatter = _squat(sw.ports["s3"])  # another program on the S3 port while weed is down
        try:
            wait_for(lambda: "restart of embedded SeaweedFS failed" in caplog.text, 60, what="a failed restart")
            assert "Port allocation failed" in caplog.text  # weed's own reason, from its log
            assert "exited with -9" in caplog.text and "restarting it on the same ports" in caplog.text
            assert sw.restarts == 0
        finally:
            squatter.close()
        wait_for(lambda: sw.restarts == 1, 60, what="the restart once the port is free")
        assert sw.endpoint == endpoint and "is back at " + endpoint in caplog.text
        assert store.check().retention_enforced  # same endpoint, same bucket, lock still on
    finally:
        sw.stop()


@pytest.mark.s3
def test_resume_after_a_pause_is_supervised_again(tmp_path):
    sw = EmbeddedSeaweed(tmp_path / "sw", ACCESS, SECRET).start()
    try:
        sw.pause()
        sw.resume()
        os.killpg(sw.proc.pid, signal.SIGKILL)
        wait_for(lambda: sw.restarts == 1, 60, what="supervisor restart after resume")
        make_store(sw, bucket="after-resume")
    finally:
        sw.stop()
