"""Retention: how long footage must be kept, and the jobs that act on it.

Owns the policy arithmetic and the sweep's decisions (:mod:`retention.policy`,
pure functions with table-driven tests) and the scheduled jobs — expiry sweep
(:mod:`~retention.sweep`), lock verification (:mod:`~retention.verify`),
integrity audit (:mod:`~retention.integrity`), reconcile
(:mod:`~retention.reconcile`), index rebuild (:mod:`~retention.rebuild`),
picture health (:mod:`~retention.content_job`; sub-stream samples or stored
keyframes: :mod:`~retention.picture_sources`), hourly seals (:mod:`~retention.seals`:
signed Merkle roots, :mod:`~retention.merkle`, :mod:`~retention.seal_doc`; checked from
storage by :mod:`~retention.seal_verify`) — their bookkeeping below them
(:mod:`~retention.runs`) and their schedule above them
(:mod:`~retention.scheduler`); the time witnesses the sweep checks its clock
against before deleting (:mod:`~retention.time_witness`, pure;
:mod:`~retention.time_sources`); health (:mod:`~retention.health`, with the
camera-clock rule of :mod:`~retention.camera_clock`) and the
monthly compliance report (:mod:`~retention.compliance`).  Procedures and
invariants in ``docs/retention.md``.  Imports ``storage``, ``index`` and
``labwitness`` only.  The recorder never imports this package — recording does
not depend on deletion code; ``api`` passes :func:`retention.policy.RetentionPolicy`
into the uploader as a plain callable.
"""
