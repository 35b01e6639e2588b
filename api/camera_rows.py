"""Camera rows with their credentials sealed: a new row from a URL that may carry a
password or secret query values (and an optional sub-stream URL, sealed alike), and
the one-time sealing of rows stored before query secrets were encrypted (:mod:`api.secrets`)."""

from __future__ import annotations

import logging

from camera_discovery.models import DiscoveredDevice, sub_profile
from index.models import Camera
from index.registry import Registry
from labwitness.errors import ValidationError
from recorder.rtsp_url import check_rtsp_url
from storage.layout import check_camera_id

from api.secrets import CredentialCipher, split_credentials

log = logging.getLogger(__name__)


#: a camera registered from discovery gets its sub stream for content health only when its
#: main stream is larger than 1080p: receiving a sub stream costs ~0.09 CPU-s a minute, more than
#: judging a 1080p main stream's keyframes (bench/substream_sample, docs/decisions.md)
AUTO_SUB_STREAM_ABOVE_PX = 1920 * 1080


def new_camera(cipher: CredentialCipher, now_ms: int, camera_id: str, url: str, *, username: str | None = None,
               password: str | None = None, sub_url: str | None = None, **fields) -> Camera:
    """A Camera row from a URL that may carry credentials; the password and the secret
    query values are encrypted, the stored URL keeps ``***`` in their place.  ``sub_url``:
    the camera's sub stream (:func:`seal_sub_url`)."""
    check_camera_id(camera_id)
    check_rtsp_url(url)
    bare, url_user, url_pass = split_credentials(url)
    stored_url, url_secrets_enc = cipher.seal_url(bare)
    sub, sub_secrets = seal_sub_url(cipher, sub_url)
    return Camera(id=camera_id, rtsp_url=stored_url, url_secrets_enc=url_secrets_enc, username=username or url_user,
                  password_enc=cipher.encrypt(password if password is not None else url_pass),
                  sub_rtsp_url=sub, sub_url_secrets_enc=sub_secrets, created_ms=now_ms, **fields)


def seal_sub_url(cipher: CredentialCipher, url: str | None, stored: str | None = None) -> tuple[str | None, str | None]:
    """``(sub-stream URL to store, its encrypted query secrets)``; (None, None) clears it.
    A user name or password in it is refused: the camera's own serve both streams."""
    if not url:
        return None, None
    check_rtsp_url(url)
    bare, user, pw = split_credentials(url)
    if user is not None or pw is not None:
        raise ValidationError("子码流地址不能包含账号密码，摄像机的账号用于两个码流 / give the sub-stream URL "
                              "without credentials: the camera's user name and password serve both streams")
    return cipher.seal_url(bare, stored)


def discovered_sub_url(dev: DiscoveredDevice) -> str | None:
    """The sub stream a camera registered from discovery gets (only for a main above 1080p), without
    any credentials the device put in it (the camera's own are used)."""
    p = sub_profile(dev.profiles, AUTO_SUB_STREAM_ABOVE_PX)
    return split_credentials(p.stream_uri)[0] if p is not None and p.stream_uri else None


def seal_camera_urls(registry: Registry, cipher: CredentialCipher) -> int:
    """Cameras registered before query secrets were sealed still hold them in clear in
    ``rtsp_url``: encrypt them now (migration 0007 cannot, it has no key). Returns how many."""
    sealed = 0
    for cam in registry.cameras():
        stored_url, url_secrets_enc = cipher.seal_url(cam.rtsp_url, cam.url_secrets_enc)
        if stored_url != cam.rtsp_url:
            registry.update_camera(cam.id, {"rtsp_url": stored_url, "url_secrets_enc": url_secrets_enc}, "system")
            sealed += 1
    if sealed:
        log.info("encrypted the query-string credentials of %d camera URL(s)", sealed)
    return sealed
