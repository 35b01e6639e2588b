"""Tables. Footage rows (Segment, Gap) are rebuildable from object metadata alone
(see storage.layout); the registry (Area, Camera, Equipment) keeps a Revision of every change.
One job, the schema, which reads better whole: every table beside the others it refers to."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, LargeBinary, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from labwitness.segment_limits import MAX_SEGMENT_MS


class Area(SQLModel, table=True):
    """A testing area of the lab (力学室, 混凝土室, 养护室, 样品室 ...)."""

    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    description: str = Field(default="", max_length=2000)
    created_ms: int = Field(sa_column=Column(BigInteger, nullable=False))


class Camera(SQLModel, table=True):
    """A camera. ``rtsp_url`` never holds a password: credentials live in
    ``username`` and ``password_enc``, and the values of secret query parameters
    (``?user=u&password=…``) in ``url_secrets_enc`` while the URL keeps ``***``
    in their place (both encrypted at rest, see api.secrets and labwitness.url_secrets)."""

    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(default="", max_length=200)
    rtsp_url: str = Field(max_length=2000)
    area_id: str | None = Field(default=None, max_length=64)
    enabled: bool = True
    created_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    updated_ms: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    username: str | None = Field(default=None, max_length=200)
    password_enc: str | None = Field(default=None, max_length=1000)
    url_secrets_enc: str | None = Field(default=None, max_length=4000)
    onvif_endpoint: str | None = Field(default=None, max_length=200, index=True)
    onvif_xaddr: str | None = Field(default=None, max_length=2000)
    manufacturer: str = Field(default="", max_length=200)
    model: str = Field(default="", max_length=200)
    serial: str = Field(default="", max_length=200)
    clock_offset_ms: int | None = None
    #: the camera's sub stream (smaller ONVIF profile), sealed like ``rtsp_url``; the camera's
    #: credentials serve it too.  Only pictures for content health: never recorded (recorder.substream)
    sub_rtsp_url: str | None = Field(default=None, max_length=2000)
    sub_url_secrets_enc: str | None = Field(default=None, max_length=4000)


class Equipment(SQLModel, table=True):
    """A lab instrument, by the lab's own asset number (e.g. a universal testing machine)."""

    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    area_id: str | None = Field(default=None, max_length=64)
    kind: str = Field(default="", max_length=200)
    created_ms: int = Field(sa_column=Column(BigInteger, nullable=False))


class EquipmentCamera(SQLModel, table=True):
    """Which cameras watch which instrument."""

    equipment_id: str = Field(primary_key=True, max_length=64)
    camera_id: str = Field(primary_key=True, max_length=64)


class Revision(SQLModel, table=True):
    """Every change to areas, cameras and equipment: who, when, before, after
    (the regulation asks for traceable changes). Secrets never appear here."""

    __table_args__ = (Index("ix_revision_entity", "entity", "entity_id", "at_ms"),)

    id: int | None = Field(default=None, primary_key=True)
    entity: str = Field(max_length=32)
    entity_id: str = Field(max_length=64)
    action: str = Field(max_length=16)  # create | update | delete | link | unlink
    actor: str = Field(max_length=200)
    at_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    before: str | None = Field(default=None)  # JSON
    after: str | None = Field(default=None)  # JSON


class Segment(SQLModel, table=True):
    __table_args__ = (
        Index("ix_segment_camera_start", "camera_id", "start_ms"),
        UniqueConstraint("key", "version_id", name="uq_segment_key_version"),
        # only the few segments the content-health job has not taken in yet (late uploads)
        Index("ix_segment_content_unchecked", "camera_id", "start_ms",
              sqlite_where=text("content_checked_ms IS NULL"), postgresql_where=text("content_checked_ms IS NULL")),
        # the few rows the next seal takes in
        Index("ix_segment_unsealed", "id", sqlite_where=text("seal_seq IS NULL"), postgresql_where=text("seal_seq IS NULL")),
        # stored footage only, in the clips' order (start, id), with its end: a report counts a
        # run's segments from the index alone (index-only scan), and takes a window's first
        # clips in order without sorting the window's rows (decision 54).  `status` too, although
        # the predicate implies it: SQLite reads the row for a column its WHERE names otherwise
        Index("ix_segment_stored_span", "camera_id", "start_ms", "id", "end_ms", "status",
              sqlite_where=text("status = 'stored'"), postgresql_where=text("status = 'stored'")),
        # the (rare) stored segments of no length: counted by a report, never part of a run
        Index("ix_segment_stored_empty", "camera_id", "start_ms", "end_ms", "status",
              sqlite_where=text("status = 'stored' AND end_ms <= start_ms"),
              postgresql_where=text("status = 'stored' AND end_ms <= start_ms")),
    )

    id: int | None = Field(default=None, primary_key=True)
    camera_id: str = Field(max_length=64)
    start_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    end_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    media_duration_ms: int
    key: str = Field(max_length=300)
    version_id: str = Field(max_length=200)
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    sha256: str = Field(max_length=64)
    retain_until_ms: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    lock_mode: str | None = Field(default=None, max_length=20)
    codec: str = Field(default="", max_length=20)
    audio_codec: str = Field(default="", max_length=20)
    width: int = 0
    height: int = 0
    frames: int = 0
    session_id: str = Field(default="", max_length=64)
    sequence: int = 0
    recorder_id: str = Field(default="", max_length=64)
    # stored | garbage (garbage = marked for deletion after expiry; never before)
    status: str = Field(default="stored", max_length=16)
    # Last time the integrity audit re-hashed the stored object / the lock
    # verification read its retention back (None = never).
    verified_ms: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    lock_verified_ms: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    # When the content-health job took the segment in (sampled it, passed over it with no
    # sample due, or found it older than where checking began for its camera); None = not
    # yet: a segment indexed late, after the job's mark passed its time, is found by this.
    content_checked_ms: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    # The seal (retention.seals) whose Merkle tree holds this row; None = not sealed yet.  A mark
    # per row rather than an id watermark: on PostgreSQL ids are handed out before commit, so a
    # row can become visible after a higher id was already sealed; it is simply sealed next time.
    seal_seq: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    # The writer (docs/cluster.md): its node and the camera lease's epoch it held; None on rows from
    # before issue 16.  Overlapping segments of a failover are both kept; queries prefer the higher epoch.
    node_id: str | None = Field(default=None, max_length=48)
    epoch: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class Gap(SQLModel, table=True):
    """An interval with no footage and why: timeout, refused, auth_failed, not_found,
    not_rtsp, no_video, unsupported_codec, unreachable, stream_ended, decode_error,
    stream_error, tls_untrusted, spool_full, spool_error, recorder_down, recorder_stopped, failover (the
    camera's lease expired on a node that stopped renewing it), handover (a node stopping released it), unknown
    (inferred by an index rebuild)."""

    __table_args__ = (
        Index("ix_gap_camera_start", "camera_id", "start_ms"),
        # a window's gaps are those ending after its start and starting before its end: by end,
        # with the start in the index, a report reads only the gaps it shows (decision 54)
        Index("ix_gap_camera_end", "camera_id", "end_ms", "start_ms"),
        UniqueConstraint("camera_id", "start_ms", "reason", name="uq_gap_camera_start_reason"),
    )

    id: int | None = Field(default=None, primary_key=True)
    camera_id: str = Field(max_length=64)
    start_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    end_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    reason: str = Field(max_length=32)
    detail: str = Field(default="", max_length=2000)
    # the seal that holds this gap as it was then; set back to None when the gap grows (sealed again)
    seal_seq: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    # the writer's node and lease epoch (docs/cluster.md): a stale epoch never changes a newer one's gap
    node_id: str | None = Field(default=None, max_length=48)
    epoch: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class ApiToken(SQLModel, table=True):
    """A bearer token: only its SHA-256 is stored; the token is shown once at creation."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    role: str = Field(max_length=16)  # admin | inspector | operations | ingest
    token_hash: str = Field(max_length=64, unique=True)
    prefix: str = Field(max_length=12)  # first characters, to recognise a token in lists
    created_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_by: str = Field(default="", max_length=200)
    revoked_ms: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class AuditEvent(SQLModel, table=True):
    """Hash-chained log of every footage access and every change:
    ``hash = sha256(prev_hash + canonical(row))`` — altering or removing any
    event breaks the chain from there on (``labwitness audit verify``)."""

    id: int | None = Field(default=None, primary_key=True)
    at_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    actor: str = Field(max_length=200)
    role: str = Field(default="", max_length=16)
    action: str = Field(max_length=64)
    target: str = Field(default="", max_length=300)
    detail: str = Field(default="")  # JSON
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64, unique=True)
    #: HMAC-SHA256(installation audit key, hash): a rewrite of the whole chain in the
    #: database cannot recompute it without the key file (None: written before the key existed)
    mac: str | None = Field(default=None, max_length=64)


class TestRecord(SQLModel, table=True):
    """A test as the lab's core data upload module knows it (委托编号, 报告编号,
    样品编号, 设备编号, 检测项目, 检测人员, 试验开始/结束时间). Lists are JSON arrays."""

    __tablename__ = "test_record"
    __test__ = False  # not a pytest test class, despite the name
    __table_args__ = (
        Index("ix_test_record_report", "report_no"),
        Index("ix_test_record_commission", "commission_no"),
    )

    record_id: str = Field(primary_key=True, max_length=64)
    report_no: str = Field(max_length=64)
    commission_no: str = Field(default="", max_length=64)
    project_name: str = Field(default="", max_length=500)
    test_item: str = Field(default="", max_length=200)
    sample_ids: str = Field(default="[]")
    area_ids: str = Field(default="[]")
    equipment_ids: str = Field(default="[]")
    operator: str = Field(default="", max_length=200)
    started_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    ended_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    revision: int = 1
    updated_ms: int = Field(sa_column=Column(BigInteger, nullable=False))


class TestRecordRevision(SQLModel, table=True):
    """Every version of a test record (Art. 13: changes keep records)."""

    __tablename__ = "test_record_revision"
    __test__ = False
    __table_args__ = (UniqueConstraint("record_id", "revision", name="uq_test_record_revision"),)

    id: int | None = Field(default=None, primary_key=True)
    record_id: str = Field(max_length=64)
    revision: int
    at_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    actor: str = Field(max_length=200)
    before: str | None = None
    after: str


class ExportPackage(SQLModel, table=True):
    """A signed evidence package: its manifest is kept (and signed) so that
    ``/verify/{id}`` can answer without the footage."""

    __tablename__ = "export_package"

    id: str = Field(primary_key=True, max_length=64)
    report_no: str = Field(max_length=64, index=True)
    created_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    actor: str = Field(max_length=200)
    status: str = Field(default="running", max_length=16, index=True)  # queued | running | done | failed
    progress: float = 0.0
    error: str = Field(default="", max_length=2000)
    manifest: str = Field(default="")  # JSON, as signed
    signature: str = Field(default="", max_length=200)  # base64 Ed25519 over the manifest bytes
    package_key: str = Field(default="", max_length=300)  # object key of the zip in storage
    package_version_id: str = Field(default="", max_length=200)
    package_sha256: str = Field(default="", max_length=64)
    #: JSON list of {code, message, camera_id?}: what the package cannot vouch for
    #: (a window not over yet, low coverage, a camera without footage)
    warnings: str = Field(default="[]")
    #: heartbeat of a running export; one that stops beating was interrupted (docs/exports.md)
    updated_ms: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    # -- the export queue (docs/jobs.md): any jobs node's worker claims a queued package --
    #: the node whose export worker builds it now (empty while queued)
    claimed_by: str = Field(default="", max_length=200)
    #: the claiming worker's heartbeat; a running package whose heartbeat is stale is claimed again
    heartbeat_at_ms: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    #: claims so far; each claim fences the earlier one (its writes need its own attempt number)
    attempts: int = 0
    #: the requester's role (for the audit events the worker writes) and the verify URL's base
    role: str = Field(default="", max_length=16)
    base_url: str = Field(default="", max_length=300)


class Hold(SQLModel, table=True):
    """An S3 legal hold put on a segment version because exported footage depends on it.
    Written ``pending`` before the S3 hold is set and ``placed`` once it is, so every
    S3 hold labwitness set has an unreleased row (docs/exports.md)."""

    id: int | None = Field(default=None, primary_key=True)
    segment_id: int = Field(index=True)
    package_id: str = Field(max_length=64, index=True)
    state: str = Field(default="pending", max_length=16)  # pending | placed (released: released_ms set)
    placed_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    released_ms: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    released_by: str | None = Field(default=None, max_length=200)


class WebSession(SQLModel, table=True):
    """A signed-in browser (``api.web.session``), or a one-time sign-in code (``kind`` ``once``).
    Only hashes and references: the SHA-256 of the session id (the cookie), the token's row id
    (never the token), so a database dump signs nobody in.  Every API node reads the same rows."""

    __tablename__ = "web_session"

    id_hash: str = Field(primary_key=True, max_length=64)
    kind: str = Field(default="session", max_length=8)  # session | once
    token_id: int = Field(index=True)
    name: str = Field(default="", max_length=200)
    role: str = Field(max_length=16)
    csrf: str = Field(default="", max_length=100)
    created_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    last_seen_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    #: the hard end (absolute lifetime, or a one-time code's expiry); idle expiry is from last_seen_ms
    expires_ms: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    flash: str = Field(default="[]", max_length=8000)  # JSON [[level, message]] shown once


class JobRun(SQLModel, table=True):
    """One run of a retention job (sweep, verify, integrity, reconcile, rebuild,
    content): health reads the latest of each; an interrupted run stays
    ``running`` with no ``finished_ms`` and the next run resumes from the marks."""

    __tablename__ = "job_run"
    __table_args__ = (Index("ix_job_run_job_started", "job", "started_ms"),)

    id: int | None = Field(default=None, primary_key=True)
    job: str = Field(max_length=32)
    started_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    finished_ms: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    status: str = Field(default="running", max_length=16)  # running | ok | warning | critical | failed | refused
    dry_run: bool = False
    actor: str = Field(default="scheduler", max_length=200)
    summary: str = Field(default="{}")  # JSON


class IntegrityFinding(SQLModel, table=True):
    """Something wrong between the index and storage: missing, altered,
    lock_mismatch, orphan_object, orphan_row ...  Kept until resolved (never
    resolved by deleting footage)."""

    __tablename__ = "integrity_finding"
    __table_args__ = (Index("ix_integrity_finding_open", "resolved_ms", "kind"),)

    id: int | None = Field(default=None, primary_key=True)
    job_run_id: int | None = None
    found_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    kind: str = Field(max_length=32)
    severity: str = Field(default="critical", max_length=16)  # warning | critical
    camera_id: str = Field(default="", max_length=64)
    segment_id: int | None = None
    key: str = Field(default="", max_length=300)
    version_id: str = Field(default="", max_length=200)
    detail: str = Field(default="", max_length=2000)
    resolved_ms: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    resolved_by: str | None = Field(default=None, max_length=200)


class ContentEvent(SQLModel, table=True):
    """Footage that exists but is not usable: blackout, frozen, obscured
    (covered or defocused lens), moved (scene differs from the approved
    reference).  ``end_ms`` grows while the condition lasts."""

    __tablename__ = "content_event"
    __table_args__ = (Index("ix_content_event_camera_start", "camera_id", "start_ms"),)

    id: int | None = Field(default=None, primary_key=True)
    camera_id: str = Field(max_length=64)
    kind: str = Field(max_length=16)  # blackout | frozen | obscured | moved
    start_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    end_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    ongoing: bool = True
    detail: str = Field(default="", max_length=2000)


class CameraContentState(SQLModel, table=True):
    """Per camera: how far content sampling got, its own sharpness baseline,
    the latest sample (thumbnail for the UI) and the admin-approved reference frame."""

    __tablename__ = "camera_content_state"

    camera_id: str = Field(primary_key=True, max_length=64)
    sampled_until_ms: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    last_segment_id: int | None = None
    sharpness_baseline: float | None = None
    last_sample_ms: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    thumbnail_jpeg: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    reference_jpeg: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    reference_approved_ms: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    reference_approved_by: str | None = Field(default=None, max_length=200)
    state: str = Field(default="{}")  # JSON: detector state carried between runs
    #: where the latest sample (the thumbnail) came from: "sub" (sub stream) | "main" (stored main stream)
    last_sample_source: str = Field(default="", max_length=16)


class SegmentRun(SQLModel, table=True):
    """A run of a camera's stored footage: a maximal span its stored segments of positive
    length cover, overlapping or touching ones joined (``index.tiling.merged_runs`` over all
    of them).  Kept by triggers on ``segment`` in the writing transaction (index.segment_runs,
    decision 54), so a report reads a handful of runs, not thousands of segments."""

    __tablename__ = "segment_run"
    __table_args__ = (Index("ix_segment_run_camera_end", "camera_id", "end_ms", "start_ms"),)
    id: int | None = Field(default=None, primary_key=True)
    camera_id: str = Field(max_length=64)
    start_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    end_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    #: at least the longest of its segments (exact when written by the trigger or a settle; the
    #: default, MAX_SEGMENT_MS, when a node of the previous release wrote the run): how far
    #: before a window a segment reaching into it can begin (index.report_sql)
    max_len_ms: int = Field(sa_column=Column(BigInteger, nullable=False, server_default=text(str(MAX_SEGMENT_MS))))


class SegmentHour(SQLModel, table=True):
    """Per camera and UTC hour (by segment start): how many stored segments of positive
    length begin in it; no row for an hour with none.  Kept by the same triggers as
    ``segment_run``, +1 / -1 per segment (migration 0018, decision 56), so a report counts a
    window's whole hours from here and only its partial hours from ``segment``."""

    __tablename__ = "segment_hour"
    __table_args__ = {"sqlite_with_rowid": False}
    camera_id: str = Field(max_length=64, primary_key=True)
    hour_ms: int = Field(sa_column=Column(BigInteger, primary_key=True))
    n: int


class SegmentRunDirty(SQLModel, table=True):
    """Footage that left ``stored`` (or moved) and whose runs are not recomputed yet: the
    triggers write one row per such segment, ``index.segment_runs.settle`` recomputes and deletes
    them (in the same transaction when this release wrote; later, by the coverage job, when a
    node of the previous release did).  A report reads such a camera's runs from its segments."""

    __tablename__ = "segment_run_dirty"
    __table_args__ = (Index("ix_segment_run_dirty_camera", "camera_id"),)
    id: int | None = Field(default=None, primary_key=True)
    camera_id: str = Field(max_length=64)
    start_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    end_ms: int = Field(sa_column=Column(BigInteger, nullable=False))


class CoverageDay(SQLModel, table=True):
    """Per camera and UTC day: recorded milliseconds, bytes and segment count of the
    stored segments (a segment crossing midnight is split between the two days).
    A cache for health over six months (16.8 M rows for 64 cameras): days are
    rolled up once and recomputed when segments of that day appear later (late
    uploads after an outage, reconcile, rebuild) or are deleted (sweep)."""

    __tablename__ = "coverage_day"

    camera_id: str = Field(primary_key=True, max_length=64)
    day_ms: int = Field(sa_column=Column(BigInteger, primary_key=True))
    recorded_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    bytes: int = Field(sa_column=Column(BigInteger, nullable=False))
    segments: int
    computed_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    # The day's lock arithmetic for the monthly compliance report (migration 0016), over the stored
    # segments that *end* in this UTC day (its legal minimum, end + 6 calendar months, shifts by day):
    # count, media ms (end - start), lock verified, no retain-until, not COMPLIANCE mode, the least
    # retain_until - end and the least retain_until.  NULL: a row written by a version before 0016.
    lock_segments: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    lock_recorded_ms: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    lock_verified: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    lock_missing_retain: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    lock_not_compliance: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    lock_min_margin_ms: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    lock_min_until_ms: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class IndexMeta(SQLModel, table=True):
    """Small key/value facts about the index itself (e.g. the segment id up to
    which coverage_day is known to be complete)."""

    __tablename__ = "index_meta"

    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(default="", max_length=2000)


class Seal(SQLModel, table=True):
    """One hourly seal (retention.seals): a signed Merkle root over the segments indexed
    since the previous seal, the gaps, and the audit chain head; stored as a locked object
    under ``seals/``.  ``doc_hash`` chains the seals (each document names the previous)."""

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    period_start_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    period_end_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    root: str = Field(max_length=64)  # all-cameras Merkle root (hex)
    doc_hash: str = Field(max_length=64)  # SHA-256 of the signed head (hex)
    prev_hash: str = Field(max_length=64)
    object_key: str = Field(max_length=300)
    segments: int = 0
    gaps: int = 0
    max_segment_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    head: str = Field(default="")  # the signed head (JSON, canonical bytes): what packages carry
    signature: str = Field(default="", max_length=200)  # base64 Ed25519 over ``head``
    key_id: str = Field(default="", max_length=100)
    #: handed to the witness outbox (retention.seals); false until then, so a failed hand-over is retried
    witness_queued: bool = False


class WitnessDocument(SQLModel, table=True):
    """A document (an hourly seal) waiting to be, or already, sent to the witnesses
    outside the box: the exact bytes and their signature, kept after delivery so that a
    witness added later still receives the whole history (retention.witness)."""

    __tablename__ = "witness_document"

    id: int | None = Field(default=None, primary_key=True)  # delivery order
    doc_id: str = Field(max_length=200, sa_column_kwargs={"unique": True})
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    sha256: str = Field(max_length=64)
    signature: str = Field(max_length=1000)  # base64, as the sealer made it (over ``body``)
    key_id: str = Field(max_length=200)
    created_ms: int = Field(sa_column=Column(BigInteger, nullable=False))


class WitnessDelivery(SQLModel, table=True):
    """The persistent outbox: one row per (document, witness), ``pending`` until the
    witness confirmed it; each failure sets when to try again (retention.witness)."""

    __tablename__ = "witness_delivery"
    __table_args__ = (UniqueConstraint("doc_id", "witness", name="uq_witness_delivery_doc_witness"),
                      Index("ix_witness_delivery_queue", "witness", "state", "document_id"))

    id: int | None = Field(default=None, primary_key=True)
    document_id: int  # witness_document.id: the delivery order
    doc_id: str = Field(max_length=200)
    witness: str = Field(max_length=64)
    state: str = Field(default="pending", max_length=16)  # pending | delivered
    attempts: int = 0
    next_try_ms: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    error_kind: str = Field(default="", max_length=16)  # "" | unavailable | refused
    last_error: str = Field(default="", max_length=2000)
    created_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    delivered_ms: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    receipt: str = Field(default="")  # what the witness answered (JSON), kept as proof of delivery

class JournalOutbox(SQLModel, table=True):
    """Changes to the evidence tables waiting to be journaled into the locked bucket
    (index.journal fills it in the writer's own transaction; retention.journal drains it)."""

    __tablename__ = "journal_outbox"

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32)
    at_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    body: str  # JSON: the row as committed


class ClusterNode(SQLModel, table=True):
    """One labwitness node (docs/cluster.md): its roles and its heartbeat."""

    __tablename__ = "cluster_node"
    node_id: str = Field(primary_key=True, max_length=48)
    roles: str = Field(default="", max_length=64)
    host: str = Field(default="", max_length=255)
    pid: int = 0
    version: str = Field(default="", max_length=32)
    started_at_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    heartbeat_at_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    stopped_at_ms: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class CameraLease(SQLModel, table=True):
    """Which recorder node records a camera (docs/cluster.md): holder, fencing epoch, expiry."""

    __tablename__ = "camera_lease"
    __table_args__ = (Index("ix_camera_lease_node", "node_id"),)
    camera_id: str = Field(primary_key=True, max_length=64)
    node_id: str | None = Field(default=None, max_length=48)  # None: released, free at once
    epoch: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    claimed_at_ms: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    renewed_at_ms: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    expires_at_ms: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    prev_node_id: str = Field(default="", max_length=48)
    prev_end: str = Field(default="", max_length=16)  # "" first claim | expired | released
    failovers: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    last_failover_ms: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    handovers: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
