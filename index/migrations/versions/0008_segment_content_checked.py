"""segment.content_checked_ms: every segment is content-checked once, late ones too

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 19:30:00

The content-health job used only a per-camera time mark, so a segment indexed
after the mark had passed its time (uploaded late after a storage outage) was
never checked.  Each segment now carries when the job took it in.  Segments the
mark has already passed count as taken in (what the job did with them then
cannot be told apart any more); the rest are checked by the next run.
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('segment', schema=None) as batch_op:
        batch_op.add_column(sa.Column('content_checked_ms', sa.BigInteger(), nullable=True))
    mark = "(SELECT s.sampled_until_ms FROM camera_content_state s WHERE s.camera_id = segment.camera_id)"
    op.execute(f"UPDATE segment SET content_checked_ms = {mark} WHERE end_ms <= {mark}")
    op.create_index('ix_segment_content_unchecked', 'segment', ['camera_id', 'start_ms'], unique=False,
                    sqlite_where=sa.text('content_checked_ms IS NULL'),
                    postgresql_where=sa.text('content_checked_ms IS NULL'))


def downgrade() -> None:
    op.drop_index('ix_segment_content_unchecked', table_name='segment')
    with op.batch_alter_table('segment', schema=None) as batch_op:
        batch_op.drop_column('content_checked_ms')
