"""The sweep that makes the missing check-ins and claim files and queues them, and the
export of a period's files to a folder."""

from __future__ import annotations

from sqlalchemy import select

from billing.claim_export import acting_for, export, prepare_due
from billing.claim_files import make_claim_file
from billing.claim_sender import queue
from billing.claims import read_envelope, verify_envelope
from billing.models import ClaimFile, ClaimStatus
from his.errors import Conflict
from his.localtime import local_today
from his.models import Payment, VisitType
from his.services.access import Principal
from tests.billing_data import claim_hospital, finished_visit


def _files(session, visit):
    return session.scalars(
        select(ClaimFile).where(ClaimFile.visit_id == visit.id).order_by(ClaimFile.version)
    ).all()


def test_the_sweep_makes_and_queues_a_check_in_and_the_claim_once(db_session, tmp_path):
    place = claim_hospital(db_session, tmp_path)
    finished = finished_visit(db_session, place)
    emergency = finished_visit(db_session, place, visit_type=VisitType.EMERGENCY)
    fee = finished_visit(db_session, place)
    fee.payment = Payment.FEE
    db_session.flush()

    made = prepare_due(db_session, local_today(), tmp_path)

    assert made.refused == {}
    check_in, claim = _files(db_session, finished)
    assert (check_in.tables, claim.tables) == ("XML0", "XML1,XML2,XML3,XML4")
    assert {check_in.status, claim.status} == {ClaimStatus.QUEUED}
    # The check-in is signed like the claim, and names the first charge.
    certificate = (tmp_path / "91001.cert.pem").read_bytes()
    assert b"<MA_DICH_VU>02.1896</MA_DICH_VU>" in verify_envelope(check_in.content, certificate)
    # An emergency sends no check-in, only its claim; a fee-paying visit sends nothing.
    assert [f.tables for f in _files(db_session, emergency)] == ["XML1,XML2,XML3,XML4"]
    assert _files(db_session, fee) == []
    # Run again: nothing new.
    assert prepare_due(db_session, local_today(), tmp_path).made == []


def test_no_new_version_while_one_is_on_its_way(db_session, tmp_path):
    place = claim_hospital(db_session, tmp_path)
    visit = finished_visit(db_session, place)
    cashier = Principal.for_user(place.cashier)
    first = make_claim_file(db_session, cashier, visit.id, tmp_path)
    queue(db_session, first)
    try:
        make_claim_file(db_session, cashier, visit.id, tmp_path)
    except Conflict as exc:
        assert "waiting to be sent" in exc.detail
    else:
        raise AssertionError("a second version was made while the first was queued")
    first.status = ClaimStatus.REJECTED
    second = make_claim_file(db_session, cashier, visit.id, tmp_path)
    assert (second.version, first.status) == (2, ClaimStatus.SUPERSEDED)


def test_export_writes_the_latest_file_of_each_visit(db_session, tmp_path):
    place = claim_hospital(db_session, tmp_path / "keys")
    visits = [finished_visit(db_session, place) for _ in range(2)]
    broken = finished_visit(db_session, place)
    broken.patient.address_line = None
    db_session.flush()
    today = local_today()

    written, refused = export(
        db_session, acting_for(place.facility), today, today, tmp_path / "out", tmp_path / "keys"
    )

    assert sorted(p.name for p in written) == sorted(f"{v.visit_code}_v1.xml" for v in visits)
    assert list(refused) == [broken.visit_code]
    assert "DIA_CHI" in refused[broken.visit_code]
    for path in written:
        assert "XML1" in read_envelope(path.read_bytes())


def test_the_export_command_writes_a_folder_per_facility(cli_db, tmp_path):
    from click.testing import CliRunner

    from his.cli import main

    runner = CliRunner()
    assert runner.invoke(main, ["demo"], catch_exceptions=False).exit_code == 0
    day = local_today().isoformat()
    out = tmp_path / "claims"
    result = runner.invoke(
        main,
        ["claims", "export", "--from", day, "--to", day, "--facility", "91001", str(out)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert f"91001: 0 claim file(s) in {out / '91001'}" in result.output
    assert (out / "91001").is_dir()
    backwards = runner.invoke(
        main, ["claims", "export", "--from", day, "--to", "2000-01-01", str(out)]
    )
    assert backwards.exit_code == 2 and "--to is before --from" in backwards.output
