"""coverage_day: the day's lock arithmetic for the monthly compliance report

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04 15:10:00

The compliance report of 256 cameras read a month of segment rows (11 M) for its lock
columns; ``coverage_day`` now also holds, per camera and UTC day, the lock arithmetic of
the stored segments that end in that day (``lock_*``, see ``index.models.CoverageDay``),
so the report reads the closed days from the rollup and only the month's edges live.

Expand-only: nullable columns an older node leaves NULL (the report then reads that camera
live).  The rolled-up days and the rollup's watermarks are emptied so the next refresh
rolls every closed day up again with the new columns (``index.coverage``: health sums live
meanwhile, slower but exact).
"""
from alembic import op
import sqlalchemy as sa


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

COLUMNS = (('lock_segments', sa.Integer()), ('lock_recorded_ms', sa.BigInteger()), ('lock_verified', sa.Integer()),
           ('lock_missing_retain', sa.Integer()), ('lock_not_compliance', sa.Integer()),
           ('lock_min_margin_ms', sa.BigInteger()), ('lock_min_until_ms', sa.BigInteger()))


def upgrade() -> None:
    with op.batch_alter_table('coverage_day', schema=None) as batch_op:
        for name, type_ in COLUMNS:
            batch_op.add_column(sa.Column(name, type_, nullable=True))
    op.execute("DELETE FROM coverage_day")
    op.execute("DELETE FROM index_meta WHERE key IN ('coverage_seen_segment_id', 'coverage_checked_segment_id')")


def downgrade() -> None:
    with op.batch_alter_table('coverage_day', schema=None) as batch_op:
        for name, _ in reversed(COLUMNS):
            batch_op.drop_column(name)
