"""Inbound HL7 v2: stored before the ACK, applied through the services, repeats answered
from the store, refusals with the right code and location. Runs on both databases."""

from __future__ import annotations

from functools import partial

import pytest
from sqlalchemy import func, select

from his.db import Database
from his.hl7v2 import inbound, outbox
from his.hl7v2.ack import parse_ack
from his.hl7v2.inbound import Receiver
from his.models import (
    FhirResource,
    Hl7Inbound,
    Hl7Outbound,
    Hl7Peer,
    IdentifierType,
    InboundStatus,
    Patient,
    PatientIdentifier,
    PeerMode,
    ServiceOrder,
    Visit,
    VisitStatus,
)
from his.services import encounters
from his.services.access import Principal
from tests.encounters_data import clinic, examined, today
from tests.factories import RoomFactory
from tests.hl7v2.outbound_data import add_peer

CCCD = "001219012345"  # male, born 2019, Hà Nội
ADDRESS = "Thôn Đông^^^01^^VNM^H"
PHONE = "^PRN^CP^^84^^912345678"


def message(body: str, *, control: str = "MSG1", kind: str = "ADT^A04^ADT_A01") -> bytes:
    """A message from the test LIS (MSH-3/4 = LIS/BV), segments given one per line."""
    msh = (
        f"MSH|^~\\&|LIS|BV|HIS|HIS|20260301083015+0700||{kind}|{control}|P|2.5"
        "|||||VNM|UNICODE UTF-8"
    )
    return "\r".join([msh, *body.strip().splitlines()]).encode() + b"\r"


def a04(room, *, control="MSG1", cccd=CCCD, name="Đỗ^Minh Khôi", pv1_19=""):
    return message(
        f"""EVN|A04|20260302091500+0700
PID|1||LIS-77^^^LISBV^PI~{cccd}^^^BCA^NNVNM||{name}^^^^^L||20190207|M|||{ADDRESS}||{PHONE}
NK1|1|Đỗ^Văn Nam|FTH^Cha||^PRN^CP^^84^^987654321
PV1|1|O|{room.department.code}^{room.code}^^BV||||||||||||||||{pv1_19}""",
        control=control,
    )


def another(room, control: str) -> bytes:
    """A second child, without a CCCD, known to the LIS as LIS-78."""
    return (
        a04(room, control=control, name="Đỗ^Minh Khoa")
        .replace(f"~{CCCD}^^^BCA^NNVNM".encode(), b"")
        .replace(b"LIS-77", b"LIS-78")
        .replace(b"20190207", b"20180101")
    )


@pytest.fixture
def place(db_session, app):
    site = clinic(db_session)
    peer = Hl7Peer(
        name="lis",
        facility_id=site.facility.id,
        sending_application="LIS",
        sending_facility="BV",
        version="2.5.1",
        events="",
        mode=PeerMode.APPLY,
    )
    db_session.add(peer)
    db_session.flush()
    with app.app_context():
        yield site, peer


@pytest.fixture
def receiver(engine, session_factory, make_app):
    from his.config import Settings

    return Receiver(Database(engine, session_factory), Settings.from_env({"HIS_ENV": "test"}))


def stored(db_session, control: str) -> Hl7Inbound:
    db_session.expire_all()
    return db_session.scalar(select(Hl7Inbound).where(Hl7Inbound.control_id == control))


def test_a04_registers_opens_a_visit_and_answers_aa(db_session, place, receiver):
    site, _ = place
    ack = parse_ack(receiver.handle(a04(site.room)))
    assert (ack.code, ack.control_id_acked) == ("AA", "MSG1"), ack.errors
    row = stored(db_session, "MSG1")
    assert row.status is InboundStatus.APPLIED and row.ack.startswith("MSH|^~\\&|HIS|HIS|LIS|BV")
    patient = db_session.get(Patient, row.patient_id)
    assert patient.full_name == "Đỗ Minh Khôi" and patient.identifier(IdentifierType.CCCD) == CCCD
    assert patient.guardian_name == "Đỗ Văn Nam"
    external = [i for i in patient.identifiers if i.type is IdentifierType.EXTERNAL]
    assert [(i.system, i.value) for i in external] == [("lis:LISBV", "LIS-77")]
    visit = db_session.scalar(select(Visit).where(Visit.patient_id == patient.id))
    assert visit.room_id == site.room.id and visit.status is VisitStatus.WAITING


def test_a_repeat_gets_the_first_ack_and_is_not_applied_again(db_session, place, receiver):
    site, _ = place
    first = receiver.handle(a04(site.room))
    again = receiver.handle(a04(site.room))
    assert again == first
    row = stored(db_session, "MSG1")
    assert row.duplicates == 1
    assert db_session.scalar(select(func.count()).select_from(Visit)) == 1
    stamped = a04(site.room).replace(b"20260301083015+0700", b"20260301083999+0700")
    assert receiver.handle(stamped) == first  # a resend stamped anew is still a resend
    other = another(site.room, "MSG1")  # a different message under a used MSH-10
    refused = parse_ack(receiver.handle(other))
    assert (refused.code, refused.errors[0].code, refused.errors[0].location) == (
        "AR",
        205,
        "MSH^1^10",
    )
    kept = db_session.scalars(select(Hl7Inbound).where(Hl7Inbound.raw == other)).all()
    assert [r.status for r in kept] == [InboundStatus.REJECTED]
    assert db_session.scalar(select(func.count()).select_from(Visit)) == 1


def test_an_invalid_cccd_gives_ae_naming_pid_3_and_changes_nothing(db_session, place, receiver):
    site, _ = place
    ack = parse_ack(receiver.handle(a04(site.room, cccd="001019012345")))  # 0 = male 1900s
    assert ack.code == "AE"
    assert ack.errors[0].location.startswith("PID^1^3") and ack.errors[0].code == 102
    assert db_session.scalar(select(func.count()).select_from(Patient)) == 0
    row = stored(db_session, "MSG1")
    assert row.status is InboundStatus.ERROR and row.error_location.startswith("PID^1^3")


def test_unknown_sender_and_billing_messages_are_refused(db_session, place, receiver):
    site, peer = place
    peer.active = False
    db_session.flush()
    ack = parse_ack(receiver.handle(a04(site.room)))
    assert ack.code == "AR" and ack.errors[0].location == "MSH^1^3"
    peer.active = True
    db_session.flush()
    bar = message("EVN|P01\rPID|1||X^^^BV^MR", control="B1", kind="BAR^P01^BAR_P01")
    refused = parse_ack(receiver.handle(bar))
    assert (refused.code, refused.errors[0].code) == ("AR", 200)
    assert stored(db_session, "B1").status is InboundStatus.REJECTED


def test_a_message_that_is_not_utf8_is_refused_not_guessed(db_session, place, receiver):
    site, _ = place
    # "Khôi" as Windows-1258 writes it: ô is the single byte F4, not valid UTF-8.
    raw = a04(site.room).replace("Khôi".encode(), b"Kh\xf4i")
    ack = parse_ack(receiver.handle(raw))
    assert ack.code == "AR" and ack.errors[0].location == "MSH^1^18"
    assert db_session.scalar(select(func.count()).select_from(Patient)) == 0
    assert db_session.scalar(select(Hl7Inbound.raw)) == raw


def test_enhanced_mode_commits_then_applies_and_queues_the_application_ack(
    db_session, place, receiver
):
    site, peer = place
    peer.host, peer.port = "127.0.0.1", 1
    db_session.flush()
    raw = a04(site.room).replace(b"|P|2.5|||||VNM|", b"|P|2.5|||AL|AL|VNM|", 1)
    ack = parse_ack(receiver.handle(raw))
    assert ack.code == "CA"
    assert stored(db_session, "MSG1").status is InboundStatus.RECEIVED
    assert receiver.apply_pending() == 1
    row = stored(db_session, "MSG1")
    assert row.status is InboundStatus.APPLIED
    queued = db_session.scalar(select(Hl7Outbound).where(Hl7Outbound.inbound_id == row.id))
    assert parse_ack(queued.text).code == "AA" and parse_ack(queued.text).control_id_acked == "MSG1"
    # It asks the peer to confirm it (MSH-15 AL) and holds none of the patient's messages.
    assert parse_ack(queued.text).message.accept_ack_type == "AL"
    assert queued.patient_key == f"i{row.id}"


def test_no_application_ack_to_a_peer_without_an_address(db_session, place, receiver):
    site, _ = place
    raw = a04(site.room).replace(b"|P|2.5|||||VNM|", b"|P|2.5|||AL|AL|VNM|", 1)
    assert parse_ack(receiver.handle(raw)).code == "CA"
    receiver.apply_pending()
    row = stored(db_session, "MSG1")
    assert row.status is InboundStatus.APPLIED and row.error  # says why none was sent
    assert db_session.scalar(select(func.count()).select_from(Hl7Outbound)) == 0


def test_names_read_family_middle_given(db_session, place, receiver):
    site, _ = place
    ack = parse_ack(receiver.handle(a04(site.room, name="Trần^Lộc^Minh")))
    assert ack.code == "AA", ack.errors
    patient = db_session.get(Patient, stored(db_session, "MSG1").patient_id)
    assert (patient.full_name, patient.given_name) == ("Trần Minh Lộc", "Lộc")


def test_visit_changes_follow_pv1_19(db_session, place, receiver):
    site, _ = place
    receiver.handle(a04(site.room))
    visit = db_session.scalar(select(Visit))
    other = RoomFactory(department=site.room.department)
    pid = f"PID|1||{CCCD}^^^BCA^NNVNM"

    def adt(trigger: str, control: str, room=site.room) -> str:
        pv1 = f"PV1|1|O|{room.department.code}^{room.code}^^BV||||||||||||||||{visit.visit_code}"
        raw = message(f"EVN|{trigger}\r{pid}\r{pv1}", control=control, kind=f"ADT^{trigger}")
        return parse_ack(receiver.handle(raw)).code

    assert adt("A02", "T1", other) == "AA"
    db_session.expire_all()
    assert db_session.get(Visit, visit.id).room_id == other.id
    assert adt("A03", "T2") == "AA"
    db_session.expire_all()
    assert db_session.get(Visit, visit.id).status is VisitStatus.FINISHED
    assert adt("A13", "T3") == "AA"
    assert adt("A11", "T4") == "AA"
    db_session.expire_all()
    assert db_session.get(Visit, visit.id).status is VisitStatus.CANCELLED
    assert adt("A03", "T5") == "AE"  # a cancelled visit cannot be discharged


def test_a40_merges_through_the_merge_service(db_session, place, receiver):
    site, _ = place
    receiver.handle(a04(site.room))
    assert parse_ack(receiver.handle(another(site.room, "MSG2"))).code == "AA"
    merge = message(
        f"EVN|A40\rPID|1||{CCCD}^^^BCA^NNVNM\rMRG|LIS-78^^^LISBV^PI",
        control="M1",
        kind="ADT^A40^ADT_A39",
    )
    ack = parse_ack(receiver.handle(merge))
    assert ack.code == "AA", ack.errors
    survivor = stored(db_session, "MSG1").patient_id
    merged = db_session.get(Patient, stored(db_session, "MSG2").patient_id)
    assert merged.merged_into_id == survivor
    again = message(
        f"EVN|A40\rPID|1||{CCCD}^^^BCA^NNVNM\rMRG|LIS-99^^^LISBV^PI",
        control="M2",
        kind="ADT^A40^ADT_A39",
    )
    refused = parse_ack(receiver.handle(again))
    assert (refused.code, refused.errors[0].location) == ("AE", "MRG^1^1")
    replay = merge.replace(b"|M1|", b"|M3|")  # the same merge, told again
    assert parse_ack(receiver.handle(replay)).code == "AA"
    # The lab still names the merged record by its own id: that reaches the survivor.
    update = another(site.room, "U1").replace(b"ADT^A04^ADT_A01", b"ADT^A08^ADT_A01")
    update = update.replace(b"912345678", b"912000111")
    ack = parse_ack(receiver.handle(update))
    assert ack.code == "AA", ack.errors
    db_session.expire_all()
    assert stored(db_session, "U1").patient_id == survivor
    assert db_session.get(Patient, survivor).phone == "0912000111"


def test_oru_results_attach_to_the_order_by_placer_number(db_session, place, receiver):
    site, _ = place
    encounter = examined(db_session, site)
    service = next(s for s in site.services.values() if s.kind.value == "lab")
    order = encounters.add_order(
        db_session, Principal.for_user(site.doctor), encounter.id, service.code
    )
    db_session.flush()
    oru = message(
        f"""PID|1||{encounter.patient.mrn}^^^{site.facility.code}^MR
OBR|1|{order.id}^{site.facility.code}|XN77^LIS|58410-2^CBC^LN
OBX|1|NM|6690-2^Bạch cầu (WBC)^LN||12.4|10*9/L^^UCUM|4.0-10.0|H|||F
NTE|1||Đã duyệt
OBX|2|ST|NOTE^Ghi chú^L||Mẫu A\\F\\B||||||F""",
        control="R1",
        kind="ORU^R01^ORU_R01",
    )
    ack = parse_ack(receiver.handle(oru))
    assert ack.code == "AA", ack.errors
    db_session.expire_all()
    results = {r.code: r for r in encounters.current_results(db_session.get(type(order), order.id))}
    assert results["6690-2"].value == "12.4" and results["6690-2"].unit == "10*9/L"
    assert (
        results["6690-2"].reference_range == "4.0-10.0"
        and results["6690-2"].conclusion == "Đã duyệt"
    )
    assert results["NOTE"].value == "Mẫu A|B"
    assert db_session.get(type(order), order.id).filler_number == "XN77"
    unknown = (
        oru.replace(f"OBR|1|{order.id}^".encode(), b"OBR|1|999999^")
        .replace(b"XN77^LIS", b"XN99^LIS")
        .replace(b"|R1|", b"|R2|")
    )
    refused = parse_ack(receiver.handle(unknown))
    assert refused.code == "AE" and refused.errors[0].location == "OBR^1^2"


def test_a_batch_gets_one_ack_per_message(db_session, place, receiver):
    site, _ = place
    one, two = a04(site.room, control="B1"), another(site.room, "B2")
    body = one + two
    raw = b"BHS|^~\\&|LIS|BV|HIS|HIS|20260301||||BATCH7\r" + body + b"BTS|2\r"
    reply = receiver.handle(raw).decode()
    assert reply.startswith("BHS|") and reply.count("MSA|") == 2 and "BTS|2" in reply
    assert "MSA|AA|B1" in reply and "MSA|AA|B2" in reply
    assert stored(db_session, "B2").batch_control_id == "BATCH7"
    wrong = raw.replace(b"BTS|2", b"BTS|5").replace(b"|B1|", b"|B3|").replace(b"|B2|", b"|B4|")
    refused = receiver.handle(wrong).decode()
    assert "MSA|AR" in refused and "BTS|1" in refused
    # A batch answer, addressed to the sender its BHS names, acknowledging that batch.
    assert refused.startswith("BHS|^~\\&|HIS|HIS|LIS|BV|") and "|BATCH7\r" in refused
    assert stored(db_session, "B3") is None


def test_the_origin_peer_gets_no_echo(db_session, place, receiver):
    site, peer = place
    peer.events, peer.host, peer.port = "ADT", "127.0.0.1", 1
    other = add_peer(db_session, site.facility, name="PACS", events="ADT")
    receiver.handle(a04(site.room))
    sent_to = set(db_session.scalars(select(Hl7Outbound.peer_id).distinct()))
    assert sent_to == {other.id}
    assert outbox is not None
    assert db_session.scalar(select(func.count()).select_from(PatientIdentifier)) >= 2


def test_the_bhyt_card_comes_from_in1_and_our_zbh_segment(db_session, place, receiver):
    site, _ = place
    next_year = today().year + 1
    raw = (
        a04(site.room)
        .replace(
            b"\rPV1|1|O|",
            (
                f"\rIN1|1|BHYT||||||||||{today().year}0101|{next_year}1231"
                "|||||||||||||||||||||||GD4797920123456"
                f"\rZBH|1|4|79001|K2|{today().year - 6}0101\rPV1|1|O|"
            ).encode(),
        )
        .replace(b"||||||||||||||||\r", b"|||||||||||||||||BHYT\r")
    )
    ack = parse_ack(receiver.handle(raw))
    assert ack.code == "AA", ack.errors
    patient = db_session.get(Patient, stored(db_session, "MSG1").patient_id)
    card = patient.coverage
    assert (card.card_number, card.registered_facility_code, card.area_code) == (
        "GD4797920123456",
        "79001",
        "K2",
    )
    assert card.valid_to.year == next_year and card.five_year_date.year == today().year - 6
    assert card.check_method == "offline"
    visit = db_session.scalar(select(Visit).where(Visit.patient_id == patient.id))
    assert visit.payment.value == "bhyt"  # PV1-20
    # PID-3 may name the patient by the card; we key cards by the social-insurance number.
    update = message(
        "EVN|A31\rPID|1||GD4797920123456^^^BHXH^HC||Đỗ^Minh Khôi^^^^^L||20190207|M",
        control="U1",
        kind="ADT^A31^ADT_A05",
    )
    assert parse_ack(receiver.handle(update)).code == "AA"
    assert stored(db_session, "U1").patient_id == patient.id


def test_a_result_nobody_ordered_goes_to_the_patients_visit(db_session, place, receiver):
    site, _ = place
    encounter = examined(db_session, site)
    service = next(s for s in site.services.values() if s.kind.value == "lab")
    add_peer(db_session, site.facility, name="LIS2", events="OML")
    visit_code = db_session.get(Visit, encounter.visit_id).visit_code
    oru = message(
        f"""PID|1||{encounter.patient.mrn}^^^{site.facility.code}^MR
PV1|1|O|||||||||||||||||{visit_code}
OBR|1||XN88^LIS|{service.code}^{service.name}^99BYT
OBX|1|NM|2345-7^Glucose^LN||6.1|mmol/L|3.9-6.4|N|||F""",
        control="R9",
        kind="ORU^R01^ORU_R01",
    )
    ack = parse_ack(receiver.handle(oru))
    assert ack.code == "AA", ack.errors
    db_session.expire_all()
    order = db_session.scalar(select(ServiceOrder).where(ServiceOrder.filler_number == "XN88"))
    assert (order.encounter_id, order.ordered_by_id, order.ordered_by_system) == (
        encounter.id,
        None,
        "hl7:lis",
    )
    assert [r.value for r in encounters.current_results(order)] == ["6.1"]
    # A reported order is not passed on to other systems as a new order.
    assert db_session.scalar(select(func.count()).select_from(Hl7Outbound)) == 0
    unknown = oru.replace(service.code.encode() + b"^", b"NOPE^").replace(b"|R9|", b"|R10|")
    unknown = unknown.replace(b"XN88", b"XN89")
    refused = parse_ack(receiver.handle(unknown))
    assert (refused.code, refused.errors[0].location) == ("AE", "OBR^1^4")


def test_an_ae_leaves_no_patient_no_fhir_resource_and_no_outbound_message(
    db_session, place, receiver
):
    site, _ = place
    add_peer(db_session, site.facility, name="PACS", events="ADT")
    resources = db_session.scalar(select(func.count()).select_from(FhirResource))
    bad_room = a04(site.room).replace(f"{site.room.code}^^BV".encode(), b"NOSUCHROOM^^BV")
    assert parse_ack(receiver.handle(bad_room)).code == "AE"
    db_session.expire_all()
    assert db_session.scalar(select(func.count()).select_from(Patient)) == 0
    assert db_session.scalar(select(func.count()).select_from(FhirResource)) == resources
    assert db_session.scalar(select(func.count()).select_from(Hl7Outbound)) == 0
    assert parse_ack(receiver.handle(a04(site.room, control="MSG2"))).code == "AA"
    assert db_session.scalar(select(func.count()).select_from(FhirResource)) > resources


def test_with_the_database_away_the_answer_is_ae_or_ce_never_a_crash(app):
    from his.config import Settings

    away = Receiver(
        Database.from_url("postgresql+psycopg://postgres@127.0.0.1:1/none"),
        Settings.from_env({"HIS_ENV": "test"}),
    )
    raw = message("PID|1||1^^^X^PI||Lê^An||19800101|M", control="Z1")
    enhanced = raw.replace(b"|P|2.5|||||VNM|", b"|P|2.5|||AL|AL|VNM|", 1)
    batch_raw = b"BHS|^~\\&|LIS|BV|HIS|HIS|20260301||||B9\r" + raw + b"BTS|5\r"
    with app.app_context():
        assert parse_ack(away.handle(raw)).code == "AE"
        assert parse_ack(away.handle(enhanced)).code == "CE"
        assert b"MSA|AR" in away.handle(batch_raw) or b"MSA|AE" in away.handle(batch_raw)
    away.database.engine.dispose()


def test_a_message_that_failed_to_apply_is_answered_ae_when_sent_again(
    db_session, place, receiver, monkeypatch
):
    site, _ = place
    raw = a04(site.room)
    # Left stored and unapplied (the listener stopped in between), then failing to apply.
    row = Hl7Inbound(
        peer_id=place[1].id,
        sending_application="LIS",
        sending_facility="BV",
        control_id="MSG1",
        message_type="ADT^A04",
        version="2.5",
        raw=raw,
        status=InboundStatus.RECEIVED,
    )
    db_session.add(row)
    db_session.flush()

    def broken(_row_id):
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(receiver, "_apply_stored", broken)
    receiver.apply_pending()
    assert stored(db_session, "MSG1").status is InboundStatus.ERROR
    assert parse_ack(receiver.handle(raw)).code == "AE"


def test_every_waiting_message_is_applied_before_a_new_one(
    db_session, place, receiver, monkeypatch
):
    """However many stored messages wait (a long stop of the applier), a new message is
    applied after all of them, never before some."""
    site, peer = place
    for n in range(3):
        raw = a04(site.room, control=f"E{n}", cccd=f"00121900{n:04d}", name=f"Lê^{'ABC'[n]}n")
        raw = raw.replace(b"LIS-77", f"LIS-{n}".encode())
        db_session.add(
            Hl7Inbound(
                peer_id=peer.id,
                sending_application="LIS",
                sending_facility="BV",
                control_id=f"E{n}",
                message_type="ADT^A04",
                version="2.5",
                raw=raw,
                enhanced=True,
                status=InboundStatus.RECEIVED,
            )
        )
    db_session.flush()
    monkeypatch.setattr(inbound, "PENDING_ROUND", 2)
    monkeypatch.setattr(receiver, "apply_pending", partial(receiver.apply_pending, limit=2))
    assert parse_ack(receiver.handle(another(site.room, "NEW"))).code == "AA"
    statuses = [stored(db_session, f"E{n}").status for n in range(3)]
    assert statuses == [InboundStatus.APPLIED] * 3
