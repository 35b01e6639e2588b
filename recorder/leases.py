"""A recorder node's camera leases (docs/cluster.md): heartbeat, renew, claim, balance, hand over.

``LeaseManager.run_once`` every ``renew_s``: heartbeat this node's row, renew the
leases it holds, then apply :func:`recorder.lease_policy.plan` (claim free or
expired leases, give one up when above the fair share) and make the
:class:`~recorder.service.RecorderService` follow exactly the cameras whose lease
it holds, each worker under its lease's epoch.

Self-fencing (when another recorder node was alive at the last tick; a lone node
records on into its spool, as a single box does): a lease is trusted only until
``lease_s`` minus a margin after the renewal (or claim) that granted it was *sent*,
measured on this process's monotonic clock.  A fence thread of its own checks that
every ``renew_s / 4`` and stops each camera whose trust has run out, whatever the
database calls are doing: across a silent partition (packets dropped, no reset) a
call can hang for as long as the TCP timeouts of :func:`index.db.lease_engine`, so
the fence must not wait for it to fail.  A fenced camera records again only after a
renewal at the same epoch (nobody took it) or a new claim succeeds.  Other nodes
claim only once the database's clock has passed the lease's expiry, which the database
wrote as its own time when our renewal arrived -- after we sent it -- plus a lease; so at
least a lease of real time after the send, and a cut-off node has stopped a margin
before that.  Nothing here compares this node's wall clock with another node's: expiry
and liveness are judged on the database's time (``LeaseStore.view``).  Its spool keeps
uploading.

``stop()`` hands over: the node is marked stopped, the workers close their
segments, the uploads drain for a bounded time, and only then are the leases
released, so another node claims each camera at a segment boundary.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import replace
from typing import Callable

from index.leases import Claim, LeaseStore
from labwitness.clock import Clock
from labwitness.errors import IndexUnavailableError
from labwitness.periodic import PeriodicWorker
from recorder.lease_policy import LeaseView, plan
from recorder.service import CameraSpec, RecorderService

log = logging.getLogger(__name__)

FAILOVER_DETAIL = "节点 {node} 失联，租约过期后由 {me} 接管 / node {node} stopped renewing; {me} took the camera over after its lease expired"
HANDOVER_DETAIL = "节点 {node} 停止并交出摄像机，由 {me} 接管 / node {node} stopped and handed the camera over to {me}"


class LeaseManager(PeriodicWorker):
    name = "leases"
    retry_on = (IndexUnavailableError,)
    failed_message = "摄像机租约无法续期，%.0f 秒后重试 / camera leases could not be renewed, retrying in %.0f s: %s"

    def __init__(self, store: LeaseStore, recorder: RecorderService, cameras: Callable[[], list[CameraSpec]], *,
                 node_id: str, lease_s: float, renew_s: float, cap: int, clock: Clock,
                 rates: Callable[[], dict[str, float]] | None = None, metrics=None) -> None:
        super().__init__(interval_s=renew_s, backoff_cap_s=renew_s, first_delay_s=0.0)
        self.store, self.recorder, self.cameras = store, recorder, cameras
        self.node_id, self.lease_s, self.cap, self.clock = node_id, lease_s, cap, clock
        self.rates = rates or (lambda: {})
        self.metrics = metrics
        self.held: dict[str, int] = {}  # camera -> epoch held
        self.valid_until: dict[str, float] = {}  # camera -> monotonic time its lease is trusted until
        self.fenced: dict[str, int] = {}  # camera -> epoch stopped by the fence, maybe still ours in the database
        self.specs: dict[str, CameraSpec] = {}
        #: what stopping takes after trust runs out: the fence thread's period (<= 0.25 s), the stop itself,
        #: scheduling; and the rate difference between this monotonic clock and the database's (ppm).  Not
        #: clock offsets between nodes: expiry is the database's time (index.dbclock), whatever ours says
        self.margin_s = min(1.0, lease_s / 8)
        self._lock = threading.Lock()  # one tick (or the final pass) at a time; held across database calls
        self._state = threading.RLock()  # held, valid_until, fenced and the recorder's cameras; never across the database
        self._fence_thread: threading.Thread | None = None
        self.wake = threading.Event()
        #: another live recorder node at the last tick: only then can a camera be taken over, so only then
        #: does a database outage stop recording at lease expiry (a lone node records on into its spool)
        self.others_alive = False

    @property
    def lease_ms(self) -> int:
        return round(self.lease_s * 1000)

    def start(self):
        self._fence_thread = threading.Thread(target=self._fence_loop, name="lease-fence", daemon=True)
        self._fence_thread.start()
        return super().start()

    def _fence_loop(self) -> None:
        """Stop the cameras whose lease may have run out, every ``renew_s / 4``, independent of the ticks."""
        while not self.stop_event.wait(min(0.25, self.interval_s / 4)):
            try:
                self._fence(self.clock.monotonic())
            except Exception:  # a bug must not end the fence
                log.exception("lease fence: unexpected failure")

    def run(self) -> None:  # the periodic loop, woken early by a camera change (RegistryAdmin.sync_cameras)
        delay = self.first_delay_s
        while not self.stop_event.is_set():
            self.wake.wait(delay)
            self.wake.clear()
            if self.stop_event.is_set():
                return
            try:
                self.run_once()
                self.last_error = ""
                delay = self.interval_s
            except self.retry_on as e:
                delay = self.interval_s
                if str(e) != self.last_error:
                    log.error(self.failed_message, delay, delay, e)
                self.last_error = str(e)
            except Exception as e:  # a bug must not end the leases (the cameras would stop at expiry)
                delay = self.interval_s
                log.exception("leases: unexpected failure")
                self.last_error = f"internal: {e}"

    def run_once(self) -> None:
        with self._lock:
            self._tick()
            self._fence(self.clock.monotonic())

    def _tick(self) -> None:
        self.store.heartbeat(self.node_id)
        with self._state:
            asked = {**self.fenced, **self.held}
        sent = self.clock.monotonic()
        kept = self.store.renew(self.node_id, asked, self.lease_ms)
        with self._state:
            for cid in set(asked) - kept:
                if self.held.get(cid) == asked[cid]:
                    log.warning("camera %s: lease (epoch %d) lost to another node; recording stops here", cid, asked[cid])
                    self._drop(cid)
                elif self.fenced.get(cid) == asked[cid]:
                    del self.fenced[cid]
            for cid in kept:
                self._grant(cid, asked[cid], sent)
        self.specs = {c.camera_id: c for c in self.cameras()}
        # expiry and liveness by the database's clock, the one the rows were written on: a node whose own
        # clock runs ahead would otherwise see live leases expired and live nodes dead
        view = self.store.view()
        now = view.now_ms
        leases = {lv.camera_id: LeaseView(lv.camera_id, lv.node_id, lv.expires_at_ms, lv.prev_node_id, lv.prev_end,
                                          lv.renewed_at_ms) for lv in view.leases if lv.camera_id in self.specs}
        live = view.live("recorder", self.lease_ms)
        self.others_alive = bool(live - {self.node_id})
        rates = self.rates()
        p = plan(self.node_id, now, {c: float(rates.get(c, 0.0)) for c in self.specs}, leases, live,
                 cap=self.cap, lease_ms=self.lease_ms)
        for cid in set(self.held) - set(self.specs):  # disabled or removed: stop, release
            self._hand_over([cid])
        if p.release:  # a short drain: the other leases must be renewed well before they expire
            self._hand_over(p.release, drain_s=self.lease_s / 4)
        sent = self.clock.monotonic()
        for claim in self.store.claim(self.node_id, p.claim, self.lease_ms) if p.claim else []:
            self._took(claim, sent)
        self._follow()

    def _grant(self, cid: str, epoch: int, sent: float) -> None:
        """A renewal or claim sent at ``sent`` succeeded: trust it until ``lease_s`` - margin after that,
        unless that has passed already (the call was slow): then the next renewal decides."""
        until = sent + self.lease_s - self.margin_s
        if until <= self.clock.monotonic() and self.others_alive:
            self.held.pop(cid, None)
            self.valid_until.pop(cid, None)
            self.fenced[cid] = epoch
            return
        if cid in self.fenced and self.fenced[cid] == epoch:
            log.warning("camera %s: lease (epoch %d) renewed again after the fence; recording resumes", cid, epoch)
        self.fenced.pop(cid, None)
        self.held[cid] = epoch
        self.valid_until[cid] = until

    def _took(self, claim: Claim, sent: float) -> None:
        with self._state:
            self.fenced.pop(claim.camera_id, None)  # a new epoch: the old one is over
            self._grant(claim.camera_id, claim.epoch, sent)
        log.info("camera %s: lease claimed (epoch %d, before: %s %s)", claim.camera_id, claim.epoch,
                 claim.prev_node_id or "-", claim.prev_end or "first claim")
        if claim.prev_end in ("expired", "released") and claim.last_end_ms is not None:
            reason = "failover" if claim.prev_end == "expired" else "handover"
            detail = (FAILOVER_DETAIL if reason == "failover" else HANDOVER_DETAIL).format(node=claim.prev_node_id,
                                                                                         me=self.node_id)
            self.recorder.note_takeover(claim.camera_id, claim.last_end_ms, reason, detail)
            if self.metrics is not None:
                self.metrics.lease_takeovers.labels(reason).inc()

    def _fence(self, now: float) -> None:
        """Stop every camera whose lease may have expired by now (the database did not renew it in time),
        unless no other recorder node was alive: then nobody can take it over."""
        if not self.others_alive:
            return
        with self._state:
            late = [c for c, t in self.valid_until.items() if t <= now]
            for cid in late:
                log.error("camera %s: lease not renewed before it expired (database unreachable or slow); recording "
                          "stops here, the spool keeps what was recorded", cid)
                self.fenced[cid] = self.held[cid]
                self._drop(cid)
            if late:
                self._follow()

    def _drop(self, cid: str) -> None:
        self.held.pop(cid, None)
        self.valid_until.pop(cid, None)

    def _follow(self) -> None:
        with self._state:
            specs = [replace(self.specs[c], epoch=e) for c, e in sorted(self.held.items()) if c in self.specs]
            self.recorder.sync(specs)
        if self.metrics is not None:
            self.metrics.leases_held.set(len(specs))

    def _hand_over(self, cameras: list[str], drain_s: float = 5.0) -> None:
        """Stop the cameras (their segments close), let their uploads drain briefly, release their leases."""
        with self._state:
            gone = {c: self.held.pop(c) for c in cameras if c in self.held}
            for c in gone:
                self.valid_until.pop(c, None)
        if not gone:
            return
        self._follow()
        self.recorder.uploader.drain(drain_s)
        for cid, epoch in gone.items():
            try:
                self.store.release(self.node_id, cid, epoch)
                log.info("camera %s: lease released (epoch %d)", cid, epoch)
            except IndexUnavailableError as e:  # it expires by itself: a failover instead of a handover
                log.warning("camera %s: lease not released (%s); it expires in %.0f s", cid, e, self.lease_s)

    def final_pass(self) -> None:
        """Graceful stop: hand every camera over at a segment boundary."""
        with self._lock:
            try:
                self.store.stopped(self.node_id)  # no longer live: the others' fair share grows now
            except IndexUnavailableError:
                pass
            self._hand_over(list(self.held), drain_s=self.lease_s / 2)
            for cid, epoch in list(self.fenced.items()):  # stopped already; free them now rather than at expiry
                try:
                    self.store.release(self.node_id, cid, epoch)
                except IndexUnavailableError:
                    pass

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)  # sets stop_event: the fence thread ends too
        if self._fence_thread is not None:
            self._fence_thread.join(timeout)
            self._fence_thread = None

    def held_cameras(self) -> dict[str, int]:
        with self._state:
            return dict(self.held)


def node_identity() -> tuple[str, int]:
    return socket.gethostname(), os.getpid()


class NodeHeartbeat(PeriodicWorker):
    """A node without camera leases (SQLite's one box, an api or jobs node) keeps its
    ``cluster_node`` row fresh; ``stop()`` marks it stopped."""

    name = "node-heartbeat"
    retry_on = (IndexUnavailableError,)
    failed_message = "节点心跳失败，%.0f 秒后重试 / node heartbeat failed, retrying in %.0f s: %s"

    def __init__(self, store: LeaseStore, node_id: str, interval_s: float) -> None:
        super().__init__(interval_s=interval_s, backoff_cap_s=interval_s)
        self.store, self.node_id = store, node_id

    def run_once(self) -> None:
        self.store.heartbeat(self.node_id)

    def final_pass(self) -> None:
        self.store.stopped(self.node_id)
