"""camera url secrets, short token prefixes, revisions without URL secrets

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 10:00:00

- ``camera.url_secrets_enc``: the encrypted values of secret query parameters of a
  camera URL (``?password=…``); the URL keeps ``***`` in their place. Rows written
  before keep their values in ``rtsp_url`` until the service's next start moves
  them (api.secrets.seal_camera_urls: the key is not available here).
- ``api_token.prefix``: at most 6 characters shown (it was 10: all of a short token).
- Revisions: camera URLs in ``before``/``after`` are redacted in place; a revision
  is the history of a change, and a password is no part of that history.
"""
import json

from alembic import op
import sqlalchemy as sa
import sqlmodel

from labwitness.url_secrets import redact_url

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

_URL_FIELDS = ("rtsp_url", "onvif_xaddr")


def _redacted(doc: str | None) -> str | None:
    if not doc:
        return doc
    try:
        data = json.loads(doc)
    except ValueError:
        return doc
    if not isinstance(data, dict):
        return doc
    for f in _URL_FIELDS:
        if isinstance(data.get(f), str):
            data[f] = redact_url(data[f])
    return json.dumps(data, ensure_ascii=False, sort_keys=True)


def upgrade() -> None:
    with op.batch_alter_table('camera', schema=None) as batch_op:
        batch_op.add_column(sa.Column('url_secrets_enc', sqlmodel.sql.sqltypes.AutoString(length=4000), nullable=True))
    bind = op.get_bind()
    bind.execute(sa.text("UPDATE apitoken SET prefix = substr(prefix, 1, 6) WHERE length(prefix) > 6"))
    rows = bind.execute(sa.text("SELECT id, before, after FROM revision WHERE entity = 'camera'")).all()
    for rid, before, after in rows:
        new_before, new_after = _redacted(before), _redacted(after)
        if (new_before, new_after) != (before, after):
            bind.execute(sa.text("UPDATE revision SET before = :b, after = :a WHERE id = :i"),
                         {"b": new_before, "a": new_after, "i": rid})


def downgrade() -> None:
    with op.batch_alter_table('camera', schema=None) as batch_op:
        batch_op.drop_column('url_secrets_enc')
