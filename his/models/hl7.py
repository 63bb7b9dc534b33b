"""HL7 v2 exchange: the peers we talk to, every message received and every message to send.

Both message tables keep the message exactly as it was on the wire (received bytes, sent
text) beside the few header fields the listener, the dispatcher and the admin page filter
on: nothing is ever rebuilt from the domain tables after the fact.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import JSON, ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from his.db import Base
from his.models.facility import Facility
from his.models.types import BigIntPK, created_at, str_enum


class PeerMode(enum.StrEnum):
    APPLY = "apply"  # messages change our records
    STORE = "store"  # messages are kept and acknowledged, never applied


class BatchAck(enum.StrEnum):
    EACH = "each"  # one ACK per message of a batch
    BATCH = "batch"  # one batch ACK naming only the messages in error


class Hl7Peer(Base):
    """A system we exchange HL7 v2 with: how it names itself in MSH-3/MSH-4 when it sends,
    where we send to, which of our events it wants, and its profile (version, identifier
    mapping, apply or store only). The profile is documented in docs/hl7v2-profile.md."""

    __tablename__ = "hl7_peer"
    __table_args__ = (UniqueConstraint("sending_application", "sending_facility"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(60), unique=True)
    # Whose records the peer's messages change, and in whose name (the audit trail).
    facility_id: Mapped[int] = mapped_column(ForeignKey("facility.id"))
    # How the peer names itself in MSH-3 / MSH-4 of what it sends (inbound matching).
    sending_application: Mapped[str] = mapped_column(String(180), default="")
    sending_facility: Mapped[str] = mapped_column(String(180), default="")
    # Where our outbound messages go; no host means inbound only.
    host: Mapped[str | None] = mapped_column(String(255))
    port: Mapped[int | None]
    # Comma-separated event classes it subscribes to: ADT, OML, RDE.
    events: Mapped[str] = mapped_column(String(100), default="")
    version: Mapped[str] = mapped_column(String(10), default="2.5.1")
    mode: Mapped[PeerMode] = mapped_column(
        str_enum(PeerMode, "hl7_peer_mode"), default=PeerMode.APPLY
    )
    batch_ack: Mapped[BatchAck] = mapped_column(
        str_enum(BatchAck, "hl7_batch_ack"), default=BatchAck.EACH
    )
    # PID-3 identifier type code (CX-5) -> our identifier kind ("cccd", "bhyt", "mrn",
    # "cmnd", "passport"); codes not listed are kept as the peer's external identifiers.
    identifier_map: Mapped[dict | None] = mapped_column(JSON)
    # Tries before a message to this peer is parked as a dead letter.
    max_attempts: Mapped[int] = mapped_column(default=10)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[created_at]

    facility: Mapped[Facility] = relationship()

    @property
    def event_classes(self) -> set[str]:
        return {e.strip().upper() for e in self.events.split(",") if e.strip()}


class InboundStatus(enum.StrEnum):
    RECEIVED = "received"  # stored, waiting to be applied
    APPLIED = "applied"
    STORED = "stored"  # the peer's profile says store only
    ERROR = "error"  # AE: understood, not applied
    REJECTED = "rejected"  # AR: not accepted (unsupported, unreadable, unknown sender)


class Hl7Inbound(Base):
    """One message as received. Committed before any acknowledgment leaves, so a message
    we acknowledged is never lost; (sender, MSH-10) is unique, so a resend is recognised."""

    __tablename__ = "hl7_inbound"
    __table_args__ = (
        UniqueConstraint("sending_application", "sending_facility", "control_id"),
        Index("ix_hl7_inbound_pending", "status", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    peer_id: Mapped[int | None] = mapped_column(ForeignKey("hl7_peer.id"), index=True)
    received_at: Mapped[created_at]
    remote: Mapped[str | None] = mapped_column(String(80))  # host:port of the connection
    sending_application: Mapped[str] = mapped_column(String(180), default="")
    sending_facility: Mapped[str] = mapped_column(String(180), default="")
    # None when MSH-10 is missing or unreadable: such messages are stored and refused.
    control_id: Mapped[str | None] = mapped_column(String(199))
    message_type: Mapped[str] = mapped_column(String(20), default="")  # ADT^A04
    version: Mapped[str] = mapped_column(String(10), default="")
    enhanced: Mapped[bool] = mapped_column(default=False)
    app_ack_type: Mapped[str] = mapped_column(String(2), default="")  # MSH-16
    batch_control_id: Mapped[str | None] = mapped_column(String(199))
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    # Key that orders application: messages of one patient are applied in arrival order.
    patient_key: Mapped[str | None] = mapped_column(String(200), index=True)
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patient.id"), index=True)
    status: Mapped[InboundStatus] = mapped_column(
        str_enum(InboundStatus, "hl7_inbound_status"), default=InboundStatus.RECEIVED
    )
    ack_code: Mapped[str | None] = mapped_column(String(2))
    ack: Mapped[str | None] = mapped_column(Text)  # the acknowledgment sent, kept for resends
    error_code: Mapped[int | None]  # HL7 table 0357
    error_location: Mapped[str | None] = mapped_column(String(60))
    error: Mapped[str | None] = mapped_column(Text)
    applied_at: Mapped[dt.datetime | None]
    acked_at: Mapped[dt.datetime | None]
    ack_latency_ms: Mapped[int | None]
    duplicates: Mapped[int] = mapped_column(default=0)
    last_duplicate_at: Mapped[dt.datetime | None]

    peer: Mapped[Hl7Peer | None] = relationship()


class OutboundStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"  # acknowledged with AA or CA
    DEAD = "dead"  # parked after the peer's max attempts, or refused with AR
    DISCARDED = "discarded"  # an operator gave up on it


class Hl7Outbound(Base):
    """One message to send, written in the transaction of the change it reports (the
    outbox). The dispatcher sends a peer's messages of one patient in id order."""

    __tablename__ = "hl7_outbound"
    __table_args__ = (
        UniqueConstraint("peer_id", "control_id"),
        Index("ix_hl7_outbound_due", "status", "next_attempt_at"),
        Index("ix_hl7_outbound_order", "peer_id", "patient_key", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    peer_id: Mapped[int] = mapped_column(ForeignKey("hl7_peer.id"))
    created_at: Mapped[created_at]
    event: Mapped[str] = mapped_column(String(20))  # A28, O21, O11, ACK, ...
    message_type: Mapped[str] = mapped_column(String(20))  # ADT^A28^ADT_A05
    control_id: Mapped[str] = mapped_column(String(40))
    # Order key: one patient's messages go out in id order; other patients overtake.
    patient_key: Mapped[str] = mapped_column(String(60))
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patient.id"), index=True)
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[OutboundStatus] = mapped_column(
        str_enum(OutboundStatus, "hl7_outbound_status"), default=OutboundStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime | None]
    # A dispatcher owns the row until then; a crashed dispatcher's claim simply runs out.
    claimed_until: Mapped[dt.datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(80))
    last_error: Mapped[str | None] = mapped_column(Text)
    ack_code: Mapped[str | None] = mapped_column(String(2))
    ack: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[dt.datetime | None]
    acked_at: Mapped[dt.datetime | None]
    ack_latency_ms: Mapped[int | None]
    # An application ACK we owe for an inbound enhanced-mode message.
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("hl7_inbound.id"))

    peer: Mapped[Hl7Peer] = relationship()
