"""Registry: areas, cameras, equipment, revisions, encrypted credentials (SQLite and PostgreSQL)."""

from __future__ import annotations

import json

import pytest

from api.secrets import CredentialCipher, split_credentials, with_credentials
from index.models import Area, Camera, Equipment
from index.registry import Registry
from labwitness.errors import ConfigError, ConflictError, NotFoundError, ValidationError


@pytest.fixture
def reg(index):
    t = iter(range(1_000_000, 10_000_000, 1000))
    return Registry(index.engine, lambda: next(t))


@pytest.fixture
def cipher(tmp_path):
    return CredentialCipher.from_settings(None, tmp_path)


def test_every_change_is_a_revision_with_who_when_before_after(reg, cipher):
    reg.put_area(Area(id="lixue", name="力学室", created_ms=0), actor="alice")
    reg.put_area(Area(id="lixue", name="力学室", created_ms=0), actor="alice")  # unchanged: no revision
    reg.put_area(Area(id="lixue", name="力学试验室", created_ms=0), actor="bob")
    cam = Camera(id="c1", rtsp_url="rtsp://127.0.0.1/1", area_id="lixue", username="admin",
                 password_enc=cipher.encrypt("pa55"), created_ms=0)
    reg.add_camera(cam, actor="alice")
    reg.update_camera("c1", {"enabled": False}, actor="carol")
    reg.update_camera("c1", {"password_enc": cipher.encrypt("n3w")}, actor="carol")  # a secret change is a change
    reg.put_equipment(Equipment(id="UTM-01", name="万能试验机", area_id="lixue", created_ms=0), ["c1"], actor="dave")
    reg.remove_camera("c1", actor="erin")

    revs = list(reversed(reg.revisions()))
    assert [(r.entity, r.action, r.actor) for r in revs] == [
        ("area", "create", "alice"), ("area", "update", "bob"), ("camera", "create", "alice"),
        ("camera", "update", "carol"), ("camera", "update", "carol"), ("equipment", "create", "dave"),
        ("camera", "delete", "erin"),
    ]
    assert json.loads(revs[4].after)["password_enc"] == "*** (changed)"
    del revs[4]
    assert json.loads(revs[1].before)["name"] == "力学室" and json.loads(revs[1].after)["name"] == "力学试验室"
    assert json.loads(revs[3].before)["enabled"] is True and json.loads(revs[3].after)["enabled"] is False
    assert revs[5].after is None and json.loads(revs[5].before)["id"] == "c1"
    assert all(r.at_ms > 0 for r in revs) and [r.at_ms for r in revs] == sorted(r.at_ms for r in revs)
    everything = " ".join(f"{r.before} {r.after}" for r in revs)
    assert "pa55" not in everything and cipher.encrypt("pa55")[:20] not in everything and '"***"' in everything
    # the removed camera is unlinked from its equipment
    assert reg.equipment()[0][1] == []


def test_registry_refuses_what_does_not_fit(reg):
    with pytest.raises(ValidationError, match="area"):  # a reference in the input: 422 / exit 2
        reg.add_camera(Camera(id="c1", rtsp_url="rtsp://127.0.0.1/1", area_id="nowhere", created_ms=0), "a")
    reg.add_camera(Camera(id="c1", rtsp_url="rtsp://127.0.0.1/1", created_ms=0), "a")
    with pytest.raises(ConflictError):
        reg.add_camera(Camera(id="c1", rtsp_url="rtsp://127.0.0.1/2", created_ms=0), "a")
    with pytest.raises(ValidationError):
        reg.put_equipment(Equipment(id="e", name="x", created_ms=0), ["ghost"], "a")
    with pytest.raises(NotFoundError):
        reg.update_camera("ghost", {"enabled": False}, "a")
    with pytest.raises(ValueError):
        reg.update_camera("c1", {"id": "other"}, "a")


def test_credentials_encrypted_at_rest(tmp_path, cipher):
    token = cipher.encrypt("s3cret")
    assert "s3cret" not in token and cipher.decrypt(token) == "s3cret"
    assert (tmp_path / "credentials.key").stat().st_mode & 0o777 == 0o600
    assert CredentialCipher.from_settings(None, tmp_path).decrypt(token) == "s3cret"  # same key file reused
    other = CredentialCipher.from_settings(None, tmp_path / "other")
    with pytest.raises(ConfigError, match="key"):
        other.decrypt(token)
    with pytest.raises(ConfigError):
        CredentialCipher(b"not a key")


@pytest.mark.parametrize("url, bare, user, pw", [
    ("rtsp://admin:p%40ss@10.0.0.5:554/Streaming/101", "rtsp://10.0.0.5:554/Streaming/101", "admin", "p@ss"),
    ("rtsp://10.0.0.5/x", "rtsp://10.0.0.5/x", None, None),
    ("rtsp://user@[::1]:8554/x", "rtsp://[::1]:8554/x", "user", None),
])
def test_split_and_rejoin_credentials(url, bare, user, pw):
    assert split_credentials(url) == (bare, user, pw)
    if user:
        assert split_credentials(with_credentials(bare, user, pw)) == (bare, user, pw)
