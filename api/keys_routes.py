"""``GET /.well-known/labwitness-keys.json``: the lab's public signing keys, for anyone.

A verifier saves ``public_key_pem`` of the key whose ``key_id`` a manifest names as
``signing_key`` (or runs ``labwitness key export``) and checks packages with
``labwitness verify --public-key lab.pub``.  See :mod:`api.keyring`.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api.deps import ExporterDep, SettingsDep
from api.keyring import WELL_KNOWN, well_known

router = APIRouter(tags=["public"])


class PublishedKey(BaseModel):
    key_id: str  # "SHA256:<hex of the raw public key>", as manifests name it in "signing_key"
    algorithm: str
    use: str
    public_key_pem: str
    public_key: str  # the raw key, base64
    valid_from: str
    valid_until: str | None  # null: the key in use now


class PublishedKeys(BaseModel):
    issuer: str
    keys: list[PublishedKey]


@router.get(WELL_KNOWN, response_model=PublishedKeys)
def labwitness_keys(settings: SettingsDep, exporter: ExporterDep) -> JSONResponse:
    """实验室签名公钥（公开） / The lab's evidence-signing public keys, every one it has used (public)."""
    body = well_known(settings.data_dir, exporter.key)
    return JSONResponse(body, headers={"Cache-Control": "public, max-age=300"})
