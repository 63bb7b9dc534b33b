"""The admin's billing parameters page, through the Flask test client: every period of every
parameter with the value in force today marked, a new value from a date, the service's
refusals beside their fields with nothing changed, who may see it, both languages."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from billing.models import BillingParam
from his.models import AuditEvent, Role
from his.web import billing_admin
from tests.factories import UserFactory
from tests.web.test_login_page import csrf_token, log_in

PAGE = "/admin/billing/params"
TODAY = dt.date(2026, 11, 28)


@pytest.fixture(autouse=True)
def _today(monkeypatch):
    """A fixed 'today' (Vietnam's), so the value in force and "in force" do not depend on the
    day the tests run."""
    monkeypatch.setattr(billing_admin, "local_today", lambda: TODAY)


def _admin(client, **fields):
    admin = UserFactory(roles=(Role.ADMIN,), **fields)
    log_in(client, admin.username)
    return admin


def _get(client, url: str = PAGE) -> str:
    response = client.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data(as_text=True)


def _post(client, data: dict, url: str = PAGE):
    token = csrf_token(client.get(PAGE).get_data(as_text=True))
    return client.post(url, data={"csrf_token": token, **data})


def _periods(html: str, name: str) -> list[dict[str, str]]:
    """One parameter's rows as shown: from, to, the value cell's number, whether marked
    current, and the 'valid to' cell's text."""
    group = re.search(rf'<tbody data-testid="param" data-name="{name}">(.*?)</tbody>', html, re.S)
    assert group, f"{name} is not listed"
    found = []
    for attrs, row in re.findall(r'<tr data-testid="period" ([^>]*)>(.*?)</tr>', group[1], re.S):
        value = re.search(r'data-testid="value">(?:<strong>)?([^<]+?)(?:</strong>)? <', row)
        valid_to = re.search(r'data-testid="valid-to">(.*?)</td>', row, re.S)
        found.append(
            {
                "from": re.search(r'data-from="([^"]*)"', attrs)[1],
                "to": re.search(r'data-to="([^"]*)"', attrs)[1],
                "value": value[1],
                "current": 'data-current="true"' in attrs,
                "valid_to": re.sub(r"<[^>]+>", "", valid_to[1]).strip(),
                "row": row,
            }
        )
    return found


def _typed(html: str, field: str) -> str:
    """The value an input of the form shows."""
    return re.search(rf'<input [^>]*name="{field}"[^>]*value="([^"]*)"', html)[1]


def _base_salaries(session) -> list[tuple[Decimal, dt.date, dt.date | None]]:
    return [
        (r.value, r.valid_from, r.valid_to)
        for r in session.scalars(
            select(BillingParam)
            .where(BillingParam.name == "base_salary")
            .order_by(BillingParam.valid_from)
        )
    ]


def _count(session) -> int:
    return session.scalar(select(func.count()).select_from(BillingParam))


def test_the_page_lists_every_parameter_with_its_periods(client, db_session):
    _admin(client)
    html = _get(client, PAGE + "?lang=en")
    names = re.findall(r'<tbody data-testid="param" data-name="(\w+)">', html)
    assert names[0] == "base_salary" and set(names) == set(billing_admin.service.KNOWN)
    periods = _periods(html, "base_salary")
    assert [p["from"] for p in periods][:3] == ["2026-07-01", "2024-07-01", "2023-07-01"]
    july, before = periods[0], periods[1]
    assert (july["value"], july["to"], july["valid_to"]) == ("2,530,000", "", "in force")
    assert (before["value"], before["to"], before["valid_to"]) == (
        "2,340,000",
        "2026-06-30",
        "30/06/2026",
    )
    assert "Nghị định 73/2024/NĐ-CP (lương cơ sở)" in before["row"]
    assert '<time datetime="2024-07-01">01/07/2024</time>' in before["row"]
    # Today's value is the one marked; seeded rows name no person.
    assert [p["current"] for p in periods] == [True] + [False] * (len(periods) - 1)
    assert 'data-testid="in-force-today"' in july["row"]
    assert "installation or command line" in july["row"]
    # Percentages and small numbers keep their own form.
    level_4 = _periods(html, "benefit_rate_level_4")
    assert level_4[0]["value"] == "80" and "%" in level_4[0]["row"]


def test_the_value_in_force_is_todays(client, db_session, monkeypatch):
    monkeypatch.setattr(billing_admin, "local_today", lambda: dt.date(2026, 6, 30))
    _admin(client)
    periods = _periods(_get(client), "base_salary")
    assert [p["from"] for p in periods if p["current"]] == ["2024-07-01"]


def test_an_admin_sets_a_new_value_from_a_date(client, db_session):
    admin = _admin(client, full_name="Trần Thị Quản Trị")
    done = _post(
        client,
        {
            "name": "base_salary",
            "value": "2600000",
            "valid_from": "2027-01-01",
            "source": "Nghị định 999/2026/NĐ-CP",
        },
        PAGE + "?lang=en",
    )
    assert done.status_code == 303, done.get_data(as_text=True)
    assert done.headers["Location"].endswith(PAGE)
    html = _get(client, done.headers["Location"])
    assert re.search(r'data-testid="done">Base salary is 2,600,000 from 01/01/2027\.</p>', html), (
        html
    )
    periods = _periods(html, "base_salary")
    new, july = periods[0], periods[1]
    assert (new["from"], new["to"], new["value"], new["valid_to"]) == (
        "2027-01-01",
        "",
        "2,600,000",
        "no end date",  # not in force yet
    )
    assert not new["current"] and "Nghị định 999/2026/NĐ-CP" in new["row"]
    assert "Trần Thị Quản Trị" in new["row"]
    assert (july["to"], july["valid_to"], july["current"]) == ("2026-12-31", "31/12/2026", True)
    # The message is shown once.
    assert 'data-testid="done"' not in _get(client)

    assert _base_salaries(db_session)[-2:] == [
        (Decimal(2_530_000), dt.date(2026, 7, 1), dt.date(2026, 12, 31)),
        (Decimal(2_600_000), dt.date(2027, 1, 1), None),
    ]
    row = db_session.scalars(
        select(BillingParam).where(BillingParam.valid_from == dt.date(2027, 1, 1))
    ).one()
    assert row.changed_by_id == admin.id
    audit = db_session.scalars(
        select(AuditEvent).where(AuditEvent.entity_type == "BillingParam")
    ).one()
    assert (audit.user_id, audit.entity_id) == (admin.id, str(row.id))


def test_a_date_before_the_latest_change_is_refused_beside_valid_from(client, db_session):
    _admin(client)
    before = _base_salaries(db_session)
    typed = {
        "name": "base_salary",
        "value": "2450000",
        "valid_from": "2026-05-01",
        "source": "Dự thảo nghị định",
    }
    refused = _post(client, typed, PAGE + "?lang=en")
    html = refused.get_data(as_text=True)
    assert refused.status_code == 409
    error = re.search(r'data-testid="error-valid_from">(.*?)</p>', html)[1]
    assert "already has a value from 2026-07-01" in error
    assert 'data-testid="error-value"' not in html and 'data-testid="form-problem"' in html
    # What was typed is kept.
    assert '<option value="base_salary" selected>' in html
    for field in ("value", "valid_from", "source"):
        assert _typed(html, field) == typed[field], field
    # Nothing changed.
    db_session.expire_all()
    assert _base_salaries(db_session) == before
    assert not db_session.scalars(
        select(AuditEvent).where(AuditEvent.entity_type == "BillingParam")
    ).all()


def test_a_value_that_is_not_a_number_is_refused_beside_value(client, db_session):
    _admin(client)
    count = _count(db_session)
    typed = {
        "name": "small_bill_share_percent",
        "value": "2,6tr",
        "valid_from": "2028-01-01",
        "source": "Nghị định mới",
    }
    refused = _post(client, typed, PAGE + "?lang=en")
    html = refused.get_data(as_text=True)
    assert refused.status_code == 422
    assert 'data-testid="error-value">A number of zero or more' in html
    assert 'data-testid="error-valid_from"' not in html
    assert '<option value="small_bill_share_percent" selected>' in html
    assert _typed(html, "value") == "2,6tr"
    # The other fields are checked the same way, each beside its own.
    no_source = _post(client, {**typed, "value": "16", "source": " "}, PAGE + "?lang=en")
    assert no_source.status_code == 422
    assert 'data-testid="error-source">Name the decision' in no_source.get_data(as_text=True)
    unknown = _post(client, {**typed, "name": "basesalary", "value": "1"}, PAGE + "?lang=en")
    assert unknown.status_code == 422
    assert 'data-testid="error-name">Unknown parameter' in unknown.get_data(as_text=True)
    no_date = _post(client, {**typed, "value": "16", "valid_from": "01/01/2028"})
    assert no_date.status_code == 422
    assert 'data-testid="error-valid_from"' in no_date.get_data(as_text=True)
    assert _typed(no_date.get_data(as_text=True), "valid_from") == "01/01/2028"
    db_session.expire_all()
    assert _count(db_session) == count


def test_only_admins_and_only_with_csrf(client, db_session):
    cashier = UserFactory(roles=(Role.CASHIER,))
    log_in(client, cashier.username)
    assert client.get(PAGE, headers={"Accept": "text/html"}).status_code == 403
    home = client.get("/").get_data(as_text=True)
    assert 'data-testid="nav-billing-params"' not in home
    token = csrf_token(home)
    body = {"name": "base_salary", "value": "1", "valid_from": "2030-01-01", "source": "x"}
    assert client.post(PAGE, data={"csrf_token": token, **body}).status_code == 403
    client.post("/logout", data={"csrf_token": token})

    _admin(client)
    assert 'data-testid="nav-billing-params"' in _get(client, "/")
    assert client.post(PAGE, data=body).status_code == 400  # no CSRF token
    db_session.expire_all()
    assert _base_salaries(db_session)[-1][1] == dt.date(2026, 7, 1)


def test_anonymous_is_sent_to_login(client, db_session):
    response = client.get(PAGE)
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_vietnamese_by_default_and_english_on_request(client, db_session):
    _admin(client)
    vi = _get(client)
    assert '<html lang="vi">' in vi
    for label in ("Tham số viện phí", "Lương cơ sở", "Giá trị mới từ một ngày", "đang áp dụng"):
        assert label in vi, label
    assert '<a href="/admin/billing/params" data-testid="nav-billing-params">Tham số viện phí' in vi
    assert _periods(vi, "base_salary")[1]["value"] == "2.340.000"
    en = _get(client, PAGE + "?lang=en")
    for label in ("Billing parameters", "Base salary", "New value from a date", "in force"):
        assert label in en, label
    assert _periods(en, "base_salary")[1]["value"] == "2,340,000"
