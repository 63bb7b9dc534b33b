"""HL7 v2: peers with their profiles, every inbound message (raw, with its ACK), the outbox
of messages to send; the filler number of a service order (ORC-3 of a result); the analyte
code and name of a result (one order, several results: a panel)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28 06:57:06.625380
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hl7_peer",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=60), nullable=False),
        sa.Column("facility_id", sa.Integer(), nullable=False),
        sa.Column("sending_application", sa.String(length=180), nullable=False),
        sa.Column("sending_facility", sa.String(length=180), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("events", sa.String(length=100), nullable=False),
        sa.Column("version", sa.String(length=10), nullable=False),
        sa.Column(
            "mode",
            sa.Enum(
                "apply", "store", name="hl7_peer_mode", native_enum=False, create_constraint=True
            ),
            nullable=False,
        ),
        sa.Column(
            "batch_ack",
            sa.Enum(
                "each", "batch", name="hl7_batch_ack", native_enum=False, create_constraint=True
            ),
            nullable=False,
        ),
        sa.Column("identifier_map", sa.JSON(), nullable=True),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["facility_id"], ["facility.id"], name=op.f("fk_hl7_peer_facility_id_facility")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hl7_peer")),
        sa.UniqueConstraint("name", name=op.f("uq_hl7_peer_name")),
        sa.UniqueConstraint(
            "sending_application",
            "sending_facility",
            name=op.f("uq_hl7_peer_sending_application_sending_facility"),
        ),
    )
    op.create_table(
        "hl7_inbound",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("peer_id", sa.Integer(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("remote", sa.String(length=80), nullable=True),
        sa.Column("sending_application", sa.String(length=180), nullable=False),
        sa.Column("sending_facility", sa.String(length=180), nullable=False),
        sa.Column("control_id", sa.String(length=199), nullable=True),
        sa.Column("message_type", sa.String(length=20), nullable=False),
        sa.Column("version", sa.String(length=10), nullable=False),
        sa.Column("enhanced", sa.Boolean(), nullable=False),
        sa.Column("app_ack_type", sa.String(length=2), nullable=False),
        sa.Column("batch_control_id", sa.String(length=199), nullable=True),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("patient_key", sa.String(length=200), nullable=True),
        sa.Column("patient_id", sa.Integer(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "received",
                "applied",
                "stored",
                "error",
                "rejected",
                name="hl7_inbound_status",
                native_enum=False,
                create_constraint=True,
            ),
            nullable=False,
        ),
        sa.Column("ack_code", sa.String(length=2), nullable=True),
        sa.Column("ack", sa.Text(), nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("error_location", sa.String(length=60), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ack_latency_ms", sa.Integer(), nullable=True),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("last_duplicate_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patient.id"], name=op.f("fk_hl7_inbound_patient_id_patient")
        ),
        sa.ForeignKeyConstraint(
            ["peer_id"], ["hl7_peer.id"], name=op.f("fk_hl7_inbound_peer_id_hl7_peer")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hl7_inbound")),
        sa.UniqueConstraint(
            "sending_application",
            "sending_facility",
            "control_id",
            name=op.f("uq_hl7_inbound_sending_application_sending_facility_control_id"),
        ),
    )
    with op.batch_alter_table("hl7_inbound", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hl7_inbound_patient_id"), ["patient_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_hl7_inbound_patient_key"), ["patient_key"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_hl7_inbound_peer_id"), ["peer_id"], unique=False)
        batch_op.create_index("ix_hl7_inbound_pending", ["status", "id"], unique=False)

    op.create_table(
        "hl7_outbound",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("peer_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event", sa.String(length=20), nullable=False),
        sa.Column("message_type", sa.String(length=20), nullable=False),
        sa.Column("control_id", sa.String(length=40), nullable=False),
        sa.Column("patient_key", sa.String(length=60), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "sent",
                "dead",
                "discarded",
                name="hl7_outbound_status",
                native_enum=False,
                create_constraint=True,
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.String(length=80), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("ack_code", sa.String(length=2), nullable=True),
        sa.Column("ack", sa.Text(), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ack_latency_ms", sa.Integer(), nullable=True),
        sa.Column(
            "inbound_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["inbound_id"], ["hl7_inbound.id"], name=op.f("fk_hl7_outbound_inbound_id_hl7_inbound")
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patient.id"], name=op.f("fk_hl7_outbound_patient_id_patient")
        ),
        sa.ForeignKeyConstraint(
            ["peer_id"], ["hl7_peer.id"], name=op.f("fk_hl7_outbound_peer_id_hl7_peer")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hl7_outbound")),
        sa.UniqueConstraint(
            "peer_id", "control_id", name=op.f("uq_hl7_outbound_peer_id_control_id")
        ),
    )
    with op.batch_alter_table("hl7_outbound", schema=None) as batch_op:
        batch_op.create_index("ix_hl7_outbound_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index(
            "ix_hl7_outbound_order", ["peer_id", "patient_key", "id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_hl7_outbound_patient_id"), ["patient_id"], unique=False
        )

    with op.batch_alter_table("observation_result", schema=None) as batch_op:
        batch_op.add_column(sa.Column("code", sa.String(length=50), nullable=True))
        batch_op.add_column(sa.Column("name", sa.String(length=200), nullable=True))

    with op.batch_alter_table("service_order", schema=None) as batch_op:
        batch_op.alter_column("ordered_by_id", existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column("ordered_by_system", sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column("filler_number", sa.String(length=50), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_service_order_filler_number"), ["filler_number"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("observation_result", schema=None) as batch_op:
        batch_op.drop_column("name")
        batch_op.drop_column("code")

    with op.batch_alter_table("service_order", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_service_order_filler_number"))
        batch_op.drop_column("filler_number")
        batch_op.drop_column("ordered_by_system")
        batch_op.alter_column("ordered_by_id", existing_type=sa.Integer(), nullable=False)

    with op.batch_alter_table("hl7_outbound", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hl7_outbound_patient_id"))
        batch_op.drop_index("ix_hl7_outbound_order")
        batch_op.drop_index("ix_hl7_outbound_due")

    op.drop_table("hl7_outbound")
    with op.batch_alter_table("hl7_inbound", schema=None) as batch_op:
        batch_op.drop_index("ix_hl7_inbound_pending")
        batch_op.drop_index(batch_op.f("ix_hl7_inbound_peer_id"))
        batch_op.drop_index(batch_op.f("ix_hl7_inbound_patient_key"))
        batch_op.drop_index(batch_op.f("ix_hl7_inbound_patient_id"))

    op.drop_table("hl7_inbound")
    op.drop_table("hl7_peer")
