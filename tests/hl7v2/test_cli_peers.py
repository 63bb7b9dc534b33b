"""`his hl7 peer ...` run the way operators run it."""

from click.testing import CliRunner
from sqlalchemy import create_engine, text

from his.cli_hl7 import hl7


def _run(*args):
    return CliRunner().invoke(hl7, list(args), catch_exceptions=False)


def _facility(url):
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO facility (code, name, care_level, province_code, active, created_at)"
                " VALUES ('91001', 'BV Thử', 'basic', '91', true, CURRENT_TIMESTAMP)"
            )
        )
    engine.dispose()


def test_add_list_disable(cli_db):
    _facility(cli_db)
    added = _run(
        *("peer", "add", "LIS", "--host", "lis.local", "--port", "2575"),
        *("--events", "oml,ADT", "--facility", "91001", "--identifier-map", "NNVNM=cccd"),
    )
    assert added.exit_code == 0, added.output
    assert "LIS  lis.local:2575  events=OML,ADT  v2.5.1  facility=91001" in added.output
    assert "LIS  lis.local:2575" in _run("peer", "list").output
    assert _run("peer", "disable", "LIS").exit_code == 0
    assert "disabled" in _run("peer", "list").output
    again = _run(*("peer", "add", "LIS", "--facility", "91001"))
    assert again.exit_code == 1 and "exists already" in again.output


def test_add_reports_what_is_wrong(cli_db):
    _facility(cli_db)
    result = _run(
        *("peer", "add", "X", "--host", "h", "--port", "70000", "--events", "ADT,BAR"),
        *("--facility", "00000", "--version", "2.9"),
    )
    assert result.exit_code == 1
    for words in ("BAR", "65535", "00000", "2.9"):
        assert words in result.output


def test_the_issues_command_line_works_in_a_one_facility_deployment(cli_db):
    """`his hl7 peer add NAME --host H --port P --events ADT,OML,RDE [--version 2.5.1]`:
    without --facility the only facility is meant; with two, the command asks which."""
    _facility(cli_db)
    added = _run(
        *("peer", "add", "PACS", "--host", "10.0.0.9", "--port", "2576"),
        *("--events", "ADT,OML,RDE", "--version", "2.3"),
    )
    assert added.exit_code == 0, added.output
    assert "facility=91001" in added.output and "v2.3" in added.output
    engine = create_engine(cli_db)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO facility (code, name, care_level, province_code, active, created_at)"
                " VALUES ('91011', 'TYT Thử', 'basic', '91', true, CURRENT_TIMESTAMP)"
            )
        )
    engine.dispose()
    second = _run("peer", "add", "RIS", "--host", "10.0.0.8", "--port", "2577", "--events", "ADT")
    assert second.exit_code == 1 and "facility" in second.output
