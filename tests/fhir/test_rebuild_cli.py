"""`his fhir rebuild`: projecting a database filled before the FHIR API existed."""

from click.testing import CliRunner
from sqlalchemy import create_engine, delete, func, select
from sqlalchemy.orm import Session

from his.cli import main
from his.models import FhirResource, FhirResourceVersion, FhirSearchValue
from tests import factories


def _run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_rebuild_projects_what_is_missing_and_only_once(cli_db):
    assert _run("db", "upgrade").exit_code == 0
    engine = create_engine(cli_db)
    with Session(engine) as session:
        factories.bind(session)
        try:
            patients = factories.PatientFactory.create_batch(3)
        finally:
            factories.bind(None)
        session.commit()
        ids = sorted(str(p.id) for p in patients)
        # As a database migrated from before the FHIR API would be: data, no projection.
        for model in (FhirSearchValue, FhirResourceVersion, FhirResource):
            session.execute(delete(model))
        session.commit()

    first = _run("fhir", "rebuild", "--if-empty")
    assert first.exit_code == 0, first.output
    with Session(engine) as session:
        projected = session.scalars(
            select(FhirResource.resource_id).where(FhirResource.resource_type == "Patient")
        ).all()
        assert sorted(projected) == ids
        versions = session.scalar(select(func.count()).select_from(FhirResourceVersion))
    assert "already there" in _run("fhir", "rebuild", "--if-empty").output
    again = _run("fhir", "rebuild", "--type", "Patient")
    assert again.output.startswith("0 resource versions written")
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(FhirResourceVersion)) == versions
    refused = CliRunner().invoke(main, ["fhir", "rebuild", "--type", "Spaceship"])
    assert refused.exit_code != 0
    assert "Spaceship" in refused.output
    engine.dispose()
