"""witness outbox: documents (seals) and their deliveries to external witnesses

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 22:00:00

Seals are sent to witnesses outside the box (a second S3 bucket with Object Lock,
an HTTPS endpoint) through a persistent outbox, so nothing is lost while a witness
is down: ``witness_document`` keeps each document's exact bytes and signature,
``witness_delivery`` one row per (document, witness) until the witness confirmed it.
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('witness_document',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('doc_id', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('signature', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('key_id', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('doc_id')
    )
    op.create_table('witness_delivery',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('document_id', sa.Integer(), nullable=False),
    sa.Column('doc_id', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('witness', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_try_ms', sa.BigInteger(), nullable=False),
    sa.Column('error_kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.Column('delivered_ms', sa.BigInteger(), nullable=True),
    sa.Column('receipt', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('doc_id', 'witness', name='uq_witness_delivery_doc_witness')
    )
    op.create_index('ix_witness_delivery_queue', 'witness_delivery', ['witness', 'state', 'document_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_witness_delivery_queue', table_name='witness_delivery')
    op.drop_table('witness_delivery')
    op.drop_table('witness_document')
