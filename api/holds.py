"""Placing and releasing the legal holds of an evidence package (docs/exports.md,
procedures "hold" and "release"): rows first, then storage, so every S3 legal
hold can be found from its Hold row."""

from __future__ import annotations

import logging

from index.exports import ExportStore
from storage.base import ObjectStore

log = logging.getLogger(__name__)


def place_holds(store: ObjectStore, exports: ExportStore, package_id: str, sources: list[dict]) -> None:
    """Hold every source version (``{"segment_id", "key", "version_id"}``) of a package.
    Raises on the first failure; the caller then releases what the rows name."""
    # 1. the rows, pending, committed before any hold exists
    exports.add_pending_holds(package_id, [src["segment_id"] for src in sources])
    # 2. the holds themselves (idempotent: setting one twice is harmless)
    for src in {(s["key"], s["version_id"]) for s in sources}:
        store.set_legal_hold(*src, True)
    # 3. confirmed
    exports.confirm_holds(package_id)


def release_holds(store: ObjectStore, exports: ExportStore, package_id: str, actor: str) -> int:
    """Release the holds this package placed (pending or placed); a version another
    package still relies on stays held.  Returns how many rows were released; raises
    (leaving the rest unreleased, to be released again) if storage refuses."""
    released = 0
    for h in exports.unreleased_holds(package_id):
        if not exports.others_rely(h.segment_id, package_id):
            store.set_legal_hold(h.key, h.version_id, False)
            # Another export may have written its pending row and set its hold between
            # the check and the release: its row is committed before its hold, so looking
            # again now sees it, and the hold is put back.
            if exports.others_rely(h.segment_id, package_id):
                log.info("segment %s is held by another package meanwhile; hold restored", h.segment_id)
                store.set_legal_hold(h.key, h.version_id, True)
        # the row last: until here a crash leaves it unreleased, and a retry finds it
        exports.mark_released(h.hold_id, actor)
        released += 1
    return released
