"""The `his` command, run the way operators run it."""

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, func, select, text

from his.cli import main
from his.models import Facility, User


def _run(*args, input=None):
    result = CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)
    return result


def test_upgrade_demo_and_user_create(cli_db):
    assert _run("db", "upgrade").exit_code == 0
    assert _run("db", "check").output.strip() == "models and migrations agree"

    first = _run("demo", "--if-empty")
    assert first.exit_code == 0
    assert "200 new patients" in first.output
    again = _run("demo", "--if-empty")
    assert "already has data" in again.output
    # Each demo facility signs its claim files with a test certificate of its own.
    certificates = sorted(Path(os.environ["HIS_CLAIM_KEYS_DIR"]).glob("*.cert.pem"))
    assert len(certificates) == 5
    assert {p.name.split(".")[0] for p in certificates} >= {"91001"}

    created = _run(
        "user",
        "create",
        "--username",
        "Lab.Client",
        "--full-name",
        "Máy xét nghiệm",
        "--facility",
        "91001",
        "--role",
        "integration",
        "--password",
        "s3cret-pass-for-the-lab",
    )
    assert created.exit_code == 0, created.output
    engine = create_engine(cli_db)
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Facility)) == 5
        row = conn.execute(
            select(User.username, User.password_hash).where(User.username == "lab.client")
        ).one()
        assert row.password_hash.startswith("$argon2id$")
        roles = conn.scalars(
            text(
                "SELECT role FROM user_role WHERE user_id = "
                "(SELECT id FROM app_user WHERE username='lab.client')"
            )
        ).all()
        assert roles == ["integration"]
    engine.dispose()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--facility", "00000", "--role", "doctor"], "No facility has this code."),
        (["--facility", "91001", "--role", "surgeon"], "roles: Unknown role."),
    ],
)
def test_user_create_reports_what_is_wrong(cli_db, args, message):
    _run("db", "upgrade")
    _run("demo")
    result = _run(
        "user",
        "create",
        "--username",
        "x",
        "--full-name",
        "X",
        "--password",
        "a long enough passphrase",
        *args,
    )
    assert result.exit_code == 1
    assert message in result.output


def test_duplicate_username(cli_db):
    _run("db", "upgrade")
    _run("demo")
    result = _run(
        "user",
        "create",
        "--username",
        "DOCTOR",
        "--full-name",
        "X",
        "--facility",
        "91001",
        "--role",
        "doctor",
        "--password",
        "a long enough passphrase",
    )
    assert result.exit_code == 1
    assert "This username is taken." in result.output


def test_bad_configuration_is_reported(monkeypatch):
    monkeypatch.setenv("HIS_ENV", "production")
    monkeypatch.delenv("HIS_SECRET_KEY", raising=False)
    result = _run("db", "upgrade")
    assert result.exit_code == 1
    assert "HIS_SECRET_KEY: required in production" in result.output


def test_bhyt_recheck_verifies_cards_once_the_gateway_answers(cli_db, monkeypatch):
    """Registered while the gateway was down (unverified); checked again from the CLI."""
    from sqlalchemy.orm import Session

    from his.models import CardStatus, Coverage, Facility, Patient
    from tests.fake_bhyt_gateway import CARD_OK, PASSWORD, USERNAME, FakeBhytGateway

    engine = create_engine(cli_db)
    with Session(engine) as session, session.begin():
        facility = Facility(code="91001", name="BV", care_level="basic", province_code="91")
        session.add(facility)
        session.flush()
        patient = Patient(
            mrn="BN09999999",
            full_name="Nguyễn Văn An",
            search_name="nguyen van an",
            sex="male",
            birth_year=1985,
            birth_month=4,
            birth_day=12,
            registered_facility_id=facility.id,
        )
        session.add(patient)
        session.flush()
        session.add(
            Coverage(
                patient_id=patient.id,
                card_number=CARD_OK,
                insurance_number=CARD_OK[-10:],
                status=CardStatus.UNVERIFIED,
            )
        )
    with FakeBhytGateway() as gateway:
        monkeypatch.setenv("HIS_BHYT_GATEWAY_URL", gateway.url)
        monkeypatch.setenv("HIS_BHYT_GATEWAY_USERNAME", USERNAME)
        monkeypatch.setenv("HIS_BHYT_GATEWAY_PASSWORD", PASSWORD)
        result = _run("bhyt", "recheck")
        assert result.exit_code == 0, result.output
        assert "1 card(s) changed status" in result.output
        assert len(gateway.checks) == 1
    with Session(engine) as session:
        assert session.scalar(select(Coverage.status)) == CardStatus.VERIFIED
    engine.dispose()
