"""The expiry sweep's time witnesses, built from the installation: the cameras' own
clocks read live over ONVIF, and the object store's ``Date``.

``retention`` may not import ``camera_discovery`` nor decrypt camera passwords, so
the camera source lives here and is handed to the sweep (scheduled and CLI alike)
as one of its :class:`retention.time_witness.TimeSource` s.  The rule on the
readings is :func:`retention.time_witness.judge`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, wait

from camera_discovery.onvif_client import read_clock
from index.models import Camera
from index.registry import Registry
from labwitness.clock import Clock
from labwitness.errors import LabwitnessError
from retention.time_sources import StoreDateSource
from retention.time_witness import Absent, CameraClock, TimeReading, TimeSource, combine_cameras
from storage.base import ObjectStore

from api.secrets import CredentialCipher

#: cameras asked per sweep: enough for a median that one wrong camera cannot move,
#: few enough that a sweep on a 64-camera lab does not knock on every door
MAX_CAMERAS = 7
#: each camera's answer must come within this (seconds; the whole reading takes at most about twice it)
CAMERA_TIMEOUT_S = 3.0


class CameraClockSource:
    """The enabled cameras that have an ONVIF address, asked in parallel for their
    clock (at most ``max_cameras``, in id order); one witness, their median."""

    name = "cameras"

    def __init__(self, registry: Registry, cipher: CredentialCipher, *, agree_within_s: float,
                 max_cameras: int = MAX_CAMERAS, timeout_s: float = CAMERA_TIMEOUT_S) -> None:
        self.registry = registry
        self.cipher = cipher
        self.agree_within_s = agree_within_s
        self.max_cameras = max_cameras
        self.timeout_s = timeout_s

    def read(self, clock: Clock) -> TimeReading | Absent:
        try:
            cams = [c for c in self.registry.cameras(enabled_only=True) if c.onvif_xaddr][:self.max_cameras]
        except LabwitnessError as e:
            return Absent(self.name, f"camera list unavailable: {e}")
        clocks: list[CameraClock] = []
        failed: list[tuple[str, str]] = []
        if cams:
            pool = ThreadPoolExecutor(max_workers=len(cams), thread_name_prefix="time-witness")
            futures = {pool.submit(self._ask, c, clock): c.id for c in cams}
            done, late = wait(futures, timeout=2 * self.timeout_s + 1)
            pool.shutdown(wait=False, cancel_futures=True)  # a camera that hangs is not waited for
            for f in done:
                r = f.result()
                if isinstance(r, CameraClock):
                    clocks.append(r)
                else:
                    failed.append((futures[f], r))
            failed += [(futures[f], "no answer in time") for f in late]
        clocks.sort(key=lambda c: c.camera_id)
        failed.sort()
        return combine_cameras(clocks, failed, clock.now(), self.agree_within_s, source=self.name)

    def _ask(self, cam: Camera, clock: Clock) -> CameraClock | str:
        try:
            info = read_clock(cam.onvif_xaddr or "", cam.username, self.cipher.decrypt(cam.password_enc),
                              self.timeout_s, clock=clock)
        except Exception as e:  # down, refused, odd answer: this camera is not a witness now
            return f"({type(e).__name__}: {e})"
        if info.clock_offset_s is None:
            return "(no clock in the answer)"
        return CameraClock(cam.id, info.clock_offset_s, info.clock_uncertainty_s or 0.5)


def time_sources(store: ObjectStore, registry: Registry, cipher: CredentialCipher, *, embedded_store: bool,
                 max_skew_s: float) -> list[TimeSource]:
    """The sweep's witnesses: the cameras, and the store's ``Date`` — independent of the
    host clock only when the store is external (the embedded one reads this host's clock)."""
    return [CameraClockSource(registry, cipher, agree_within_s=max_skew_s),
            StoreDateSource(store, independent=not embedded_store)]
