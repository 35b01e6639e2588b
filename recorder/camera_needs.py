"""What one camera needs from the native RTSP client, learned while recording it.

The worker (recorder.worker) asks :class:`CameraNeeds` for the native client's
options before each session and tells it how each session went:

* RTP over UDP from the first session the camera refused interleaving;
* the ``rtsps://`` certificate pins, kept in the camera's spool
  (:meth:`recorder.spool.CameraSpool.tls_pins`);
* a shorter keep-alive once its sessions are seen ending on a period
  (:mod:`recorder.session_resets`), with the notice for the camera's status.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from recorder.session_resets import ResetDetector
from recorder.spool import CameraSpool

log = logging.getLogger(__name__)


class CameraNeeds:
    def __init__(self, camera_id: str, url: str, spool: CameraSpool) -> None:
        self.camera_id, self.url, self.spool = camera_id, url, spool
        #: the native client's transport for this camera: "udp" once it refused interleaving
        self.transport = "tcp"
        #: a shorter keep-alive period once the camera is seen resetting sessions on one
        self.keepalive_max_s: float | None = None
        self.resets = ResetDetector()

    def native_options(self) -> dict:
        opts: dict = dict(transport=self.transport, keepalive_max_s=self.keepalive_max_s,
                          on_new_pin=self.spool.set_tls_pin)
        if urlsplit(self.url).scheme == "rtsps":
            opts["tls_pins"] = self.spool.tls_pins()
        return opts

    def opened(self, src) -> None:
        """A session opened: remember the transport it needed."""
        if getattr(src, "transport", "tcp") != self.transport:
            self.transport = src.transport
            log.warning("camera %s refuses RTP over the RTSP connection: recording it over UDP from now on",
                        self.camera_id)

    def session_ended(self, duration_s: float, reason: str, client: str) -> str | None:
        """The notice for the camera's status the first time its sessions show a period; what
        helps is done here (native client: keep-alives at a quarter of the period)."""
        found = self.resets.session_ended(duration_s, reason)
        if found is None:
            return None
        if client == "native":
            self.keepalive_max_s = max(1.0, found.period_s / 4)
        notice = found.message(client)
        log.warning("camera %s: %s", self.camera_id, notice)
        return notice
