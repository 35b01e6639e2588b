"""The document spool (storage.doc_spool): journal batches and seals reach the locked bucket
through a local spool, like footage, and a storage outage loses none of them."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import pytest

from conftest import ACCESS, SECRET, make_store
from labwitness.clock import SystemClock
from labwitness.errors import StorageError, StorageUnavailableError
from storage.doc_spool import DocumentSpool, DocumentUploader
from storage.seaweed import EmbeddedSeaweed


def _until(created: datetime) -> datetime:
    return created + timedelta(days=2)


def _read(store, key: str) -> bytes:
    with store.open(key) as body:
        return body.read()


def test_documents_arrive_locked_in_order_and_byte_identical(tmp_path, store):
    spool = DocumentSpool(tmp_path / "docs", store, _until, SystemClock())
    docs = {f"journal/2026/12/03/21/t-{i}.jsonl": f'{{"n": {i}, "区域": "力学室"}}\n'.encode() for i in range(5)}
    for key, data in docs.items():
        spool.put(key, data)
    assert spool.backlog()[0] == 5
    assert spool.upload_once() == 5
    assert spool.backlog() == (0, None)
    assert not list((tmp_path / "docs").iterdir())
    for key, data in docs.items():
        stored, user = store.stat(key)
        assert _read(store, key) == data
        assert stored.mode == "COMPLIANCE" and stored.retain_until > datetime.now(timezone.utc) + timedelta(days=1)
        assert {k.lower().removeprefix("x-amz-meta-"): v for k, v in user.items()}.get("lw-sha256") == hashlib.sha256(data).hexdigest()


def test_footage_prefix_is_refused(tmp_path, store):
    spool = DocumentSpool(tmp_path / "docs", store, _until, SystemClock())
    with pytest.raises(ValueError):
        spool.put("v1/cam/x.mp4", b"x")


def test_storage_outage_keeps_documents_until_it_returns(tmp_path_factory, tmp_path):
    sw = EmbeddedSeaweed(tmp_path_factory.mktemp("sw-docs"), ACCESS, SECRET, supervise=False).start()
    try:
        store = make_store(sw)
        spool = DocumentSpool(tmp_path / "docs", store, _until, SystemClock())
        sw.pause()
        spool.put("seals/2026/12/03/21-1.json", b'{"seq": 1}')
        with pytest.raises(StorageUnavailableError):
            spool.upload_once()
        assert spool.backlog()[0] == 1  # kept while storage is down
        # a restart of the process while storage is still down keeps it too
        spool = DocumentSpool(tmp_path / "docs", store, _until, SystemClock())
        assert spool.backlog()[0] == 1
        sw.resume()
        assert spool.upload_once() == 1
        assert _read(store, "seals/2026/12/03/21-1.json") == b'{"seq": 1}'
    finally:
        sw.stop()


def test_unfinished_write_is_dropped_and_corruption_is_reported(tmp_path, store):
    root = tmp_path / "docs"
    spool = DocumentSpool(root, store, _until, SystemClock())
    (root / f"{1:020d}.doc").write_bytes(b"half a batch")  # put() died before its record: never returned
    spool.put("journal/a.jsonl", b"whole")
    spool = DocumentSpool(root, store, _until, SystemClock())
    assert len(list(root.glob("*.doc"))) == 1 and spool.backlog()[0] == 1  # only the finished one is left
    doc = next(root.glob("*.doc"))
    doc.write_bytes(b"tampered")
    with pytest.raises(StorageError, match="sha256"):
        spool.upload_once()
    assert doc.exists()  # kept for inspection, not uploaded
    with pytest.raises(Exception):
        store.stat("journal/a.jsonl")


def test_uploader_worker_drains_on_stop(tmp_path, store):
    spool = DocumentSpool(tmp_path / "docs", store, _until, SystemClock())
    up = DocumentUploader(spool, interval_s=0.05).start()
    spool.put("journal/w.jsonl", b"w")
    up.stop()
    assert spool.backlog()[0] == 0
    assert _read(store, "journal/w.jsonl") == b"w"
