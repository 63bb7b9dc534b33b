"""The claim files page, through the Flask test client: the facility's files with the gateway's
answers, rejected first, the status filter, who may see it, and "Send again"."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import importlib.util
import re

import pytest
from sqlalchemy import select

from billing.models import ClaimFile, ClaimStatus
from his.models import Role
from tests.factories import FacilityFactory, UserFactory, VisitFactory
from tests.web.test_login_page import csrf_token, log_in

PAGE = "/claims/"
ANSWERED = dt.datetime(2026, 11, 27, 1, 30, tzinfo=dt.UTC)  # 08:30 in Vietnam
NO_CLAIM_FILES = importlib.util.find_spec("billing.claim_files") is None
needs_claim_files = pytest.mark.skipif(
    NO_CLAIM_FILES, reason="billing.claim_files (make_claim_file) is not there yet"
)


def make_file(session, facility, status, *, visit=None, version=1, **fields) -> ClaimFile:
    visit = visit or VisitFactory(facility_id=facility.id)
    content = f"<GIAMDINHHS>{visit.visit_code} v{version}</GIAMDINHHS>".encode()
    row = ClaimFile(
        visit_id=visit.id,
        facility_id=facility.id,
        version=version,
        ma_lk=visit.visit_code,
        schema_version="test",
        tables="XML1,XML2,XML3",
        content=content,
        sha256=hashlib.sha256(content).hexdigest(),
        status=status,
        **fields,
    )
    session.add(row)
    session.flush()
    return row


def rejected(session, facility, **fields) -> ClaimFile:
    values = {
        "answer_code": "05",
        "answer_message": "XML1: MA_THE_BHYT không đúng",
        "transaction_id": "GD-REJ-0001",
        "answered_at": ANSWERED,
    }
    return make_file(session, facility, ClaimStatus.REJECTED, **{**values, **fields})


def rows(html: str) -> list[tuple[str, str]]:
    """(id, status) of each listed file, in order."""
    return re.findall(r'data-testid="claim-file" data-id="(\d+)" data-status="(\w+)"', html)


def staff(role=Role.CASHIER, facility=None):
    return UserFactory(roles=(role,), facility=facility or FacilityFactory())


@pytest.fixture
def cashier(client, db_session):
    user = staff()
    log_in(client, user.username)
    client.get(PAGE + "?lang=en")  # English from here on
    return user


def test_the_facility_files_with_the_gateway_answers_rejected_first(client, db_session, cashier):
    here = cashier.facility
    accepted = make_file(
        db_session,
        here,
        ClaimStatus.ACCEPTED,
        answer_code="200",
        answer_message="Tiếp nhận hồ sơ thành công",
        transaction_id="GD-2026-000042",
        answered_at=ANSWERED,
    )
    queued = make_file(
        db_session,
        here,
        ClaimStatus.QUEUED,
        attempts=3,
        last_error="/api/qd130/guiHoSoXmlQD3176: HTTP 503",
        next_attempt_at=ANSWERED,
    )
    refused = rejected(db_session, here, version=2)
    make_file(db_session, FacilityFactory(), ClaimStatus.REJECTED)  # another facility's
    page = client.get(PAGE)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert rows(html) == [
        (str(refused.id), "rejected"),
        (str(queued.id), "queued"),
        (str(accepted.id), "accepted"),
    ]
    for text in (
        "GD-2026-000042",
        "Tiếp nhận hồ sơ thành công",
        "XML1: MA_THE_BHYT không đúng",
        "GD-REJ-0001",
        "Gateway not reached: /api/qd130/guiHoSoXmlQD3176: HTTP 503",
        "27/11/2026 08:30",
        refused.ma_lk,
        accepted.ma_lk,
    ):
        assert text in html
    # Only the rejected file can be sent again.
    assert html.count('data-testid="resend"') == 1
    assert f"/claims/{refused.id}/resend" in html


def test_filter_by_status(client, db_session, cashier):
    here = cashier.facility
    accepted = make_file(db_session, here, ClaimStatus.ACCEPTED, answer_code="200")
    rejected(db_session, here)
    html = client.get(PAGE + "?status=accepted").get_data(as_text=True)
    assert rows(html) == [(str(accepted.id), "accepted")]
    assert "Accepted (1)" in html and "Rejected (1)" in html
    assert len(rows(client.get(PAGE + "?status=nonsense").get_data(as_text=True))) == 2
    empty = client.get(PAGE + "?status=superseded").get_data(as_text=True)
    assert rows(empty) == [] and "No claim file matches." in empty


def test_the_page_speaks_vietnamese_by_default(client, db_session):
    user = staff(Role.ADMIN)
    rejected(db_session, user.facility)
    log_in(client, user.username)
    html = client.get(PAGE).get_data(as_text=True)
    assert "Hồ sơ giám định" in html
    assert "Gửi lại" in html


@pytest.mark.parametrize("role", [Role.CASHIER, Role.ADMIN])
def test_cashiers_and_admins_have_the_link(client, db_session, role):
    log_in(client, staff(role).username)
    home = client.get("/").get_data(as_text=True)
    assert 'data-testid="nav-claims"' in home
    assert client.get(PAGE).status_code == 200


@pytest.mark.parametrize("role", [Role.RECEPTIONIST, Role.DOCTOR, Role.AUDITOR])
def test_other_roles_neither_see_nor_open_it(client, db_session, role):
    user = staff(role)
    file = rejected(db_session, user.facility)
    log_in(client, user.username)
    home = client.get("/")
    assert 'data-testid="nav-claims"' not in home.get_data(as_text=True)
    assert client.get(PAGE).status_code == 403
    token = csrf_token(home.get_data(as_text=True))
    response = client.post(f"/claims/{file.id}/resend", data={"csrf_token": token})
    assert response.status_code == 403
    db_session.expire_all()
    assert db_session.get(ClaimFile, file.id).status is ClaimStatus.REJECTED


def test_anonymous_goes_to_login(client, db_session):
    response = client.get(PAGE)
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_resend_needs_the_csrf_token(client, db_session, cashier):
    file = rejected(db_session, cashier.facility)
    assert client.post(f"/claims/{file.id}/resend").status_code == 400


def test_only_a_rejected_file_can_be_sent_again(client, db_session, cashier):
    file = make_file(db_session, cashier.facility, ClaimStatus.ACCEPTED)
    token = csrf_token(client.get(PAGE).get_data(as_text=True))
    response = client.post(f"/claims/{file.id}/resend", data={"csrf_token": token})
    assert response.status_code == 409
    assert "Only a rejected claim file can be sent again." in response.get_data(as_text=True)


def test_another_facilitys_file_is_not_found(client, db_session, cashier):
    file = rejected(db_session, FacilityFactory())
    token = csrf_token(client.get(PAGE).get_data(as_text=True))
    response = client.post(f"/claims/{file.id}/resend", data={"csrf_token": token})
    assert response.status_code == 404
    db_session.expire_all()
    assert db_session.get(ClaimFile, file.id).status is ClaimStatus.REJECTED


@needs_claim_files
def test_resend_that_cannot_make_a_new_version_says_why_and_changes_nothing(
    client, db_session, cashier
):
    """A fee-paying visit has no claim: make_claim_file refuses, and the page says so."""
    file = rejected(db_session, cashier.facility)
    token = csrf_token(client.get(PAGE).get_data(as_text=True))
    response = client.post(f"/claims/{file.id}/resend", data={"csrf_token": token})
    assert response.status_code == 409
    html = response.get_data(as_text=True)
    assert 'data-testid="problem"' in html and "Only a BHYT visit has a claim." in html
    db_session.expire_all()
    versions = db_session.scalars(select(ClaimFile).where(ClaimFile.visit_id == file.visit_id))
    assert [(f.version, f.status) for f in versions] == [(1, ClaimStatus.REJECTED)]


# --- "Send again" making a real new version ---------------------------------------------------


@pytest.fixture
def keys(tmp_path, app):
    """The facility's signing keys in a folder of this test, named by the app's settings."""
    folder = tmp_path / "claim-keys"
    app.config["HIS_SETTINGS"] = dataclasses.replace(
        app.config["HIS_SETTINGS"], claim_keys_dir=folder
    )
    return folder


@needs_claim_files
def test_send_again_makes_a_new_version_and_queues_it(client, db_session, keys):
    from billing.claim_files import make_claim_file
    from his.services.access import Principal
    from tests.billing_data import claim_hospital, finished_visit

    hospital = claim_hospital(db_session, keys)
    user = staff(facility=hospital.facility)
    visit = finished_visit(db_session, hospital)
    first = make_claim_file(db_session, Principal.for_user(user), visit.id, keys)
    first.status = ClaimStatus.REJECTED
    first.answer_code, first.answer_message = "05", "XML1: sai MA_DKBD"
    db_session.flush()
    log_in(client, user.username)
    page = client.get(PAGE + "?lang=en").get_data(as_text=True)
    response = client.post(f"/claims/{first.id}/resend", data={"csrf_token": csrf_token(page)})
    assert response.status_code == 303
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    assert (
        f"Version 2 of the claim of visit {visit.visit_code} was made and is waiting for the "
        "gateway." in html
    )
    db_session.expire_all()
    files = db_session.scalars(
        select(ClaimFile).where(ClaimFile.visit_id == visit.id).order_by(ClaimFile.version)
    ).all()
    assert [(f.version, f.status) for f in files] == [
        (1, ClaimStatus.SUPERSEDED),
        (2, ClaimStatus.QUEUED),
    ]
    assert files[1].next_attempt_at is not None and files[1].attempts == 0
    # The rejected version keeps what the gateway said about it.
    assert (files[0].answer_code, files[0].answer_message) == ("05", "XML1: sai MA_DKBD")
    assert rows(html)[0] == (str(files[1].id), "queued")
