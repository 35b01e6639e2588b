"""The demo's cameras, areas, equipment, tokens and test records, set up so that
running the demo again on the same data directory adds nothing.

* Cameras: one ``demo-cam-N`` per simulated camera, matched to it by the serial
  the demo gives it (``DEMO0001``…).  A second run finds its cameras and updates
  their connection (the simulators listen on new ports each run); a demo camera
  that this run does not simulate (fewer ``--cameras``, or a duplicate left by an
  older version) is disabled, so it does not sit offline raising alerts for ever.
  Its footage stays, locked, like any camera's.
* Areas and equipment: written with the registry's idempotent ``put_*``.
* Tokens: one per role, the *same* tokens every run.  Their plain text is kept in
  ``DATA_DIR/demo-tokens.json`` (0600, beside ``signing.key`` and
  ``credentials.key``, which guard more) because a person re-running the demo keeps
  using what they copied last time, and the token list stays at four.  A stored
  token the index no longer accepts (revoked, or a new index) is replaced.
* Test records ``DEMO-REC-1``/``-2`` are moved to "now" each run (a new revision),
  so report ``JC-DEMO-0001`` always has fresh footage on the demo's first camera.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from camera_discovery.models import DiscoveredDevice
from index.models import Area, Equipment

from api.ingest import TestRecordIn, ingest
from api.installation import read_json, write_json
from api.runtime import Runtime

DEMO_AREAS = [("lixue", "力学室"), ("hunningtu", "混凝土室"), ("yanghu", "养护室"), ("yangpin", "样品室")]
DEMO_USER, DEMO_PASSWORD = "admin", "demo-Passw0rd"
ROLES = ("admin", "inspector", "operations", "ingest")
CAMERA_PREFIX = "demo-cam-"
TOKENS_FILE = "demo-tokens.json"
DEMO_REPORT = "JC-DEMO-0001"
DEMO_EQUIPMENT = "UTM-DEMO-01"


def demo_serial(n: int) -> str:
    """The serial number of simulated camera ``n`` (1-based): how a later run recognises it."""
    return f"DEMO{n:04d}"


@dataclass(frozen=True)
class DemoSetup:
    cameras: list[str]  # the demo cameras this run records, in simulator order
    tokens: dict[str, str]  # role -> plain token


def set_up(rt: Runtime, devices: list[DiscoveredDevice]) -> DemoSetup:
    cameras = register_cameras(rt, devices)
    tokens = demo_tokens(rt)
    if cameras:
        demo_records(rt, cameras)
    return DemoSetup(cameras, tokens)


def register_cameras(rt: Runtime, devices: list[DiscoveredDevice]) -> list[str]:
    """A demo camera per discovered simulator (sorted by serial); returns their ids."""
    ours = [c for c in rt.registry.cameras() if c.id.startswith(CAMERA_PREFIX)]
    by_serial: dict[str, str] = {}
    for cam in ours:
        by_serial.setdefault(cam.serial, cam.id)
    taken = {c.id for c in rt.registry.cameras()}
    ids = []
    for i, dev in enumerate(sorted(devices, key=lambda d: d.serial or "")):
        area_id, area_name = DEMO_AREAS[i % len(DEMO_AREAS)]
        rt.registry.put_area(Area(id=area_id, name=area_name, created_ms=0), actor="demo")
        onvif = {"onvif_endpoint": dev.endpoint, "onvif_xaddr": dev.xaddrs[0] if dev.xaddrs else None,
                 "clock_offset_ms": round(dev.clock_offset_s * 1000) if dev.clock_offset_s is not None else None}
        cam_id = by_serial.get(dev.serial or "")
        if cam_id is None:
            cam_id = next(f"{CAMERA_PREFIX}{n}" for n in range(1, 10_000) if f"{CAMERA_PREFIX}{n}" not in taken)
            taken.add(cam_id)
            rt.registry.add_camera(rt.new_camera(
                cam_id, dev.profiles[0].stream_uri, username=DEMO_USER, password=DEMO_PASSWORD,
                name=f"演示摄像机 {i + 1} / demo camera {i + 1}", area_id=area_id, manufacturer=dev.manufacturer or "",
                model=dev.model or "", serial=dev.serial or "", **onvif), actor="demo")
        else:
            # the same camera on the simulators' new ports; the password is unchanged, so not rewritten
            row = rt.new_camera(cam_id, dev.profiles[0].stream_uri, username=DEMO_USER)
            rt.registry.update_camera(cam_id, {"rtsp_url": row.rtsp_url, "url_secrets_enc": row.url_secrets_enc,
                                               "username": row.username, "enabled": True, **onvif}, actor="demo")
        ids.append(cam_id)
    for cam in ours:
        if cam.id not in ids and cam.enabled:
            rt.registry.update_camera(cam.id, {"enabled": False}, actor="demo")
    return ids


def demo_tokens(rt: Runtime) -> dict[str, str]:
    """One token per role, reused from ``DATA_DIR/demo-tokens.json`` while the index accepts it."""
    path = rt.settings.data_dir / TOKENS_FILE
    stored = read_json(path)
    tokens = {}
    for role in ROLES:
        token = stored.get(role)
        row = rt.tokens.lookup(token) if isinstance(token, str) else None
        if row is None or row.role != role:
            row, token = rt.tokens.create(f"demo-{role}", role, "demo")
            rt.audit.append("demo", "token.create", f"token:{row.id}", {"name": row.name, "role": role}, "admin")
        tokens[role] = token
    if tokens != stored:
        write_json(path, tokens, mode=0o600)
    return tokens


def demo_records(rt: Runtime, cameras: list[str]) -> None:
    """An instrument on the first demo camera and two test records around 'now', so a report has footage."""
    first, last = rt.registry.camera(cameras[0]), rt.registry.camera(cameras[-1])
    rt.registry.put_equipment(Equipment(id=DEMO_EQUIPMENT, name="微机控制电液伺服万能试验机", area_id=first.area_id,
                                        kind="万能试验机", created_ms=0), [first.id], actor="demo")
    now = rt.clock.now()
    for n, (item, area, eq) in enumerate([("钢筋拉伸 / rebar tensile test", [], [DEMO_EQUIPMENT]),
                                           ("混凝土抗压 / concrete compression", [last.area_id], [])], start=1):
        # through the same check, revision and audit as the core data upload modules' records
        body = TestRecordIn(
            report_no=f"JC-DEMO-000{n}", commission_no=f"WT-DEMO-{n:03d}", project_name="演示工程 / demo project",
            test_item=item, sample_ids=[f"GX-DEMO-{n:05d}"], area_ids=area, equipment_ids=eq,
            operator="演示人员 / demo operator", started_at=now - timedelta(seconds=30), ended_at=now + timedelta(minutes=2))
        ingest(rt.records, rt.audit, f"DEMO-REC-{n}", body, actor="demo", role="ingest",
               max_hours=rt.settings.max_record_hours)
