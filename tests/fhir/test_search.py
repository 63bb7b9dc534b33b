"""FHIR search over the projection: parameter types, modifiers, prefixes, chaining,
includes, sorting, paging (also under concurrent writes), result shaping and errors."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from urllib.parse import parse_qsl, urlsplit

import pytest
from sqlalchemy import select

from his import create_app
from his.db import Database
from his.fhirapi import projection, searchparams, systems
from his.fhirapi.projection import Built
from his.fhirapi.resource_types import PROJECTED
from his.models import FhirResource, FhirSearchValue, IdentifierType, PatientIdentifier, Role
from tests.conftest import settings_for
from tests.factories import FacilityFactory, PatientFactory, UserFactory

FHIR_JSON = "application/fhir+json"
CCCD = "https://dvc.gov.vn/cccd"


def ids(bundle):
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


@pytest.fixture
def search(fhir_get):
    def run(query, status=200, **kwargs):
        response = fhir_get(f"/fhir/{query}", **kwargs)
        assert response.status_code == status, response.json
        return response.json

    return run


@pytest.fixture
def people(db_session):
    """Five patients with distinct names, birth dates, sexes and identifiers."""
    from his.models import Sex

    made = {
        "an": PatientFactory(
            family_name="Nguyễn",
            middle_name="Văn",
            given_name="An",
            full_name="Nguyễn Văn An",
            sex=Sex.MALE,
            birth_year=1980,
            birth_month=5,
            birth_day=17,
            phone="0912345678",
        ),
        "binh": PatientFactory(
            family_name="Trần",
            middle_name="Thị",
            given_name="Bình",
            full_name="Trần Thị Bình",
            birth_year=1990,
            birth_month=None,
            birth_day=None,
        ),
        "cuong": PatientFactory(
            family_name="Lê",
            middle_name="Quốc",
            given_name="Cường",
            full_name="Lê Quốc Cường",
            sex=Sex.MALE,
            birth_year=2000,
            birth_month=1,
            birth_day=2,
        ),
        "dung": PatientFactory(
            family_name="Nguyễn",
            middle_name="Thị",
            given_name="Dung",
            full_name="Nguyễn Thị Dung",
            birth_year=1980,
            birth_month=12,
            birth_day=31,
        ),
    }
    made["an"].identifiers.append(PatientIdentifier(type=IdentifierType.CCCD, value="001080012345"))
    made["dung"].identifiers.append(
        PatientIdentifier(type=IdentifierType.CCCD, value="001180054321")
    )
    db_session.commit()
    return {k: str(v.id) for k, v in made.items()}


def mine(bundle, people):
    """The matched ids that belong to the fixture (other tests' rows are rolled back, but
    the demo data or other fixtures may share the database)."""
    wanted = set(people.values())
    return sorted(i for i in ids(bundle) if i in wanted)


def names(people, *keys):
    return sorted(people[k] for k in keys)


def test_string_search_ignores_accents_and_case_and_exact_and_contains(search, people):
    assert mine(search("Patient?name=nguyen&_count=1000"), people) == names(people, "an", "dung")
    assert mine(search("Patient?name=NGUYỄN&_count=1000"), people) == names(people, "an", "dung")
    assert mine(search("Patient?family=tran&_count=1000"), people) == names(people, "binh")
    assert mine(search("Patient?given=cuong&_count=1000"), people) == names(people, "cuong")
    assert mine(search("Patient?name=Nguyen Van&_count=1000"), people) == names(people, "an")
    exact = search("Patient?name:exact=Nguyễn Văn An&_count=1000")
    assert mine(exact, people) == names(people, "an")
    assert mine(search("Patient?name:exact=nguyen van an&_count=1000"), people) == []
    assert mine(search("Patient?name:contains=uong&_count=1000"), people) == names(people, "cuong")
    # starts-with, not contains, by default
    assert mine(search("Patient?name=uong&_count=1000"), people) == []


def test_token_search_system_code_forms_not_and_missing(search, people):
    from his.fhirapi import systems

    cccd = systems.CCCD
    assert ids(search(f"Patient?identifier={cccd}|001080012345")) == [people["an"]]
    assert ids(search("Patient?identifier=001080012345")) == [people["an"]]
    assert ids(search("Patient?identifier=|001080012345")) == []
    assert ids(search("Patient?identifier=urn:other|001080012345")) == []
    system_only = search(f"Patient?identifier={cccd}|&_count=1000")
    assert mine(system_only, people) == names(people, "an", "dung")
    male = search("Patient?gender=male&_count=1000")
    assert mine(male, people) == names(people, "an", "cuong")
    not_male = search("Patient?gender:not=male&_count=1000")
    assert mine(not_male, people) == names(people, "binh", "dung")
    assert ids(search("Patient?phone=0912345678")) == [people["an"]]
    no_phone = search("Patient?phone:missing=true&_count=1000")
    assert mine(no_phone, people) == names(people, "binh", "cuong", "dung")
    has_phone = search("Patient?phone:missing=false&_count=1000")
    assert mine(has_phone, people) == names(people, "an")


def test_or_within_a_parameter_and_and_across_repeats(search, people):
    either = search("Patient?given=an,binh&_count=1000")
    assert mine(either, people) == names(people, "an", "binh")
    both = search("Patient?family=nguyen&given=dung&_count=1000")
    assert mine(both, people) == names(people, "dung")
    repeated = search("Patient?name=nguyen&name=thi&_count=1000")
    assert mine(repeated, people) == names(people, "dung")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("birthdate=1980-05-17", ["an"]),
        ("birthdate=eq1980", ["an", "dung"]),
        ("birthdate=1980-05", ["an"]),
        ("birthdate=1990", ["binh"]),
        # a birth known only to the year is not "within" a month of it
        ("birthdate=1990-06", []),
        ("birthdate=ne1980", ["binh", "cuong"]),
        ("birthdate=lt1990", ["an", "dung"]),
        ("birthdate=le1990", ["an", "binh", "dung"]),
        ("birthdate=gt1990", ["cuong"]),
        ("birthdate=ge1990", ["binh", "cuong"]),
        ("birthdate=sa1980-12-31", ["binh", "cuong"]),
        ("birthdate=eb1990-01-01", ["an", "dung"]),
        ("birthdate=ap2000-01-01", ["cuong"]),
        ("birthdate=ge1980-06-01&birthdate=lt1995", ["binh", "dung"]),
    ],
)
def test_date_prefixes(search, people, query, expected):
    assert mine(search(f"Patient?{query}&_count=1000"), people) == names(people, *expected)


def test_id_last_updated_and_reference_with_chaining(search, people, db_session):
    from his.models import Patient

    assert ids(search(f"Patient?_id={people['an']},{people['binh']}&_sort=_id")) == sorted(
        [people["an"], people["binh"]]
    )
    # Two days ahead: a date without a zone is a Vietnamese day (UTC+7), so from 17:00 UTC
    # "tomorrow in UTC" has already begun there and would not be in the future.
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).strftime("%Y-%m-%d")
    assert ids(search(f"Patient?_lastUpdated=gt{future}")) == []
    recent = search(f"Patient?_lastUpdated=lt{future}&_id={people['an']}")
    assert ids(recent) == [people["an"]]
    # Bình merged into An: her Patient links to An's
    db_session.get(Patient, int(people["binh"])).merged_into_id = int(people["an"])
    db_session.commit()
    target = people["an"]
    for query in (
        f"link=Patient/{target}",
        f"link={target}",
        f"link:Patient={target}",
        f"link=http://elsewhere.example/fhir/Patient/{target}",
        "link:Patient.identifier=001080012345",
        "link.identifier=001080012345",
        "link.name=nguyen van",
    ):
        assert mine(search(f"Patient?{query}"), people) == [people["binh"]], query
    assert mine(search("Patient?link.identifier=nobody"), people) == []


def test_include_and_revinclude(search, people, db_session):
    from his.models import Patient

    db_session.get(Patient, int(people["binh"])).merged_into_id = int(people["an"])
    db_session.commit()
    bundle = search(f"Patient?_id={people['binh']}&_include=Patient:link")
    modes = {(e["resource"]["id"], e["search"]["mode"]) for e in bundle["entry"]}
    assert modes == {(people["binh"], "match"), (people["an"], "include")}
    rev = search(f"Patient?_id={people['an']}&_revinclude=Patient:link")
    modes = {(e["resource"]["id"], e["search"]["mode"]) for e in rev["entry"]}
    assert modes == {(people["an"], "match"), (people["binh"], "include")}
    star = search(f"Patient?_id={people['binh']}&_include=Patient:*")
    assert {e["resource"]["id"] for e in star["entry"]} == {people["an"], people["binh"]}
    search("Patient?_include=Patient:name", status=400)
    search("Patient?_include=Encounter:patient", status=400)


def test_sort_keeps_rows_without_a_value_last_and_several_keys(search, people, db_session):
    ordered = mine(search("Patient?_sort=birthdate&_count=1000"), people)
    got = [i for i in ids(search("Patient?_sort=birthdate&_count=1000")) if i in ordered]
    assert got == [people["an"], people["dung"], people["binh"], people["cuong"]]
    got = [i for i in ids(search("Patient?_sort=-birthdate&_count=1000")) if i in ordered]
    assert got == [people["cuong"], people["binh"], people["dung"], people["an"]]
    # phone: only An has one; the others are kept, after him, in both directions
    for sort in ("phone", "-phone"):
        got = [i for i in ids(search(f"Patient?_sort={sort}&_count=1000")) if i in ordered]
        assert got[0] == people["an"] and len(got) == 4, sort
    got = [
        i
        for i in ids(search("Patient?_sort=family,-birthdate&_count=1000&name=nguyen,tran,le"))
        if i in ordered
    ]
    assert got == [people["cuong"], people["dung"], people["an"], people["binh"]]


def page_through(search, first, limit=100):
    seen, url, pages = [], first, 0
    while url:
        bundle = search(url)
        seen += ids(bundle)
        nxt = [link["url"] for link in bundle.get("link", []) if link["relation"] == "next"]
        url = nxt[0].split("/fhir/", 1)[1] if nxt else None
        pages += 1
        assert pages < limit
    return seen, pages


def test_keyset_paging_returns_each_match_once_also_when_sorted(search, db_session):
    made = [
        PatientFactory(family_name="Phạm", given_name=f"Khang{i}", birth_year=1950 + i % 7)
        for i in range(23)
    ]
    db_session.commit()
    expected = sorted(str(p.id) for p in made)
    seen, pages = page_through(search, "Patient?family=pham&_count=5")
    assert sorted(seen) == expected and len(seen) == 23 and pages == 5
    seen, pages = page_through(search, "Patient?family=pham&_count=4&_sort=-birthdate,given")
    assert sorted(seen) == expected and len(seen) == 23
    years = [
        b["birthDate"]
        for b in (search(f"Patient/{i}") for i in seen)  # read back in the paged order
    ]
    assert years == sorted(years, reverse=True)
    bundle = search("Patient?family=pham&_count=5&_total=accurate")
    assert bundle["total"] == 23 and len(bundle["entry"]) == 5
    assert "total" not in search("Patient?family=pham&_count=5")
    # a tampered cursor is refused
    nxt = next(lnk["url"] for lnk in bundle["link"] if lnk["relation"] == "next")
    path = nxt.split("/fhir/", 1)[1]
    search(path[:-3] + ("aaa" if not path.endswith("aaa") else "bbb"), status=400)


def test_count_summary_and_elements(search, people):
    count = search("Patient?name=nguyen&_summary=count")
    assert count["total"] >= 2 and "entry" not in count
    assert "entry" not in search("Patient?name=nguyen&_count=0")
    search("Patient?_count=abc", status=400)
    big = search("Patient?_count=5000")
    assert len(big.get("entry", [])) <= 1000
    summary = search(f"Patient?_id={people['an']}&_summary=true")["entry"][0]["resource"]
    assert "contact" not in summary and summary["name"][0]["family"] == "Nguyễn"
    assert any(t["code"] == "SUBSETTED" for t in summary["meta"]["tag"])
    elements = search(f"Patient?_id={people['an']}&_elements=birthDate")["entry"][0]["resource"]
    assert set(elements) == {"resourceType", "id", "meta", "birthDate"}
    assert any(t["code"] == "SUBSETTED" for t in elements["meta"]["tag"])
    data = search(f"Patient?_id={people['an']}&_summary=data")["entry"][0]["resource"]
    assert "text" not in data and data["gender"] == "male"


def test_unknown_parameters_strict_and_lenient(search, people):
    error = search("Patient?shoe-size=42", status=400)
    assert error["resourceType"] == "OperationOutcome"
    assert error["issue"][0]["expression"] == ["shoe-size"]
    search("Patient?name:sounds-like=an", status=400)
    search("Patient?birthdate=yesterday", status=400)
    search("Patient?birthdate=0001", status=400)  # before the first instant there is
    search("Patient?birthdate=ap9999-12-31T23:59:59Z")  # the last one is fine
    search("Patient?birthdate=ap9999")
    search("Patient?gender:missing=maybe", status=400)
    search("Patient?_sort=shoe-size", status=400)
    search("Patient?_total=lots", status=400)
    search("Patient?given.name=x", status=400)  # only references chain
    search("Patient?link:identifier=x", status=400)
    lenient = search(
        "Patient?shoe-size=42&given=an&_count=1000", headers={"Prefer": "handling=lenient"}
    )
    assert people["an"] in ids(lenient)
    outcome = [e for e in lenient["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome[0]["resource"]["issue"][0]["severity"] == "warning"
    assert outcome[0]["resource"]["issue"][0]["expression"] == ["shoe-size"]
    search("Spaceship?name=x", status=404)


def test_post_search_with_a_form_body(client, staff_token, people):
    response = client.post(
        "/fhir/Patient/_search",
        data={"given": "an", "_count": "1000"},
        headers={"Authorization": f"Bearer {staff_token}", "Accept": FHIR_JSON},
    )
    assert response.status_code == 200, response.json
    assert people["an"] in ids(response.json)
    assert response.json["type"] == "searchset"
    wrong = client.post(
        "/fhir/Patient/_search",
        json={"given": "an"},
        headers={"Authorization": f"Bearer {staff_token}"},
    )
    assert wrong.status_code == 415


def test_facility_scope_search_is_audited_and_needs_a_token(
    search, db_session, client, staff_token
):
    from his.models import AuditAction, AuditEvent, User
    from his.services import auth

    user = db_session.scalars(select(User).order_by(User.id.desc())).first()
    assert auth.user_for_token(db_session, staff_token).id == user.id
    other = FacilityFactory()
    resource = {"name": [{"family": "Ngoài"}], "gender": "other"}
    projection.store(db_session, "Patient", "x-mine", Built(resource, facility_id=user.facility_id))
    projection.store(db_session, "Patient", "x-other", Built(resource, facility_id=other.id))
    db_session.commit()
    found = ids(search("Patient?family=ngoai"))
    assert "x-mine" in found and "x-other" not in found
    audits = db_session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == AuditAction.SEARCH, AuditEvent.entity_type == "Patient"
        )
    ).all()
    assert audits and "family" in (audits[-1].detail or "")
    assert client.get("/fhir/Patient?name=x").status_code == 401


def test_deleted_resources_are_not_found(search, db_session):
    projection.store(db_session, "Patient", "x-gone", Built({"name": [{"family": "Biến"}]}))
    db_session.commit()
    assert ids(search("Patient?family=bien")) == ["x-gone"]
    projection.store(db_session, "Patient", "x-gone", None)
    db_session.commit()
    assert ids(search("Patient?family=bien")) == []


def test_matching_is_the_engine_for_conditional_create(db_session, app, people):
    from his.fhirapi.outcome import FhirError
    from his.fhirapi.search import matching
    from his.fhirapi.security import FhirAccess
    from his.services.access import Principal

    access = FhirAccess(principal=Principal.system("test"), scopes=())
    with app.test_request_context():
        stmt = matching(db_session, access, "Patient", [("identifier", "001080012345")])
        assert [r.resource_id for r in db_session.scalars(stmt)] == [people["an"]]
        with pytest.raises(FhirError) as error:
            matching(db_session, access, "Patient", [("nonsense", "1")])
        assert error.value.status == 400


# --- every declared parameter of every type ------------------------------------------


def _element(p, n):
    """A JSON element the extraction of ``p`` indexes (for a synthetic resource)."""
    if p.type == searchparams.TOKEN:
        return {"coding": [{"system": "urn:test:system", "code": f"c{n}"}]}
    if p.type in (searchparams.STRING,):
        return f"Đặng Thử{n}"
    if p.type == searchparams.URI:
        return f"urn:test:uri:{n}"
    if p.type == searchparams.DATE:
        return f"2021-03-{1 + n % 27:02d}"
    if p.type == searchparams.REFERENCE:
        return {"reference": f"{(p.targets or ('Patient',))[0]}/synthetic-target-{n}"}
    if p.type in (searchparams.NUMBER, searchparams.QUANTITY):
        return {"value": 10 + n, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}
    raise AssertionError(p.type)


def _nest(path, value):
    for part in reversed(path.split(".")):
        value = {part: value}
    return value


def _query_value(p, row):
    """A search value that must find the resource this stored search value belongs to."""
    if p.type == searchparams.TOKEN:
        return f"{row.system}|{row.code}" if row.system else row.code
    if p.type == searchparams.STRING:
        return row.text[:4]
    if p.type == searchparams.URI:
        return row.exact
    if p.type == searchparams.DATE:
        if row.start.year > 1:
            return "ge" + row.start.strftime("%Y-%m-%dT%H:%M:%SZ")
        return "le" + (row.end - dt.timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    if p.type == searchparams.REFERENCE:
        return row.reference
    if p.type in (searchparams.NUMBER, searchparams.QUANTITY):
        value = format(row.number.normalize(), "f")
        if p.type == searchparams.QUANTITY and row.code:
            return f"{value}|{row.system or ''}|{row.code}"
        return value
    raise AssertionError(p.type)


def test_every_declared_parameter_of_every_type_finds_what_it_should(search, db_session):
    # One synthetic resource per parameter (its own element only), beside whatever the
    # mappers projected: each parameter is then searched with a value taken from a stored
    # search value, and must find that resource — and not find it with :missing=true.
    import his.fhirapi.mappers  # noqa: F401

    n = 0
    for resource_type in PROJECTED:
        for p in searchparams.params_of(resource_type).values():
            n += 1
            projection.store(
                db_session,
                resource_type,
                f"synthetic-{p.name}-{n}",
                Built(_nest(p.paths[0], _element(p, n))),
            )
    db_session.commit()
    checked = 0
    for resource_type in PROJECTED:
        for p in searchparams.params_of(resource_type).values():
            rows = db_session.execute(
                select(FhirSearchValue, FhirResource.resource_id)
                .join(FhirResource, FhirResource.rid == FhirSearchValue.rid)
                .where(
                    FhirSearchValue.resource_type == resource_type,
                    FhirSearchValue.param == p.name,
                )
                .order_by(FhirSearchValue.id)
            ).all()
            assert rows, f"{resource_type}.{p.name} indexes nothing"
            # a real (mapper-built) value when there is one, and the synthetic one
            picks = {rows[0][1]: rows[0][0], rows[-1][1]: rows[-1][0]}
            for resource_id, row in picks.items():
                value = _query_value(p, row)
                found = ids(
                    search(f"{resource_type}", query_string=[(p.name, value), ("_id", resource_id)])
                )
                assert found == [resource_id], (resource_type, p.name, value)
                broad = search(
                    f"{resource_type}", query_string=[(p.name, value), ("_count", "1000")]
                )
                assert resource_id in ids(broad) or broad.get("link"), (resource_type, p.name)
                missing = search(
                    f"{resource_type}",
                    query_string=[(f"{p.name}:missing", "true"), ("_id", resource_id)],
                )
                assert ids(missing) == [], (resource_type, p.name)
                checked += 1
            # and sorting by it works
            search(f"{resource_type}?_sort=-{p.name}&_count=5")
    assert checked >= sum(len(searchparams.params_of(t)) for t in PROJECTED)


def test_undeclared_parameters_are_refused(search):
    import his.fhirapi.mappers  # noqa: F401

    for resource_type in PROJECTED:
        search(f"{resource_type}?not-a-parameter=1", status=400)
    # standard R4 parameters this server does not declare are refused too
    search("Patient?deceased=true", status=400)
    search("Patient?general-practitioner=Practitioner/1", status=400)


# --- paging under concurrent writes (real commits: a committed database) -------------


@pytest.fixture
def committed(backend, fresh_database):
    databases = fresh_database(backend)
    url = next(databases)
    app = create_app(settings_for(url))
    database: Database = app.extensions["his_db"]
    try:
        yield app, database
    finally:
        database.engine.dispose()
        databases.close()


def test_paging_while_patients_are_created_and_updated(committed):
    from tests import factories

    app, database = committed
    with database.session() as session:
        factories.bind(session)
        user = UserFactory(roles=(Role.DOCTOR,))
        before = [PatientFactory(family_name="Đoàn", given_name=f"Minh{i}") for i in range(60)]
        session.commit()
        expected = sorted(str(p.id) for p in before)
        username = user.username
    client = app.test_client()
    token = client.post(
        "/api/v1/auth/token", json={"username": username, "password": factories.PASSWORD}
    ).json["access_token"]
    headers = {"Authorization": f"Bearer {token}", "Accept": FHIR_JSON}

    stop = threading.Event()
    written = {"created": 0, "updated": 0}

    def writer():
        from his.models import Patient
        from his.text import fold_vi

        with database.session() as session:
            factories.bind(session)
            i = 0
            while not stop.is_set():
                PatientFactory(family_name="Đoàn", given_name=f"Mới{i}")
                victim = session.get(Patient, int(expected[i % len(expected)]))
                victim.phone = f"09{i:08d}"
                # The sort key too: the patient jumps to the other end of `_sort=given`.
                victim.given_name = f"{'A' if i % 2 else 'Z'}{i:05d}"
                victim.full_name = f"Đoàn {victim.given_name}"
                victim.search_name = fold_vi(victim.full_name)
                session.commit()
                written["created"] += 1
                written["updated"] += 1
                i += 1
                time.sleep(0.005)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        for query in ("family=doan&_count=7", "family=doan&_count=9&_sort=given"):
            seen: list[str] = []
            url = f"/fhir/Patient?{query}"
            while url:
                response = client.get(url, headers=headers)
                assert response.status_code == 200, response.json
                seen += ids(response.json)
                nxt = [lnk["url"] for lnk in response.json["link"] if lnk["relation"] == "next"]
                url = None
                if nxt:
                    parts = urlsplit(nxt[0])
                    url = parts.path + "?" + parts.query
                    assert dict(parse_qsl(parts.query))["_cursor"]
                time.sleep(0.01)
            assert len(seen) == len(set(seen)), "a resource was served twice"
            assert set(expected) <= set(seen), "a resource that matched was skipped"
    finally:
        stop.set()
        thread.join(timeout=10)
    assert written["updated"] > 0


def test_every_parameter_with_values_in_the_demo_province_finds_its_resource(
    db_session, fhir_get, login_token
):
    # The mappers' own JSON, not synthetic elements: load the demo province (projected at
    # commit) and search each parameter that indexed something with a value it indexed.
    from his.models import User
    from his.services.demo import DEMO_PASSWORD, load_demo

    load_demo(db_session)
    db_session.commit()
    doctor = db_session.scalars(select(User).where(User.username == "doctor")).one()
    token = login_token("doctor", DEMO_PASSWORD)["Authorization"].removeprefix("Bearer ")
    checked = set()
    for resource_type in PROJECTED:
        for p in searchparams.params_of(resource_type).values():
            row = db_session.execute(
                select(FhirSearchValue, FhirResource.resource_id)
                .join(FhirResource, FhirResource.rid == FhirSearchValue.rid)
                .where(
                    FhirSearchValue.resource_type == resource_type,
                    FhirSearchValue.param == p.name,
                    (FhirResource.facility_id.is_(None))
                    | (FhirResource.facility_id == doctor.facility_id),
                )
                .order_by(FhirSearchValue.id)
                .limit(1)
            ).first()
            if row is None:
                continue
            value, resource_id = _query_value(p, row[0]), row[1]
            response = fhir_get(
                f"/fhir/{resource_type}",
                token=token,
                query_string=[(p.name, value), ("_id", resource_id)],
            )
            assert response.status_code == 200, response.json
            assert ids(response.json) == [resource_id], (resource_type, p.name, value)
            checked.add((resource_type, p.name))
    assert {("Patient", "identifier"), ("Patient", "birthdate")} <= checked
    assert len({t for t, _p in checked}) >= 5
    # includes and chains across the mappers' types
    encounter = db_session.scalars(
        select(FhirResource).where(
            FhirResource.resource_type == "Encounter",
            FhirResource.facility_id == doctor.facility_id,
        )
    ).first()
    assert encounter is not None  # the demo's visits at the doctor's station
    if "patient" in searchparams.params_of("Encounter"):
        patient_ref = db_session.scalar(
            select(FhirSearchValue.reference).where(
                FhirSearchValue.rid == encounter.rid, FhirSearchValue.param == "patient"
            )
        )
        bundle = fhir_get(
            f"/fhir/Encounter?_id={encounter.resource_id}&_include=Encounter:patient",
            token=token,
        ).json
        included = {
            f"{e['resource']['resourceType']}/{e['resource']['id']}"
            for e in bundle["entry"]
            if e["search"]["mode"] == "include"
        }
        assert included == {patient_ref}
        rev = fhir_get(
            f"/fhir/Patient?_id={patient_ref.split('/')[1]}&_revinclude=Encounter:patient",
            token=token,
        ).json
        assert encounter.resource_id in {e["resource"]["id"] for e in rev["entry"]}
        patient_row = db_session.scalars(
            select(FhirResource).where(
                FhirResource.resource_type == "Patient",
                FhirResource.resource_id == patient_ref.split("/")[1],
            )
        ).one()
        mrn = next(
            i["value"]
            for i in json.loads(patient_row.content)["identifier"]
            if i["system"] == systems.MRN
        )
        chained = fhir_get(
            "/fhir/Encounter", token=token, query_string={"patient.identifier": mrn}
        ).json
        assert encounter.resource_id in ids(chained)


def test_sorted_paging_serves_each_match_once_when_sort_values_change(search, db_session):
    """The first page fixes the order: a patient moved to the front after page 1, and one
    moved to the back from page 1, are each served exactly once."""
    made = [PatientFactory(family_name="Lâm", given_name=f"Bảo{i:02d}") for i in range(12)]
    db_session.commit()
    first = search("Patient?family=lam&_sort=given&_count=5")
    first_ids = ids(first)
    assert first_ids == [str(p.id) for p in made[:5]]
    # After page 1: the last one now sorts first, the first one now sorts last.
    made[11].given_name, made[0].given_name = "An", "Zung"
    made[11].full_name = "Lâm An"
    made[0].full_name = "Lâm Zung"
    db_session.commit()
    nxt = next(link["url"] for link in first["link"] if link["relation"] == "next")
    seen, _pages = page_through(search, nxt.split("/fhir/", 1)[1])
    everything = first_ids + seen
    assert len(everything) == len(set(everything)) == 12
    assert everything == [str(p.id) for p in made]
    # A new search sees the new order.
    assert ids(search("Patient?family=lam&_sort=given&_count=1")) == [str(made[11].id)]


def test_an_expired_sorted_search_says_so(search, db_session):
    from his.models import FhirSearchSnapshot

    for i in range(3):
        PatientFactory(family_name="Quách", given_name=f"Tâm{i}")
    db_session.commit()
    first = search("Patient?family=quach&_sort=given&_count=2")
    nxt = next(link["url"] for link in first["link"] if link["relation"] == "next")
    for snapshot in db_session.scalars(select(FhirSearchSnapshot)).all():
        db_session.delete(snapshot)
    db_session.commit()
    gone = search(nxt.split("/fhir/", 1)[1], status=410, headers={"Accept-Language": "en"})
    assert "expired" in gone["issue"][0]["diagnostics"]
    # The cursor of a sorted search used without its _sort is refused, not a server error.
    unsorted = nxt.split("/fhir/", 1)[1].replace("_sort=given&", "")
    search(unsorted, status=400)
