"""camera.sub_rtsp_url: a camera's sub stream, pictures for content health

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 03:30:00

The main stream stays what is recorded; a camera may also name its sub stream
(ONVIF's smaller profile), whose keyframes the content-health job judges instead
of decoding the main stream's (docs/decisions.md, "sub-stream pictures").  Its
secret query values are sealed like the main URL's (``sub_url_secrets_enc``); the
camera's user name and password serve both streams.  The content state records
which stream the latest sample (the thumbnail) came from.
"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('camera', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sub_rtsp_url', sa.String(length=2000), nullable=True))
        batch_op.add_column(sa.Column('sub_url_secrets_enc', sa.String(length=4000), nullable=True))
    with op.batch_alter_table('camera_content_state', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_sample_source', sa.String(length=16), nullable=False, server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('camera_content_state', schema=None) as batch_op:
        batch_op.drop_column('last_sample_source')
    with op.batch_alter_table('camera', schema=None) as batch_op:
        batch_op.drop_column('sub_url_secrets_enc')
        batch_op.drop_column('sub_rtsp_url')
