"""seals: the seal table and each segment's and gap's seal

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 22:10:00

Hourly seals (retention.seals) take in every segment and gap row not sealed yet
(``seal_seq IS NULL``).  Rows that exist when this runs are not marked: the first
seal takes them all in (an installation's history sealed once, then hourly).
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('seal',
    sa.Column('seq', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('period_start_ms', sa.BigInteger(), nullable=False),
    sa.Column('period_end_ms', sa.BigInteger(), nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.Column('root', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('doc_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('prev_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('object_key', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('segments', sa.Integer(), nullable=False),
    sa.Column('gaps', sa.Integer(), nullable=False),
    sa.Column('max_segment_id', sa.BigInteger(), nullable=True),
    sa.Column('head', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('signature', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('key_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('witness_queued', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('seq')
    )
    with op.batch_alter_table('segment', schema=None) as batch_op:
        batch_op.add_column(sa.Column('seal_seq', sa.BigInteger(), nullable=True))
    with op.batch_alter_table('gap', schema=None) as batch_op:
        batch_op.add_column(sa.Column('seal_seq', sa.BigInteger(), nullable=True))
    op.create_index('ix_segment_unsealed', 'segment', ['id'], unique=False,
                    sqlite_where=sa.text('seal_seq IS NULL'), postgresql_where=sa.text('seal_seq IS NULL'))


def downgrade() -> None:
    op.drop_index('ix_segment_unsealed', table_name='segment')
    with op.batch_alter_table('gap', schema=None) as batch_op:
        batch_op.drop_column('seal_seq')
    with op.batch_alter_table('segment', schema=None) as batch_op:
        batch_op.drop_column('seal_seq')
    op.drop_table('seal')
