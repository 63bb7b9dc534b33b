"""The receptionist's screens through the Flask test client (the browser lane drives the
same flows in chromium)."""

import re
import time

import pytest
from sqlalchemy import func, select

from his.models import Patient, Role, Visit
from his.web.reception import SEARCH_PAGE
from tests.factories import FacilityFactory, PatientFactory, RoomFactory, UserFactory
from tests.web.test_login_page import csrf_token, log_in

FORM = {
    "full_name": "NGUYỄN THỊ MAI",
    "sex": "female",
    "birth_date": "12/04/1990",
    "cccd": "089190001234",
    "phone": "0912 345 678",
    "nationality": "VN",
    "province_code": "91",
    "commune_code": "30742",
    "address_line": "5 Lê Lợi",
    "card_number": "",
}


@pytest.fixture
def desk(client, db_session):
    facility = FacilityFactory(code="91001", province_code="91")
    room = RoomFactory(department__facility=facility, name="Phòng khám Nội 1")
    user = UserFactory(roles=(Role.RECEPTIONIST,), facility=facility)
    log_in(client, user.username)
    return facility, room


def _post(client, url, data):
    token = csrf_token(client.get(url).get_data(as_text=True))
    return client.post(url, data={**data, "csrf_token": token})


def _search(client, data, *, htmx=True):
    """The search as the page sends it: a POST with the page's CSRF token, from htmx
    (the fragment) or from the form without scripts (the whole page)."""
    token = csrf_token(client.get("/reception/").get_data(as_text=True))
    headers = {"HX-Request": "true"} if htmx else {}
    return client.post("/reception/search", data={**data, "csrf_token": token}, headers=headers)


def test_search_fragment_finds_accented_names(client, desk, db_session):
    PatientFactory(full_name="Đặng Văn Hùng", search_name="dang van hung")
    page = client.get("/reception/")
    assert page.status_code == 200
    assert 'hx-post="/reception/search"' in page.get_data(as_text=True)
    assert 'hx-get="/reception/search"' not in page.get_data(as_text=True)
    found = _search(client, {"q": "dang hung"})
    assert found.status_code == 200
    html = found.get_data(as_text=True)
    assert "Đặng Văn Hùng" in html
    assert 'data-testid="result"' in html
    assert "<form" not in html  # the fragment, not the page
    none = _search(client, {"q": "zzz"}).get_data(as_text=True)
    assert 'data-testid="no-results"' in none
    assert 'data-testid="more-results"' not in html


def test_search_without_scripts_posts_the_form_and_gets_the_page(client, desk, db_session):
    PatientFactory(full_name="Đặng Văn Hùng", search_name="dang van hung", birth_year=1970)
    PatientFactory(full_name="Đặng Văn Hùng", search_name="dang van hung", birth_year=1980)
    form = client.get("/reception/").get_data(as_text=True)
    assert re.search(r'<form[^>]*action="/reception/search" method="post"', form)
    page = _search(client, {"q": "dang hung", "birth_year": "1970"}, htmx=False)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "<form" in html and 'value="dang hung"' in html and 'value="1970"' in html
    assert html.count('data-testid="result"') == 1
    # The search is no longer offered by GET: a name in a URL is what this change removes.
    assert client.get("/reception/search", query_string={"q": "dang"}).status_code == 405
    assert 'data-testid="result"' not in client.get("/reception/?q=dang").get_data(as_text=True)


def test_search_needs_the_csrf_token_and_a_patient_role(client, desk, db_session):
    PatientFactory(full_name="Đặng Văn Hùng", search_name="dang van hung")
    refused = client.post("/reception/search", data={"q": "dang"}, headers={"HX-Request": "1"})
    assert refused.status_code == 400
    assert "Đặng" not in refused.get_data(as_text=True)
    auditor = UserFactory(roles=(Role.AUDITOR,), facility=desk[0])
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/").get_data(as_text=True))})
    log_in(client, auditor.username)
    assert _search(client, {"q": "dang"}).status_code == 403


def test_search_fragment_says_when_more_match_than_it_shows(client, desk, db_session):
    facility = FacilityFactory()
    for _ in range(SEARCH_PAGE + 1):
        PatientFactory(
            full_name="Lê Văn Tám", search_name="le van tam", registered_facility_id=facility.id
        )
    html = _search(client, {"q": "tam le"}).get_data(as_text=True)
    assert html.count('data-testid="result"') == SEARCH_PAGE
    assert 'data-testid="more-results"' in html


def test_register_with_a_wrong_cccd_keeps_what_was_typed(client, desk, db_session):
    wrong = {**FORM, "cccd": "089090001234"}  # digit 4 says male; she is a woman
    response = _post(client, "/reception/patients/new", wrong)
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'data-testid="error-cccd"' in html
    # The cursor goes to the field in error, not back to the top of the form.
    assert re.search(r'<input type="text" id="cccd"[^>]*autofocus', html)
    assert not re.search(r'id="full_name"[^>]*autofocus', html)
    assert "Một số trường không hợp lệ; xem thông báo" in html or "see the messages" in html
    assert 'value="NGUYỄN THỊ MAI"' in html and 'value="0912 345 678"' in html
    assert db_session.scalar(select(func.count()).select_from(Patient)) == 0
    fixed = _post(client, "/reception/patients/new", FORM)
    assert fixed.status_code == 302
    patient = db_session.scalars(select(Patient)).one()
    assert patient.full_name == "Nguyễn Thị Mai"
    assert fixed.headers["Location"] == f"/reception/patients/{patient.id}/visit?registered=1"


def test_possible_duplicate_is_a_warning_that_can_be_confirmed(client, desk, db_session):
    assert _post(client, "/reception/patients/new", {**FORM, "cccd": ""}).status_code == 302
    again = _post(client, "/reception/patients/new", {**FORM, "cccd": "", "phone": ""})
    assert again.status_code == 409
    assert 'data-testid="duplicate-warning"' in again.get_data(as_text=True)
    confirmed = _post(
        client,
        "/reception/patients/new",
        {**FORM, "cccd": "", "phone": "", "confirm_new_person": "1"},
    )
    assert confirmed.status_code == 302
    assert db_session.scalar(select(func.count()).select_from(Patient)) == 2


def test_edit_refuses_a_stale_form(client, desk, db_session):
    _post(client, "/reception/patients/new", FORM)
    patient = db_session.scalars(select(Patient)).one()
    form_page = client.get(f"/reception/patients/{patient.id}/edit").get_data(as_text=True)
    version = re.search(r'name="version" value="(\d+)"', form_page).group(1)
    token = csrf_token(form_page)
    data = {**FORM, "version": version, "csrf_token": token, "phone": "0987 654 321"}
    assert client.post(f"/reception/patients/{patient.id}/edit", data=data).status_code == 302
    stale = client.post(
        f"/reception/patients/{patient.id}/edit", data={**data, "phone": "0911 111 111"}
    )
    assert stale.status_code == 412
    db_session.expire_all()
    assert db_session.get(Patient, patient.id).phone == "0987654321"


def test_open_visit_then_slip_and_board(client, desk, db_session):
    _facility, room = desk
    patient = PatientFactory(full_name="Trần Văn Bình", search_name="tran van binh")
    response = _post(
        client,
        f"/reception/patients/{patient.id}/visit",
        {"room_id": str(room.id), "visit_type": "outpatient", "payment": "fee"},
    )
    assert response.status_code == 302
    visit = db_session.scalars(select(Visit)).one()
    assert response.headers["Location"] == f"/reception/visits/{visit.id}/slip"
    slip = client.get(response.headers["Location"]).get_data(as_text=True)
    assert f'data-testid="slip-queue-number">{visit.queue_number}<' in slip
    assert visit.visit_code in slip
    assert 'src="data:image/png;base64,' in slip
    board = client.get(f"/queues/{room.id}/board").get_data(as_text=True)
    assert "T. Bình" in board and "Trần Văn Bình" not in board
    assert 'hx-trigger="every 5s"' in board
    live = client.get(f"/queues/{room.id}/board/live").get_data(as_text=True)
    assert f">{visit.queue_number} <span>T. Bình</span>" in live


def test_open_visit_errors_stay_on_the_form(client, desk, db_session):
    _facility, room = desk
    patient = PatientFactory()
    response = _post(
        client,
        f"/reception/patients/{patient.id}/visit",
        {"room_id": str(room.id), "visit_type": "outpatient", "payment": "bhyt"},
    )
    assert response.status_code == 422
    assert 'data-testid="error-payment"' in response.get_data(as_text=True)


def test_register_form_lists_the_communes_of_the_province(client, desk, db_session):
    html = client.get("/reception/patients/new").get_data(as_text=True)
    assert "Phường Rạch Giá" in html
    assert "Đặc khu Phú Quốc" in html


def test_saving_an_edit_with_the_same_card_adds_no_card(client, desk, db_session):
    from his.models import Coverage

    _post(
        client,
        "/reception/patients/new",
        {**FORM, "card_number": "DN4910123456789", "card_valid_to": "2026-12-31"},
    )
    patient = db_session.scalars(select(Patient)).one()
    page = client.get(f"/reception/patients/{patient.id}/edit").get_data(as_text=True)
    version = re.search(r'name="version" value="(\d+)"', page).group(1)
    data = {
        **FORM,
        "card_number": "DN4910123456789",
        "card_valid_to": "2026-12-31",
        "version": version,
        "csrf_token": csrf_token(page),
    }
    assert client.post(f"/reception/patients/{patient.id}/edit", data=data).status_code == 302
    assert db_session.scalar(select(func.count()).select_from(Coverage)) == 1


def test_a_referral_without_a_readable_date_is_refused(client, desk, db_session):
    _facility, room = desk
    patient = PatientFactory()
    response = _post(
        client,
        f"/reception/patients/{patient.id}/visit",
        {
            "room_id": str(room.id),
            "visit_type": "outpatient",
            "payment": "fee",
            "referral_from": "91011",
            "referral_letter": "12/GCT",
            "referral_date": "",
        },
    )
    assert response.status_code == 422
    assert db_session.scalar(select(func.count()).select_from(Visit)) == 0


def test_an_unreadable_card_date_is_a_field_error(client, desk, db_session):
    response = _post(
        client,
        "/reception/patients/new",
        {
            **FORM,
            "card_number": "DN4910123456789",
            "card_valid_from": "2026-13-45",
            "card_valid_to": "2026-12-31",
        },
    )
    assert response.status_code == 422
    assert 'data-testid="error-card_valid_from"' in response.get_data(as_text=True)


def test_old_ids_and_a_pre_2025_address_from_the_form(client, desk, db_session):
    from his.models import IdentifierType, PatientIdentifier

    data = {
        **FORM,
        "cccd": "",
        "cmnd": "361234567",
        "passport": "b7654321",
        "commune_code": "",
        "legacy_province_code": "91",
        "legacy_district_code": "899",
        "legacy_commune_code": "30733",  # Phường Vĩnh Thanh, now part of Phường Rạch Giá
    }
    assert _post(client, "/reception/patients/new", data).status_code == 302
    patient = db_session.scalars(select(Patient)).one()
    assert (patient.commune_code, patient.legacy_commune_code) == ("30742", "30733")
    assert patient.identifier(IdentifierType.CMND) == "361234567"
    assert patient.identifier(IdentifierType.PASSPORT) == "B7654321"
    # Another system's id, not shown on the form, survives an edit from the form.
    patient.identifiers.append(
        PatientIdentifier(type=IdentifierType.EXTERNAL, system="https://lis.example", value="L-1")
    )
    db_session.flush()
    page = client.get(f"/reception/patients/{patient.id}/edit").get_data(as_text=True)
    assert 'value="361234567"' in page and 'value="30733"' in page
    version = re.search(r'name="version" value="(\d+)"', page).group(1)
    edited = {**data, "phone": "0911 222 333", "version": version, "csrf_token": csrf_token(page)}
    assert client.post(f"/reception/patients/{patient.id}/edit", data=edited).status_code == 302
    db_session.expire_all()
    kinds = {i.type for i in db_session.get(Patient, patient.id).identifiers}
    assert IdentifierType.EXTERNAL in kinds and IdentifierType.CMND in kinds


def test_a_wrong_cmnd_is_shown_on_its_field(client, desk, db_session):
    response = _post(client, "/reception/patients/new", {**FORM, "cccd": "", "cmnd": "12ab"})
    assert response.status_code == 422
    assert 'data-testid="error-cmnd"' in response.get_data(as_text=True)


def test_an_admin_searches_without_typing_the_password_again(client, desk, db_session):
    """Searching changes nothing: the search POST is not an admin action, so an admin whose
    last password check is older than the re-authentication window still searches (an
    admin write in the same session is sent to /reauth, which shows the window is over)."""
    PatientFactory(full_name="Đặng Văn Hùng", search_name="dang van hung")
    admin = UserFactory(roles=(Role.ADMIN,), facility=desk[0])
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/").get_data(as_text=True))})
    log_in(client, admin.username)
    with client.session_transaction() as session:
        session["reauth_at"] = int(time.time()) - 24 * 3600
    found = _search(client, {"q": "dang hung"})
    assert found.status_code == 200 and 'data-testid="result"' in found.get_data(as_text=True)
    token = csrf_token(client.get("/reception/").get_data(as_text=True))
    peers = client.post("/admin/hl7/peers", data={"csrf_token": token})
    assert peers.status_code == 302 and peers.headers["Location"].startswith("/reauth")
