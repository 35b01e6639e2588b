"""Camera rows with their credentials sealed: a new row from a URL that may carry a
password or secret query values, and the one-time sealing of rows stored before
query secrets were encrypted (:mod:`api.secrets`)."""

from __future__ import annotations

import logging

from index.models import Camera
from index.registry import Registry
from recorder.rtsp_url import check_rtsp_url
from storage.layout import check_camera_id

from api.secrets import CredentialCipher, split_credentials

log = logging.getLogger(__name__)


def new_camera(cipher: CredentialCipher, now_ms: int, camera_id: str, url: str, *, username: str | None = None,
               password: str | None = None, **fields) -> Camera:
    """A Camera row from a URL that may carry credentials; the password and the secret
    query values are encrypted, the stored URL keeps ``***`` in their place."""
    check_camera_id(camera_id)
    check_rtsp_url(url)
    bare, url_user, url_pass = split_credentials(url)
    stored_url, url_secrets_enc = cipher.seal_url(bare)
    return Camera(id=camera_id, rtsp_url=stored_url, url_secrets_enc=url_secrets_enc, username=username or url_user,
                  password_enc=cipher.encrypt(password if password is not None else url_pass),
                  created_ms=now_ms, **fields)


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
