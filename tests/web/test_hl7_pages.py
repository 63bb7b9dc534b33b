"""The admin's HL7 v2 pages, through the Flask test client: message lists and filters, one
message with its raw text and parsed view, resend and discard, peers with their counters."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from sqlalchemy import select

from his.hl7v2 import monitor
from his.models import AuditEvent, Role
from his.models.hl7 import (
    Hl7Inbound,
    Hl7Outbound,
    Hl7Peer,
    InboundStatus,
    OutboundStatus,
)
from his.services.access import Principal
from tests.factories import FacilityFactory, PatientFactory, UserFactory
from tests.web.test_login_page import csrf_token, log_in

PAGE = "/admin/hl7/"
PEERS = "/admin/hl7/peers"
SAMPLES = Path(__file__).resolve().parents[1] / "data" / "hl7" / "synthetic-vn"
ADT_A01 = (SAMPLES / "vn_adt_a01_utf8_cr.hl7").read_bytes()
CP1258 = (SAMPLES / "edge_cp1258_no_msh18.hl7").read_bytes()
ACK_AE = (SAMPLES / "ack_ae_err_v25.hl7").read_text(encoding="utf-8")

# What an outbound message looks like: Vietnamese in PID-5, CR between segments.
OUT_TEXT = (
    "MSH|^~\\&|HIS|79001|LIS|LAB|20250301083015+0700||ADT^A28^ADT_A05|OUT-1|P|2.5.1"
    "|||AL|NE|VNM|UNICODE UTF-8\r"
    "EVN|A28|20250301083015+0700\r"
    "PID|1||BN00000001^^^79001^MR||Đặng^Thị Ngọc Ánh||19900101|F\r"
    "PV1|1|N\r"
)


# --- helpers -------------------------------------------------------------------------------------


def _admin(client):
    admin = UserFactory(roles=(Role.ADMIN,))
    log_in(client, admin.username)
    return admin


def _peer(name: str, **fields) -> Hl7Peer:
    from tests.factories import _current_session

    session = _current_session()
    peer = Hl7Peer(
        name=name,
        facility_id=fields.pop("facility_id", None) or FacilityFactory().id,
        sending_application=fields.pop("sending_application", name.upper()),
        sending_facility=fields.pop("sending_facility", "79001"),
        **fields,
    )
    session.add(peer)
    session.flush()
    return peer


_control = iter(range(1, 10**9))


def _inbound(peer: Hl7Peer | None, **fields) -> Hl7Inbound:
    from tests.factories import _current_session

    row = Hl7Inbound(
        peer_id=peer.id if peer else None,
        sending_application=peer.sending_application if peer else "STRANGER",
        sending_facility=peer.sending_facility if peer else "X",
        control_id=fields.pop("control_id", f"IN-{next(_control)}"),
        message_type=fields.pop("message_type", "ADT^A01"),
        version="2.5",
        raw=fields.pop("raw", ADT_A01),
        **fields,
    )
    _current_session().add(row)
    _current_session().flush()
    return row


def _outbound(peer: Hl7Peer, **fields) -> Hl7Outbound:
    from tests.factories import _current_session

    row = Hl7Outbound(
        peer_id=peer.id,
        event=fields.pop("event", "A28"),
        message_type=fields.pop("message_type", "ADT^A28^ADT_A05"),
        control_id=fields.pop("control_id", f"OUT-{next(_control)}"),
        patient_key=fields.pop("patient_key", "p1"),
        text=fields.pop("text", OUT_TEXT),
        **fields,
    )
    _current_session().add(row)
    _current_session().flush()
    return row


def _ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'data-testid="message" data-id="(\d+)"', html)]


def _get(client, url: str) -> str:
    response = client.get(url + ("&" if "?" in url else "?") + "lang=en")
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response.get_data(as_text=True)


def _token(client, url: str = PAGE) -> str:
    return csrf_token(client.get(url).get_data(as_text=True))


def _filter(client, **fields) -> str:
    """The list filtered through the form's POST body, as the page's filter form sends it."""
    token = csrf_token(client.get(PAGE).get_data(as_text=True))
    response = client.post(PAGE + "?lang=en", data={**fields, "csrf_token": token})
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response.get_data(as_text=True)


def _post(client, url: str, data: dict | None = None):
    token = csrf_token(client.get(PEERS).get_data(as_text=True))
    return client.post(url, data={**(data or {}), "csrf_token": token})


# --- message lists -------------------------------------------------------------------------------


def test_inbound_list_newest_first_with_filters(client, db_session):
    _admin(client)
    home = _get(client, "/")
    assert 'data-testid="hl7-link"' in home and PAGE in home
    lab, pacs = _peer("lab"), _peer("pacs")
    # Arrived first (ids grow with arrival).
    old = _inbound(
        pacs,
        status=InboundStatus.APPLIED,
        received_at=dt.datetime(2024, 12, 31, 17, 30, tzinfo=dt.UTC),  # 1 Jan 2025 in Vietnam
    )
    patient = PatientFactory()
    applied = _inbound(lab, status=InboundStatus.APPLIED, patient_id=patient.id, ack_code="AA")
    error = _inbound(
        lab,
        status=InboundStatus.ERROR,
        message_type="ORU^R01",
        ack_code="AE",
        error_code=102,
        error="Sai định dạng ngày",
    )
    rejected = _inbound(None, status=InboundStatus.REJECTED, message_type="BAR^P01")
    db_session.commit()

    html = _get(client, PAGE)
    assert _ids(html) == [rejected.id, error.id, applied.id, old.id]
    assert "Sai định dạng ngày" in html and patient.mrn in html
    assert _ids(_get(client, PAGE + "?status=error")) == [error.id]
    assert _ids(_get(client, PAGE + f"?peer={lab.id}")) == [error.id, applied.id]
    assert _ids(_get(client, PAGE + "?type=ORU")) == [error.id]
    assert _ids(_get(client, PAGE + "?type=adt^a01")) == [applied.id, old.id]
    assert _ids(_get(client, PAGE + "?type=AD")) == []  # a prefix on the ^ boundary only
    assert _ids(_filter(client, patient=patient.mrn)) == [applied.id]
    assert _ids(_filter(client, patient=str(patient.id))) == [applied.id]
    nobody = _filter(client, patient="BN99999999")
    assert _ids(nobody) == [] and 'data-testid="no-patient"' in nobody
    # A message never applied names its patient only in PID-3: found by that identifier.
    unapplied = _inbound(
        lab, status=InboundStatus.ERROR, patient_key="NNVNM:001219012345", error_code=102
    )
    assert _ids(_filter(client, patient="001219012345")) == [unapplied.id]
    # An applied message of another patient whose sender numbers them like our patient's
    # id is not theirs: only unapplied messages are found by PID-3.
    stranger = _inbound(
        lab,
        status=InboundStatus.APPLIED,
        patient_id=PatientFactory().id,
        patient_key=f"PI:{patient.id}",
    )
    assert _ids(_filter(client, patient=str(patient.id))) == [applied.id]
    assert _ids(_filter(client, patient="²")) == []  # a digit to Python, not to int()
    for row in (unapplied, stranger):
        db_session.delete(row)
    db_session.flush()
    assert _ids(_get(client, PAGE + "?from=2025-01-01&to=2025-01-01")) == [old.id]
    assert old.id not in _ids(_get(client, PAGE + "?from=2025-01-02"))
    # A status of the other direction is not an error, just no filter.
    assert len(_ids(_get(client, PAGE + "?status=dead"))) == 4
    # Filtering by patient is a search of that patient's records: audited.
    search = db_session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "search", AuditEvent.entity_type == "Hl7Inbound"
        )
    ).all()
    assert [a.patient_id for a in search] == [patient.id, patient.id, None, None, patient.id, None]


def test_outbound_list_and_status_filter(client, db_session):
    _admin(client)
    lis = _peer("lis", host="127.0.0.1", port=2576, events="ADT")
    sent = _outbound(lis, status=OutboundStatus.SENT, ack_code="AA")
    dead = _outbound(lis, status=OutboundStatus.DEAD, attempts=10, last_error="Kết nối bị từ chối")
    db_session.commit()
    html = _get(client, PAGE + "?dir=out")
    assert _ids(html) == [dead.id, sent.id]
    assert "Kết nối bị từ chối" in html and "Dead letter" in html
    assert _ids(_get(client, PAGE + "?dir=out&status=dead")) == [dead.id]
    assert f"/admin/hl7/out/{dead.id}" in html


def test_pages_follow_the_key_both_ways(client, db_session):
    _admin(client)
    peer = _peer("bulk")
    rows = [_inbound(peer, status=InboundStatus.APPLIED) for _ in range(monitor.PAGE_SIZE + 5)]
    db_session.commit()
    newest_first = [r.id for r in reversed(rows)]

    first = _get(client, PAGE)
    assert _ids(first) == newest_first[: monitor.PAGE_SIZE]
    assert 'data-testid="newer"' not in first
    older = re.search(r'href="([^"]+)" data-testid="older"', first).group(1).replace("&amp;", "&")
    second = _get(client, older)
    assert _ids(second) == newest_first[monitor.PAGE_SIZE :]
    assert 'data-testid="older"' not in second
    newer = re.search(r'href="([^"]+)" data-testid="newer"', second).group(1).replace("&amp;", "&")
    assert "dir=in" in newer
    assert _ids(_get(client, newer)) == newest_first[: monitor.PAGE_SIZE]


def test_patient_term_travels_only_in_a_post_body(client, db_session):
    """Issue 9: a CCCD, BHYT number or MRN is never in a GET URL (outside FHIR search)."""
    admin = _admin(client)
    peer = _peer("lab")
    cccd = "001219012345"
    # One page and a bit of unapplied messages naming the patient by CCCD in PID-3, and one
    # of someone else.
    rows = [
        _inbound(peer, status=InboundStatus.ERROR, patient_key=f"NNVNM:{cccd}")
        for _ in range(monitor.PAGE_SIZE + 2)
    ]
    other = _inbound(peer, status=InboundStatus.ERROR, patient_key="NNVNM:079090000001")
    db_session.commit()
    newest_first = [r.id for r in reversed(rows)]

    first = client.post(PAGE, data={"patient": cccd, "csrf_token": _token(client)})
    html = first.get_data(as_text=True)
    assert first.status_code == 200 and "Location" not in first.headers
    assert _ids(html) == newest_first[: monitor.PAGE_SIZE] and other.id not in _ids(html)
    hrefs = re.findall(r'(?:href|action)="([^"]*)"', html)
    assert hrefs and not [h for h in hrefs if cccd in h]
    # The pager is a POST form carrying the term (and the CSRF token) in hidden fields.
    older = re.search(r'<form class="hl7-page"(.*?)</form>', html, re.S).group(1)
    assert 'data-testid="older"' in older
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', older))
    assert fields["patient"] == cccd and fields["before"] and fields["csrf_token"]
    second = client.post(PAGE, data=fields)
    assert second.status_code == 200
    assert _ids(second.get_data(as_text=True)) == newest_first[monitor.PAGE_SIZE :]
    # No re-authentication asked (it reads), but the search is audited like any other.
    assert db_session.scalars(
        select(AuditEvent.user_id).where(
            AuditEvent.action == "search", AuditEvent.entity_type == "Hl7Inbound"
        )
    ).all() == [admin.id, admin.id]

    # ?patient= in a URL is ignored: the whole list, no search audited.
    ignored = _get(client, PAGE + f"?patient={cccd}")
    assert other.id in _ids(ignored) and cccd not in ignored.split('id="patient"')[1][:80]
    # Without the CSRF token the filter is refused like any form.
    refused = client.post(PAGE, data={"patient": cccd}, headers={"Accept": "application/json"})
    assert refused.status_code == 400
    # Other roles may not read it by POST either.
    client.post("/logout", data={"csrf_token": _token(client)})
    log_in(client, UserFactory(roles=(Role.DOCTOR,)).username)
    denied = client.post(PAGE, data={"patient": cccd, "csrf_token": _token(client, "/")})
    assert denied.status_code == 403


# --- one message ---------------------------------------------------------------------------------


def test_inbound_message_shows_vietnamese_text_parsed_view_and_ack(client, db_session):
    admin = _admin(client)
    patient = PatientFactory()
    ack = (
        "MSH|^~\\&|HIS|79001|HIS_BVQ1|HIS_BVQ1^79001^L|20250301083016+0700||ACK^A01^ACK|A1|P|2.5"
        "|||||VNM|UNICODE UTF-8\rMSA|AA|BVQ1-20250301-0001\r"
    )
    row = _inbound(
        _peer("bvq1"),
        raw=ADT_A01,
        status=InboundStatus.APPLIED,
        patient_id=patient.id,
        ack_code="AA",
        ack=ack,
        ack_latency_ms=12,
        duplicates=2,
    )
    db_session.commit()
    html = _get(client, f"/admin/hl7/in/{row.id}")
    raw = re.search(r'<pre class="hl7-raw" data-testid="raw" lang="vi">(.*?)</pre>', html, re.S)
    text = raw.group(1)
    # One segment per line, Vietnamese intact (the stored bytes use CR between segments).
    lines = text.split("\n")
    assert [line[:3] for line in lines] == [
        "MSH",
        "EVN",
        "PID",
        "NK1",
        "PV1",
        "PV2",
        "DG1",
        "IN1",
        "ZBH",
    ]
    assert "Nguyễn^Thị Thu Hương" in lines[2] and "\r" not in text
    assert 'data-testid="not-utf8"' not in html
    # The parsed view: fields by number, components unescaped.
    pid5 = re.search(r'<tr data-field="PID-5">(.*?)</tr>', html, re.S).group(1)
    assert "<li>Nguyễn</li><li>Thị Thu Hương</li>" in pid5
    assert 'data-field="MSH-10"' in html and "BVQ1-20250301-0001" in html
    assert 'data-segment="ZBH"' in html  # Z-segments kept
    assert 'data-testid="ack-code">AA<' in html and "MSA|AA|BVQ1-20250301-0001" in html
    assert 'data-testid="duplicates">2' in html and patient.mrn in html
    assert 'data-testid="resend"' not in html  # only outbound dead letters are resent
    read = db_session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "read", AuditEvent.entity_type == "Hl7Inbound"
        )
    ).one()
    assert (read.entity_id, read.patient_id, read.user_id) == (str(row.id), patient.id, admin.id)


def test_refused_bytes_are_marked_and_dumped_with_the_codec_error(client, db_session):
    _admin(client)
    row = _inbound(
        None,
        raw=CP1258,
        status=InboundStatus.REJECTED,
        ack_code="AR",
        error_code=102,
        error_location="MSH^1^18",
        error="Không phải UTF-8",
    )
    db_session.commit()
    html = _get(client, f"/admin/hl7/in/{row.id}")
    assert 'data-testid="not-utf8"' in html
    assert "\ufffd" in html  # each undecodable byte shown as a replacement character
    assert 'data-testid="hex"' in html and "4d 53 48 7c" in html  # "MSH|"
    error = re.search(r'data-testid="parse-error">(.*?)</p>', html, re.S).group(1)
    assert "<code>102</code>" in error and "<code>MSH^1^18</code>" in error
    assert 'data-testid="parsed"' not in html
    assert "Không phải UTF-8" in html and "Unknown sender" in html


def test_outbound_dead_letter_is_resent_then_discarded(client, db_session):
    _admin(client)
    lis = _peer("lis", host="127.0.0.1", port=2576, events="ADT")
    row = _outbound(
        lis,
        status=OutboundStatus.DEAD,
        attempts=10,
        last_error="AE từ máy xét nghiệm",
        ack_code="AE",
        ack=ACK_AE,
    )
    db_session.commit()
    url = f"/admin/hl7/out/{row.id}"
    html = _get(client, url)
    assert "Đặng^Thị Ngọc Ánh" in html and "<li>Thị Ngọc Ánh</li>" in html
    assert "AE từ máy xét nghiệm" in html and "error code 101" in html
    assert "Thiếu PID-3 loại HC" in html  # the peer's ACK, Vietnamese intact
    assert 'data-testid="resend"' in html and 'data-testid="discard"' in html

    done = _post(client, url + "/resend")
    assert done.status_code == 303 and done.headers["Location"].endswith("done=resent")
    db_session.expire_all()
    assert db_session.get(Hl7Outbound, row.id).status == OutboundStatus.PENDING
    html = _get(client, done.headers["Location"])
    assert 'data-testid="done"' in html and 'data-testid="resend"' not in html
    assert 'data-testid="status">Pending<' in html
    again = _post(client, url + "/resend?lang=en")  # no longer a dead letter: refused, said why
    assert again.status_code == 409
    assert 'data-testid="problem">Only a dead-letter message' in again.get_data(as_text=True)

    assert _post(client, url + "/discard").status_code == 303
    db_session.expire_all()
    assert db_session.get(Hl7Outbound, row.id).status == OutboundStatus.DISCARDED
    html = _get(client, url)
    assert 'data-testid="resend"' not in html and 'data-testid="discard"' not in html


def test_unknown_message_is_not_found(client, db_session):
    _admin(client)
    assert client.get("/admin/hl7/in/999999", headers={"Accept": "text/html"}).status_code == 404
    assert client.get("/admin/hl7/sideways/1").status_code == 404


# --- peers and counters --------------------------------------------------------------------------


def test_counters_per_peer(db_session):
    lab = _peer("lab", host="10.0.0.5", port=2575, events="ADT,OML")
    quiet = _peer("quiet")
    for latency, dup in ((10, 0), (20, 1), (30, 0), (40, 2)):
        _inbound(
            lab, status=InboundStatus.APPLIED, ack_code="AA", ack_latency_ms=latency, duplicates=dup
        )
    _inbound(lab, status=InboundStatus.ERROR, ack_code="AE", error_code=102)
    _inbound(lab, status=InboundStatus.ERROR, ack_code="AE", error_code=102)
    _inbound(lab, status=InboundStatus.REJECTED, ack_code="AR", error_code=200)
    _inbound(None, status=InboundStatus.REJECTED, ack_code="AR", error_code=204)
    _outbound(lab, status=OutboundStatus.SENT, ack_code="AA", ack_latency_ms=100)
    _outbound(lab, status=OutboundStatus.DEAD, ack_code="AE", ack=ACK_AE, ack_latency_ms=300)
    _outbound(lab, status=OutboundStatus.PENDING)
    _outbound(lab, status=OutboundStatus.PENDING)

    rows = monitor.peer_counters(db_session, Principal.system())
    assert [r.peer.name if r.peer else None for r in rows] == ["lab", "quiet", None]
    c = rows[0]
    assert (c.inbound, c.outbound, c.pending, c.dead, c.duplicates) == (7, 4, 2, 1, 3)
    assert c.naks_in == {("AE", "102"): 2, ("AR", "200"): 1}
    assert c.naks_out == {("AE", "101"): 1}
    assert c.latency_in == monitor.Latency(4, 20, 40, 40)
    assert c.latency_out == monitor.Latency(2, 100, 300, 300)
    assert rows[1].peer.id == quiet.id and rows[1].inbound == 0 and rows[1].latency_in.count == 0
    assert rows[2].naks_in == {("AR", "204"): 1} and rows[2].inbound == 1


def test_percentiles_are_nearest_rank():
    samples = list(range(1, 101))
    assert monitor.latency(samples) == monitor.Latency(100, 50, 95, 100)
    assert monitor.latency([7]) == monitor.Latency(1, 7, 7, 7)
    assert monitor.latency([]) == monitor.Latency()


def test_error_code_of_an_ack_v25_v23_and_custom_delimiters():
    assert monitor.ack_error_code(ACK_AE) == "101"
    v23 = "MSH|^~\\&|A|B|C|D|20250101||ACK|1|P|2.3\rMSA|AE|X\rERR|PID^1^3^102\r"
    assert monitor.ack_error_code(v23) == "102"
    custom = "MSH#$~\\&#A#B#C#D#20250101##ACK#1#P#2.5\nMSA#AR#X\nERR###200$Unsupported\n"
    assert monitor.ack_error_code(custom) == "200"
    assert monitor.ack_error_code("MSH|^~\\&|A\rMSA|AA|X\r") == ""
    assert monitor.ack_error_code("garbage") == ""


def test_peers_page_shows_counters(client, db_session):
    _admin(client)
    lab = _peer("lab", host="10.0.0.5", port=2575, events="ADT,OML", version="2.3")
    _inbound(lab, status=InboundStatus.ERROR, ack_code="AE", error_code=102, ack_latency_ms=9)
    _outbound(lab, status=OutboundStatus.DEAD, ack_code="AE", ack=ACK_AE)
    db_session.commit()
    html = _get(client, PEERS)
    row = re.search(r'<tr data-testid="peer" data-peer="lab">(.*?)</tr>', html, re.S).group(1)
    assert "10.0.0.5:2575" in row and "ADT,OML" in row and "v2.3" in row
    assert re.search(r'data-testid="in"><a [^>]*>1</a>', row)
    assert re.search(r'data-testid="dead"><a [^>]*status=dead[^>]*>1</a>', row)
    assert 'data-code="AE-102"' in row and 'data-code="AE-101"' in row
    assert 'data-testid="latency">9 / 9 / 9<' in row


def test_admin_adds_a_peer_and_sees_mistakes_beside_fields(client, db_session):
    _admin(client)
    FacilityFactory(code="91077", name="Bệnh viện Thử")
    db_session.commit()
    html = _get(client, PEERS)
    assert 'data-testid="no-peers"' in html and 'value="91077"' in html
    bad = _post(client, PEERS + "?lang=en", {"name": "lab", "port": "abc", "events": ["ADT"]})
    assert bad.status_code == 422
    assert 'data-testid="error-port"' in bad.get_data(as_text=True)
    assert 'value="lab"' in bad.get_data(as_text=True)  # what was typed is kept
    # The service's own checks, shown beside their fields the same way.
    refused = _post(
        client,
        PEERS + "?lang=en",
        {"name": "lab", "facility": "91077", "events": ["ADT"], "identifier_map": "HC"},
    )
    html = refused.get_data(as_text=True)
    assert refused.status_code == 422
    assert 'data-testid="error-events"' in html and 'data-testid="error-identifier_map"' in html
    assert 'data-testid="event-ADT" checked' in html
    done = _post(
        client,
        PEERS,
        {
            "name": "lis-91077",
            "facility": "91077",
            "sending_application": "LIS",
            "sending_facility": "91077",
            "host": "10.1.2.3",
            "port": "2575",
            "events": ["ADT", "OML"],
            "version": "2.5.1",
            "mode": "apply",
            "batch_ack": "each",
            "identifier_map": "NNVNM=cccd, HC=bhyt",
        },
    )
    assert done.status_code == 303, done.get_data(as_text=True)
    listed = _get(client, done.headers["Location"])
    assert 'data-testid="added"' in listed and 'data-peer="lis-91077"' in listed
    peer = db_session.scalars(select(Hl7Peer).where(Hl7Peer.name == "lis-91077")).one()
    assert (peer.host, peer.port, peer.event_classes) == ("10.1.2.3", 2575, {"ADT", "OML"})
    assert peer.identifier_map == {"NNVNM": "cccd", "HC": "bhyt"}
    assert peer.facility.code == "91077" and peer.sending_application == "LIS"
    assert _post(client, f"{PEERS}/{peer.id}/disable").status_code == 303
    html = _get(client, PEERS)
    assert 'data-testid="inactive"' in html and 'data-testid="enable"' in html
    db_session.expire_all()
    assert not db_session.get(Hl7Peer, peer.id).active
    assert db_session.scalars(
        select(AuditEvent.action).where(AuditEvent.entity_type == "Hl7Peer")
    ).all() == ["create", "update"]


# --- who may -----------------------------------------------------------------------------------


def test_only_admins_and_only_with_csrf(client, db_session):
    lis = _peer("lis", host="127.0.0.1", port=2576)
    row = _outbound(lis, status=OutboundStatus.DEAD)
    inbound = _inbound(lis)
    db_session.commit()
    doctor = UserFactory(roles=(Role.DOCTOR,))
    log_in(client, doctor.username)
    for url in (PAGE, PAGE + "?dir=out", f"/admin/hl7/in/{inbound.id}", PEERS):
        assert client.get(url, headers={"Accept": "text/html"}).status_code == 403, url
    home = client.get("/").get_data(as_text=True)
    assert 'data-testid="hl7-link"' not in home
    token = csrf_token(home)
    for url in (f"/admin/hl7/out/{row.id}/resend", PEERS):
        assert client.post(url, data={"csrf_token": token, "name": "x"}).status_code == 403
    client.post("/logout", data={"csrf_token": token})

    _admin(client)
    assert client.post(f"/admin/hl7/out/{row.id}/resend").status_code == 400
    assert client.post(PEERS, data={"name": "x"}).status_code == 400
    db_session.expire_all()
    assert db_session.get(Hl7Outbound, row.id).status == OutboundStatus.DEAD
    assert db_session.scalars(select(Hl7Peer.name)).all() == ["lis"]


def test_anonymous_is_sent_to_login(client, db_session):
    for url in (PAGE, PEERS):
        response = client.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_vietnamese_by_default(client, db_session):
    _admin(client)
    html = client.get(PAGE).get_data(as_text=True)
    assert '<html lang="vi">' in html
