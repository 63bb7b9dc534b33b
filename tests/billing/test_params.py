"""The dated billing parameters: set from a date by an admin (CLI and REST), the value in
force then ends the day before, and a visit reads the values of its own date."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from click.testing import CliRunner
from sqlalchemy import create_engine

from billing.params import KNOWN, params_on
from his.cli_billing import billing
from his.models import Role
from tests.factories import UserFactory


def _run(*args):
    return CliRunner().invoke(billing, list(args), catch_exceptions=False)


def test_every_parameter_is_seeded_for_every_day_since_2015(db_session):
    for day in (
        dt.date(2015, 1, 1),
        dt.date(2019, 7, 1),
        dt.date(2025, 6, 30),
        dt.date(2026, 7, 1),
    ):
        missing = set(KNOWN) - set(params_on(db_session, day))
        assert not missing, (day, missing)
    assert params_on(db_session, dt.date(2023, 7, 1))["base_salary"] == 1_800_000


def test_the_base_salary_and_the_self_referral_rate_change_on_1_july_2026(db_session):
    june, july = (
        params_on(db_session, dt.date(2026, 6, 30)),
        params_on(db_session, dt.date(2026, 7, 1)),
    )
    assert (june["base_salary"], july["base_salary"]) == (Decimal(2_340_000), Decimal(2_530_000))
    assert (june["self_referral_outpatient_rate"], july["self_referral_outpatient_rate"]) == (0, 50)


def test_the_cli_sets_a_value_from_a_date_and_keeps_the_history(cli_db):
    done = _run(
        "param", "set", "base_salary", "2600000", "--from", "2027-01-01", "--source", "NĐ X"
    )
    assert done.exit_code == 0, done.output
    assert "base_salary = 2600000 from 2027-01-01" in done.output
    listed = _run("param", "list").output
    assert "base_salary = 2530000  2026-07-01 – 2026-12-31" in listed
    assert "base_salary = 2600000  2027-01-01 – …  (NĐ X)" in listed
    assert "base_salary = 2530000" in _run("param", "list", "--on", "2026-12-31").output
    assert "base_salary = 2600000" in _run("param", "list", "--on", "2027-01-01").output

    earlier = _run("param", "set", "base_salary", "1", "--from", "2026-12-01")
    assert earlier.exit_code == 1 and "2027-01-01" in earlier.output
    unknown = _run("param", "set", "basesalary", "1", "--from", "2028-01-01")
    assert unknown.exit_code == 1 and "Unknown parameter" in unknown.output
    negative = _run("param", "set", "base_salary", "--from", "2028-01-01", "--", "-5")
    assert negative.exit_code == 1 and "value" in negative.output
    not_a_number = _run("param", "set", "base_salary", "2,6tr", "--from", "2028-01-01")
    assert not_a_number.exit_code == 1 and "value" in not_a_number.output
    engine = create_engine(cli_db)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT value FROM billing_param WHERE name = 'base_salary' ORDER BY valid_from"
        ).all()
    engine.dispose()
    assert [int(r[0]) for r in rows][-3:] == [2_340_000, 2_530_000, 2_600_000]


def test_only_an_admin_changes_parameters_through_rest(client, db_session, login_token):
    admin = UserFactory(roles=(Role.ADMIN,))
    cashier = UserFactory(roles=(Role.CASHIER,), facility=admin.facility)
    body = {
        "name": "small_bill_share_percent",
        "value": "16",
        "valid_from": "2027-01-01",
        "source": "Draft decree",
    }
    denied = client.post("/api/v1/billing/params", json=body, headers=login_token(cashier.username))
    assert denied.status_code == 403
    made = client.post("/api/v1/billing/params", json=body, headers=login_token(admin.username))
    assert made.status_code == 201, made.get_json()
    assert made.get_json()["value"] == "16" and made.get_json()["valid_to"] is None
    again = client.post("/api/v1/billing/params", json=body, headers=login_token(admin.username))
    assert again.status_code == 409
    no_source = client.post(
        "/api/v1/billing/params",
        json={**body, "valid_from": "2028-01-01", "source": " "},
        headers=login_token(admin.username),
    )
    assert no_source.status_code == 422 and "source" in no_source.get_json()["errors"]
    listed = client.get("/api/v1/billing/params", headers=login_token(cashier.username)).get_json()
    periods = [(p["valid_from"], p["valid_to"]) for p in listed if p["name"] == body["name"]]
    assert periods == [("2015-01-01", "2026-12-31"), ("2027-01-01", None)]
    assert params_on(db_session, dt.date(2027, 1, 1))["small_bill_share_percent"] == 16
