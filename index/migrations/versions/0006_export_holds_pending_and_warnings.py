"""export holds pending state, export warnings and heartbeat

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 10:00:00

Hold rows are now written ``pending`` before their S3 legal hold is set and
``placed`` after (docs/exports.md); rows from before were written after their
holds were set, so they are ``placed``.
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('hold', schema=None) as batch_op:
        batch_op.add_column(sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False,
                                      server_default='placed'))
        batch_op.create_index(batch_op.f('ix_hold_package_id'), ['package_id'], unique=False)
    with op.batch_alter_table('export_package', schema=None) as batch_op:
        batch_op.add_column(sa.Column('warnings', sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('updated_ms', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('export_package', schema=None) as batch_op:
        batch_op.drop_column('updated_ms')
        batch_op.drop_column('warnings')
    with op.batch_alter_table('hold', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_hold_package_id'))
        batch_op.drop_column('state')
