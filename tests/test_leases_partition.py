"""A silent partition between a recorder node and PostgreSQL (docs/cluster.md, "cut off"): a TCP proxy
between ``labwitness serve --roles recorder`` and the database stops forwarding -- it holds the sockets
open and drops the bytes, so the node's database calls hang instead of failing (no reset, unlike a
stopped database).  The node must stop recording within its lease by its own clock all the same, and
record again, and upload what its spool kept, once the proxy heals."""

import re
import signal
import socket
import subprocess
import sys
import threading
import time

from sqlalchemy import select
from sqlalchemy.engine import make_url

from api.camera_rows import new_camera
from api.secrets import CredentialCipher
from clitools import ROOT, env_for
from conftest import free_port, wait_for
from index.db import make_engine
from index.leases import LeaseStore
from index.migrate import upgrade
from index.models import Segment
from index.registry import Registry

LEASE_S, RENEW_S = 4.0, 1.0


class SilentProxy:
    """127.0.0.1:port -> the database.  ``cut()``: every byte either way is read and dropped, new connections
    are accepted and held; ``heal()``: the connections that lived through the cut are closed (their TCP
    timeouts would have ended them), new ones are forwarded again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.silent = threading.Event()
        self.lsock = socket.create_server(("127.0.0.1", 0))
        self.port = self.lsock.getsockname()[1]
        self.conns: list[tuple[socket.socket, socket.socket | None, list[bool]]] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            up = None if self.silent.is_set() else socket.create_connection(self.target)
            cut = [self.silent.is_set()]
            with self.lock:
                self.conns.append((c, up, cut))
            if up is not None:
                for a, b in ((c, up), (up, c)):
                    threading.Thread(target=self._pump, args=(a, b, cut), daemon=True).start()
            else:
                threading.Thread(target=self._pump, args=(c, None, cut), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket | None, cut: list[bool]) -> None:
        try:
            while data := a.recv(65536):
                if self.silent.is_set():
                    cut[0] = True
                    continue  # dropped: the sender's kernel sees it acknowledged, nothing more
                if b is not None:
                    b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            if s is not None:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        self.silent.set()
        with self.lock:
            for _, _, cut in self.conns:
                cut[0] = True

    def heal(self) -> None:
        with self.lock:
            dead = [(c, up) for c, up, cut in self.conns if cut[0]]
            self.conns = [x for x in self.conns if not x[2][0]]
            self.silent.clear()
        for c, up in dead:
            for s in (c, up):
                if s is not None:
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

    def close(self) -> None:
        self.lsock.close()
        self.cut()
        self.heal()


def test_silent_partition_fences_the_node_and_it_resumes_after(tmp_path, seaweed, rtsp, pg_url):
    engine = make_engine(pg_url)
    upgrade(engine)
    now_ms = lambda: int(time.time() * 1000)  # noqa: E731
    Registry(engine, now_ms).add_camera(new_camera(CredentialCipher.from_settings(None, tmp_path / "admin"), 0, "cam",
                                                   rtsp.url("/live")), actor="test")
    leases = LeaseStore(engine, now_ms)
    u = make_url(pg_url)
    proxy = SilentProxy((u.host, u.port or 5432))
    env = env_for(tmp_path / "n1", seaweed, bucket="partition-footage",
                  LABWITNESS_DATABASE_URL=u.set(port=proxy.port).render_as_string(hide_password=False),
                  LABWITNESS_SEGMENT_SECONDS="2", LABWITNESS_RETENTION_JOBS="false",
                  LABWITNESS_LEASE_SECONDS=str(LEASE_S), LABWITNESS_LEASE_RENEW_SECONDS=str(RENEW_S))
    log_path = tmp_path / "n1.log"
    node = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--roles", "recorder", "--node-id", "n1",
                             "--port", str(free_port())], env=env, cwd=ROOT, stdout=open(log_path, "w"),
                            stderr=subprocess.STDOUT)
    # another live recorder node (this test heartbeats its row): a cut-off n1 must expect a takeover
    leases.register("n2", "recorder", "h", 2, "", live_ms=4000)
    beat = threading.Event()

    def heartbeat():
        while not beat.wait(0.5):
            leases.heartbeat("n2")
    threading.Thread(target=heartbeat, daemon=True).start()

    def segs(after_ms=0):
        with engine.connect() as c:
            t = Segment.__table__
            return c.execute(select(t).where(t.c.camera_id == "cam", t.c.node_id == "n1", t.c.start_ms >= after_ms)
                             .order_by(t.c.start_ms)).all()

    def fenced_lines():
        return len(re.findall(r"camera cam: lease not renewed before it expired", log_path.read_text()))
    try:
        wait_for(lambda: len(segs()) >= 2, 90, what="n1 recording cam")
        time.sleep(1.5)  # let n1 see n2 alive on a tick
        assert fenced_lines() == 0
        cut_ms, cut = now_ms(), time.monotonic()
        proxy.cut()
        wait_for(fenced_lines, 4 * LEASE_S, interval=0.05, what="n1 fenced cam (log line)")
        fenced_after = time.monotonic() - cut
        # the last renewal was sent at most renew_s (+ a slow tick) before the cut: the fence acts a lease
        # (less a margin) after it, neither at once nor past the lease
        assert 1.0 <= fenced_after <= LEASE_S + 1.5, fenced_after
        time.sleep(LEASE_S)  # stays cut for a while: nothing recorded, nothing claimed meanwhile
        heal_ms = now_ms()
        proxy.heal()
        heal = time.monotonic()
        # n1 renews its lease (nobody took it: same epoch) and records again; its spool uploads what it kept
        wait_for(lambda: segs(heal_ms + 500), 60, what="n1 recording again after the heal")
        resumed_after = time.monotonic() - heal
        lease = {lv.camera_id: lv for lv in leases.leases()}["cam"]
        assert lease.node_id == "n1" and lease.epoch == 1
        # recorded before the cut and uploaded later: footage up to the fence is indexed, nothing after it
        wait_for(lambda: max(s.end_ms for s in segs() if s.start_ms < heal_ms) >= cut_ms, 60, what="spool drained")
        during = [s for s in segs() if s.start_ms < heal_ms]
        last_end = max(s.end_ms for s in during)
        assert last_end <= cut_ms + (LEASE_S + 2.0) * 1000, (last_end - cut_ms)
        print(f"\nFIGURES fenced_after_s={fenced_after:.1f} resumed_after_heal_s={resumed_after:.1f} "
              f"last_footage_after_cut_s={(last_end - cut_ms) / 1000:.1f} (lease {LEASE_S} s, renew {RENEW_S} s)")
    finally:
        beat.set()
        proxy.heal()
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(60)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait(10)
        proxy.close()
        engine.dispose()
        print(log_path.read_text()[-3000:])


def test_a_cut_nodes_open_renewal_does_not_keep_its_lease_row_locked(pg_url):
    """A node cut off between its renewal's UPDATE and its COMMIT leaves the lease row locked on the server;
    ``SKIP LOCKED`` claims pass it over until the server ends that session: the leases' engine has the server
    end it after half a lease idle in the transaction (``idle_in_transaction_session_timeout``)."""
    from sqlalchemy import text, update

    from index.db import lease_engine
    from index.leases import LEASE

    engine = make_engine(pg_url)
    upgrade(engine)
    now_ms = lambda: int(time.time() * 1000)  # noqa: E731
    store = LeaseStore(engine, now_ms)
    assert [c.camera_id for c in store.claim("n1", ["cam"], 1)] == ["cam"]  # n1's lease, expiring at once
    cut = lease_engine(engine, 2.0)
    try:
        conn = cut.connect()
        assert conn.execute(text("SHOW idle_in_transaction_session_timeout")).scalar() == "1s"
        assert conn.execute(text("SHOW statement_timeout")).scalar() == "1s"
        conn.execute(update(LEASE).where(LEASE.c.camera_id == "cam").values(renewed_at_ms=now_ms()))  # row locked
        time.sleep(0.05)
        assert store.claim("n2", ["cam"], 6000) == []  # skipped: locked by n1's open transaction
        claims = wait_for(lambda: store.claim("n2", ["cam"], 6000), 10, what="the locked row freed by the server")
        assert claims[0].epoch == 2 and claims[0].prev_node_id == "n1" and claims[0].prev_end == "expired"
    finally:
        cut.dispose()
        engine.dispose()
