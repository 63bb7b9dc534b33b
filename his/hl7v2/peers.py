"""The peers we exchange HL7 v2 with: adding, changing, listing and disabling them.

One service for the ``his hl7 peer`` commands and the admin page, so both refuse the same
mistakes with the same words: an unknown event class or version, a port out of range, an
unknown facility, a name or a sender identity (MSH-3 + MSH-4) already taken.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from his.errors import Conflict, NotFound, ValidationFailed
from his.hl7v2.codec import SUPPORTED_VERSIONS
from his.models import AuditAction, Facility, Role
from his.models.hl7 import BatchAck, Hl7Peer, PeerMode
from his.services import audit
from his.services.access import Principal

EVENT_CLASSES = ("ADT", "OML", "RDE")
IDENTIFIER_KINDS = ("cccd", "bhyt", "mrn", "cmnd", "passport")
_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,20}$")
_HOST = re.compile(r"^[A-Za-z0-9.:_\[\]-]{1,255}$")
NAME_MAX = 60


@dataclass
class PeerInput:
    """What an operator gives; ``None`` means "not given" (keep the current value)."""

    name: str | None = None
    facility_code: str | None = None
    host: str | None = None
    port: int | None = None
    events: str | Iterable[str] | None = None
    version: str | None = None
    sending_application: str | None = None
    sending_facility: str | None = None
    mode: str | None = None
    batch_ack: str | None = None
    identifier_map: str | dict[str, str] | None = None
    max_attempts: int | None = None


class _Errors:
    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def add(self, key: str, message: Any) -> None:
        self.errors.setdefault(key, []).append(str(message))

    def raise_if_any(self) -> None:
        if self.errors:
            raise ValidationFailed(
                str(_l("The HL7 peer settings are not valid.")), errors=self.errors
            )


def parse_events(value: str | Iterable[str] | None, errors: _Errors) -> str:
    if value is None:
        return ""
    items = value.split(",") if isinstance(value, str) else list(value)
    classes: list[str] = []
    for item in items:
        name = item.strip().upper()
        if not name:
            continue
        if name not in EVENT_CLASSES:
            errors.add(
                "events",
                _l(
                    "Unknown event class “%(name)s”: use %(known)s.",
                    name=item.strip(),
                    known=", ".join(EVENT_CLASSES),
                ),
            )
        elif name not in classes:
            classes.append(name)
    return ",".join(classes)


def parse_identifier_map(value: str | dict[str, str] | None, errors: _Errors) -> dict | None:
    """``"NNVNM=cccd,HC=bhyt"`` → ``{"NNVNM": "cccd", "HC": "bhyt"}``."""
    if value is None or value == "":
        return None
    pairs = value.items() if isinstance(value, dict) else []
    if isinstance(value, str):
        parsed = []
        for part in value.split(","):
            if not part.strip():
                continue
            code, sep, kind = part.partition("=")
            if not sep:
                errors.add(
                    "identifier_map",
                    _l("“%(part)s” is not CODE=kind (e.g. NNVNM=cccd).", part=part.strip()),
                )
                continue
            parsed.append((code, kind))
        pairs = parsed
    mapping: dict[str, str] = {}
    for code, kind in pairs:
        code, kind = code.strip(), kind.strip().lower()
        if not _CODE.match(code):
            errors.add(
                "identifier_map", _l("“%(code)s” is not an identifier type code.", code=code)
            )
        elif kind not in IDENTIFIER_KINDS:
            errors.add(
                "identifier_map",
                _l(
                    "Unknown identifier kind “%(kind)s”: use %(known)s.",
                    kind=kind,
                    known=", ".join(IDENTIFIER_KINDS),
                ),
            )
        else:
            mapping[code] = kind
    return mapping or None


def _default_facility(session: Session, principal: Principal) -> Facility | None:
    """Without --facility: the acting administrator's facility, or the deployment's only one
    (a commune station); a province with several must say which."""
    if principal.facility_id is not None:
        return session.get(Facility, principal.facility_id)
    only = session.scalars(select(Facility).limit(2)).all()
    return only[0] if len(only) == 1 else None


def _clean(
    session: Session, data: PeerInput, current: Hl7Peer | None, principal: Principal
) -> dict[str, Any]:
    errors = _Errors()
    values: dict[str, Any] = {}
    if data.name is not None or current is None:
        name = (data.name or "").strip()
        if not name:
            errors.add("name", _l("A peer needs a name."))
        elif len(name) > NAME_MAX:
            errors.add("name", _l("The name is longer than %(max)s characters.", max=NAME_MAX))
        values["name"] = name
    if data.facility_code is not None or current is None:
        code = (data.facility_code or "").strip()
        if code:
            facility = session.scalar(select(Facility).where(Facility.code == code))
        else:
            facility = _default_facility(session, principal) if current is None else None
        if facility is None and code:
            errors.add("facility", _l("No facility has the code “%(code)s”.", code=code))
        elif facility is None:
            errors.add("facility", _l("Name the facility whose records the peer changes."))
        else:
            values["facility_id"] = facility.id
    if data.host is not None:
        host = data.host.strip()
        if host and not _HOST.match(host):
            errors.add("host", _l("“%(host)s” is not a host name or address.", host=host))
        values["host"] = host or None
    if data.port is not None:
        if not 1 <= int(data.port) <= 65535:
            errors.add("port", _l("The port must be between 1 and 65535."))
        values["port"] = int(data.port)
    if data.events is not None:
        values["events"] = parse_events(data.events, errors)
    if data.version is not None or current is None:
        version = (data.version or "2.5.1").strip()
        if version not in SUPPORTED_VERSIONS:
            errors.add(
                "version",
                _l(
                    "HL7 version %(version)s is not supported: use one of %(known)s.",
                    version=version,
                    known=", ".join(SUPPORTED_VERSIONS),
                ),
            )
        values["version"] = version
    for key, enum_cls in (("mode", PeerMode), ("batch_ack", BatchAck)):
        raw = getattr(data, key)
        if raw is None:
            continue
        try:
            values[key] = enum_cls(raw.strip().lower())
        except ValueError:
            errors.add(
                key,
                _l(
                    "“%(value)s” is not one of %(known)s.",
                    value=raw,
                    known=", ".join(m.value for m in enum_cls),
                ),
            )
    if data.identifier_map is not None:
        values["identifier_map"] = parse_identifier_map(data.identifier_map, errors)
    if data.max_attempts is not None:
        if not 1 <= int(data.max_attempts) <= 1000:
            errors.add("max_attempts", _l("The number of tries must be between 1 and 1000."))
        values["max_attempts"] = int(data.max_attempts)
    for key in ("sending_application", "sending_facility"):
        raw = getattr(data, key)
        if raw is not None:
            values[key] = raw.strip()
            if len(values[key]) > 180:
                errors.add(key, _l("At most 180 characters."))
    if current is None and not values.get("sending_application"):
        # The peer's own name is how it most likely fills MSH-3.
        values["sending_application"] = values.get("name", "")

    # Rules across fields, on the values the peer will have.
    host = values.get("host", current.host if current else None)
    port = values.get("port", current.port if current else None)
    events = values.get("events", current.events if current else "")
    if (host is None) != (port is None):
        errors.add("host", _l("Give both a host and a port, or neither (inbound only)."))
    if events and host is None:
        errors.add("events", _l("A peer that receives events needs a host and a port."))
    errors.raise_if_any()
    return values


def _check_unique(session: Session, peer: Hl7Peer) -> None:
    others = select(Hl7Peer).where(Hl7Peer.id != peer.id) if peer.id else select(Hl7Peer)
    if session.scalar(others.where(Hl7Peer.name == peer.name)) is not None:
        raise Conflict(
            str(_l("A peer named “%(name)s” exists already.", name=peer.name)),
            errors={"name": [peer.name]},
        )
    same_sender = others.where(
        Hl7Peer.sending_application == peer.sending_application,
        Hl7Peer.sending_facility == peer.sending_facility,
    )
    if session.scalar(same_sender) is not None:
        raise Conflict(
            str(
                _l(
                    "Another peer already sends as %(app)s / %(facility)s (MSH-3 / MSH-4).",
                    app=peer.sending_application,
                    facility=peer.sending_facility or "—",
                )
            ),
            errors={"sending_application": [peer.sending_application]},
        )


def add_peer(session: Session, principal: Principal, data: PeerInput) -> Hl7Peer:
    principal.require_any(Role.ADMIN)
    values = _clean(session, data, None, principal)
    peer = Hl7Peer(**values)
    _check_unique(session, peer)
    session.add(peer)
    session.flush()
    audit.record(session, principal, AuditAction.CREATE, entity_type="Hl7Peer", entity_id=peer.id)
    return peer


def get_peer(session: Session, name_or_id: str | int) -> Hl7Peer:
    stmt = select(Hl7Peer).options(selectinload(Hl7Peer.facility))
    if isinstance(name_or_id, int):
        peer = session.scalar(stmt.where(Hl7Peer.id == name_or_id))
    else:
        peer = session.scalar(stmt.where(Hl7Peer.name == name_or_id))
    if peer is None:
        raise NotFound(str(_l("No HL7 peer is named “%(name)s”.", name=name_or_id)))
    return peer


def update_peer(
    session: Session, principal: Principal, name_or_id: str | int, data: PeerInput
) -> Hl7Peer:
    principal.require_any(Role.ADMIN)
    peer = get_peer(session, name_or_id)
    values = _clean(session, data, peer, principal)
    for key, value in values.items():
        setattr(peer, key, value)
    _check_unique(session, peer)
    session.flush()
    audit.record(
        session,
        principal,
        AuditAction.UPDATE,
        entity_type="Hl7Peer",
        entity_id=peer.id,
        detail=",".join(sorted(values)),
    )
    return peer


def set_active(
    session: Session, principal: Principal, name_or_id: str | int, active: bool
) -> Hl7Peer:
    """A disabled peer gets no new messages and its queue is not sent; nothing is deleted."""
    principal.require_any(Role.ADMIN)
    peer = get_peer(session, name_or_id)
    peer.active = active
    session.flush()
    audit.record(
        session,
        principal,
        AuditAction.UPDATE,
        entity_type="Hl7Peer",
        entity_id=peer.id,
        detail="enable" if active else "disable",
    )
    return peer


def list_peers(session: Session) -> list[Hl7Peer]:
    return list(
        session.scalars(
            select(Hl7Peer).options(selectinload(Hl7Peer.facility)).order_by(Hl7Peer.name)
        )
    )
