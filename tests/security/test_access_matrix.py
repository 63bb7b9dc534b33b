"""Every route of the app, for every role, against the access matrix (his/access_matrix.py).

One walk per backend, with a user of each role at facility A and an anonymous caller:

1. Facility B's records (visits, encounters, orders, diagnoses, prescriptions, bills,
   payments, charges, rooms, export groups and their FHIR resources), asked for with every
   method by each role that may use the route at its own facility: each answer must be
   404 or 403, since the matrix has no cross-facility exception for them; FHIR searches by
   B's ids find nothing, $everything of a patient seen at both carries none of B's
   records, and B's audit trail stays hidden.
2. Every rule and method of ``app.url_map`` (the FHIR routes of any type once per
   resource type for read and search, per access class for the other interactions) with
   real ids of facility A's records. A role the matrix allows must not meet 401/403 or the
   login page; a role it does not allow must get 403; an anonymous caller 401 (REST,
   FHIR) or the login redirect (web); an interaction not offered 405 for everyone.

Bodies: REST views validate their body before the view (and so the service) runs, so an
empty body would meet 422 whatever the role and prove nothing about the role check. Each
write therefore gets a body that passes validation (``requests_for``); an allowed role may
still meet 404/409/422 from the service (a state or a business rule), which is not a
refusal of the role. FHIR checks the token's scopes before it reads the body.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from billing import bills, payments
from billing.models import Charge, PaymentMethod
from his import access_matrix as matrix
from his import create_app
from his.models import (
    AuditEvent,
    FhirGroup,
    FhirGroupMember,
    FhirResource,
    Payment,
    PrescriptionStatus,
    Role,
)
from his.services import auth
from his.services import encounters as encounter_service
from his.services import patients as patient_service
from his.services.access import Principal
from tests.billing_data import billing_hospital, examined
from tests.conftest import settings_for
from tests.encounters_data import icd10_lists
from tests.factories import PASSWORD, PatientFactory, UserFactory
from tests.pharmacy_data import make_drug, make_lot, make_prescription
from tests.prescribing_data import add_diagnosis

ROOT = Path(__file__).resolve().parents[2]
ROLES = list(Role)
ANONYMOUS = "anonymous"
ARG = re.compile(r"<(?:(?P<conv>\w+)(?:\((?P<args>[^)]*)\))?:)?(?P<name>\w+)>")
FHIR_JSON = {"Accept": "application/fhir+json"}


def test_every_route_of_the_app_is_in_the_matrix(tmp_path):
    # The routes are known without a database: the app is built but never connects.
    app = create_app(settings_for(f"sqlite:///{tmp_path / 'unused.db'}"))
    routes = {(r.rule, m) for r in app.url_map.iter_rules() for m in _methods(r)}
    missing = sorted(routes - matrix.ROUTES.keys())
    assert not missing, f"routes missing from his/access_matrix.py: {missing}"
    stale = sorted(matrix.ROUTES.keys() - routes)
    assert not stale, f"his/access_matrix.py names routes the app no longer has: {stale}"


def test_the_document_is_the_matrix():
    written = (ROOT / "docs" / "access-matrix.md").read_text(encoding="utf-8")
    assert written == matrix.render(), (
        "docs/access-matrix.md is stale: python -m his.access_matrix > docs/access-matrix.md"
    )


def test_every_served_fhir_type_has_a_row():
    from his.fhirapi.resource_types import CREATABLE, PROJECTED, UPDATABLE

    assert set(matrix.FHIR_TYPES) == set(PROJECTED)
    assert {t for t, e in matrix.FHIR_TYPES.items() if e.create} == set(CREATABLE)
    assert {t for t, e in matrix.FHIR_TYPES.items() if e.update} == set(UPDATABLE)


# --- the records ------------------------------------------------------------------------------


@dataclass
class Site:
    facility_id: int
    users: dict[Role, object]
    ids: dict[str, object] = field(default_factory=dict)
    fhir_ids: dict[str, str] = field(default_factory=dict)

    def fhir_ids_of(self, session, resource_type: str) -> str:
        return session.scalars(
            select(FhirResource.resource_id).where(
                FhirResource.resource_type == resource_type,
                FhirResource.facility_id == self.facility_id,
            )
        ).first()


def _site(session, code: str, icd) -> Site:
    """A hospital with a user of every role, an examined fee-paying visit with an order and
    a diagnosis, a paid bill, a drug in stock and a signed and a draft prescription."""
    place = billing_hospital(session, code=code)
    facility = place.facility
    users = {
        Role.ADMIN: UserFactory(roles=(Role.ADMIN,), facility=facility),
        Role.RECEPTIONIST: place.receptionist,
        Role.DOCTOR: place.doctor,
        Role.NURSE: place.nurse,
        Role.PHARMACIST: UserFactory(roles=(Role.PHARMACIST,), facility=facility),
        Role.CASHIER: place.cashier,
        Role.AUDITOR: UserFactory(roles=(Role.AUDITOR,), facility=facility),
        Role.INTEGRATION: place.lab,
    }
    visit, encounter, doctor = examined(session, place, payment=Payment.FEE)
    order = encounter_service.add_order(session, doctor, encounter.id, "23.0075.1494")
    diagnosis = add_diagnosis(session, encounter, icd, "J06.9", main=True)
    bill = bills.build(session, visit).open_bill.bill
    paid = payments.take_payment(
        session, Principal.for_user(place.cashier), bill.id, PaymentMethod.CASH, 80_000
    )
    drug = make_drug(session, facility, f"AMO{code}")
    make_lot(session, facility, drug, "L1", dt.date(2099, 1, 1), 100)
    signed = make_prescription(session, facility, [(drug, 10)], doctor=place.doctor)
    draft = make_prescription(
        session, facility, [(drug, 10)], doctor=place.doctor, status=PrescriptionStatus.DRAFT
    )
    group = FhirGroup(name=f"Nhóm {code}", facility_id=facility.id)
    session.add(group)
    session.flush()
    session.add(FhirGroupMember(group_id=group.id, patient_id=visit.patient_id))
    charge = session.scalars(select(Charge).where(Charge.visit_id == visit.id)).first()
    site = Site(facility.id, users)
    site.ids = {
        "patient_id": visit.patient_id,
        "visit_id": visit.id,
        "encounter_id": encounter.id,
        "order_id": order.id,
        "diagnosis_id": diagnosis.id,
        "prescription_id": signed.id,
        "draft_id": draft.id,
        "drug_code": drug.code,
        "bill_id": bill.id,
        "charge_id": charge.id,
        "payment_id": paid.payment.id,
        "room_id": place.room.id,
    }
    return site


def _world(session) -> tuple[Site, Site]:
    icd, _later = icd10_lists(session)
    a, b = _site(session, "91001", icd), _site(session, "91002", icd)
    survivor, merged = PatientFactory(), PatientFactory()
    merge = patient_service.merge_patients(
        session, Principal.for_user(a.users[Role.ADMIN]), survivor.id, merged.id
    )
    for site in (a, b):  # the patient index is shared: one merge, seen from both
        site.ids["merge_id"] = merge.id
        site.ids["merged_patient_id"] = PatientFactory().id
    session.commit()  # the FHIR projection is written at commit
    for site in (a, b):
        rows = session.scalars(
            select(FhirResource)
            .where(FhirResource.facility_id == site.facility_id)
            .order_by(FhirResource.rid)
        )
        for row in rows:
            site.fhir_ids.setdefault(row.resource_type, row.resource_id)
        site.fhir_ids["Patient"] = str(site.ids["patient_id"])
    return a, b


# --- the callers ------------------------------------------------------------------------------


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'name="csrf-token" content="([^"]+)"', html
    )
    assert found, "no CSRF token on the page"
    return found.group(1)


class Caller:
    """One role's two ways in: a browser session for the screens (logged in through the
    login form) and a bearer token for REST and FHIR.

    The token comes from the token service rather than POST /api/v1/auth/token: each
    password check costs argon2's quarter second, and that route is walked like any other.
    """

    def __init__(self, app, user=None):
        self.web = app.test_client()
        self.api = app.test_client()
        self.headers: dict[str, str] = {}
        self.csrf = _csrf(self.web.get("/login").get_data(as_text=True))
        if user is None:
            return
        with app.extensions["his_db"].session() as session:
            raw, _token = auth.issue_token(
                session, auth.find_user(session, user.username), dt.timedelta(hours=1)
            )
        self.headers = {"Authorization": f"Bearer {raw}"}
        form = {"username": user.username, "password": PASSWORD, "csrf_token": self.csrf}
        assert self.web.post("/login", data=form).status_code == 302
        self.csrf = _csrf(self.web.get("/").get_data(as_text=True))

    def call(self, method: str, url: str, extra: dict):
        query = extra.get("query", "")
        target = url + (("&" if "?" in url else "?") + query if query else "")
        headers = {**extra.get("headers", {})}
        if url.startswith(("/api/", "/fhir")):
            headers.update(self.headers)
            if "data" in extra:
                return self.api.open(target, method=method, data=extra["data"], headers=headers)
            body = extra.get("json", {} if method in ("POST", "PUT", "PATCH") else None)
            return self.api.open(target, method=method, json=body, headers=headers)
        data = {**extra.get("form", {}), "csrf_token": self.csrf} if method == "POST" else None
        return self.web.open(target, method=method, data=data, headers=headers)


# --- what each route is sent ------------------------------------------------------------------


def _item(code: str) -> dict:
    return {"drug_code": code, "dose": "1", "times_per_day": 2, "days": 5}


def requests_for(site: Site) -> dict[tuple[str, str], dict]:
    """Query strings and bodies that pass validation, so that the role check is reached."""
    i = site.ids
    items = [_item(i["drug_code"])]
    rx_form = {"drug_code": i["drug_code"], "dose": "1", "times_per_day": "2", "days": "5"}
    rx_form = {f"items-0-{k}": v for k, v in rx_form.items()}
    async_ = {"Prefer": "respond-async"}
    parameters = {"resourceType": "Parameters"}
    return {
        ("/login", "POST"): {"form": {"username": "nobody", "password": "x"}},
        ("/api/v1/auth/token", "POST"): {"json": {"username": "nobody", "password": "x"}},
        ("/doctor/prescriptions/new", "GET"): {"query": f"encounter_id={i['encounter_id']}"},
        ("/doctor/prescriptions/new", "POST"): {
            "query": f"encounter_id={i['encounter_id']}",
            "form": rx_form,
        },
        ("/doctor/prescriptions/check", "POST"): {
            "query": f"encounter_id={i['encounter_id']}",
            "form": rx_form,
        },
        ("/doctor/encounters/<int:encounter_id>/disposition/amend", "POST"): {
            "form": {"disposition": "discharged", "amendment_reason": "Sửa"}
        },
        ("/doctor/prescriptions/<int:prescription_id>/edit", "POST"): {"form": rx_form},
        ("/doctor/prescriptions/<int:prescription_id>/replace", "POST"): {
            "form": {**rx_form, "reason": "Đổi liều"}
        },
        ("/api/v1/patients", "GET"): {"query": "q=Tran"},
        ("/api/v1/patients", "POST"): {
            "json": {"full_name": "Lê Thị Hoa", "sex": "female", "birth_date": "1990-02-03"}
        },
        ("/api/v1/patients/<int:patient_id>", "PATCH"): {"json": {"occupation_code": "01"}},
        ("/api/v1/patients/<int:patient_id>/merge", "POST"): {
            "json": {"merged_id": i["merged_patient_id"]}
        },
        ("/api/v1/visits", "POST"): {
            "json": {"patient_id": i["patient_id"], "room_id": i["room_id"]}
        },
        ("/api/v1/catalogs/drugs", "GET"): {"query": "q=amo"},
        ("/api/v1/catalogs/icd10", "GET"): {"query": "q=J06"},
        ("/api/v1/catalogs/services", "GET"): {"query": "q=glu"},
        ("/api/v1/worklist", "GET"): {"query": f"room_id={i['room_id']}"},
        ("/api/v1/worklist/call-next", "POST"): {"query": f"room_id={i['room_id']}"},
        ("/api/v1/encounters/<int:encounter_id>", "PATCH"): {"json": {"history": "Ho"}},
        ("/api/v1/encounters/<int:encounter_id>/vitals", "POST"): {"json": {"pulse": 80}},
        ("/api/v1/encounters/<int:encounter_id>/diagnoses", "POST"): {"json": {"icd10": "I10"}},
        ("/api/v1/encounters/<int:encounter_id>/orders", "POST"): {
            "json": {"service_code": "23.0075.1494"}
        },
        ("/api/v1/orders/<int:order_id>/result", "POST"): {"json": {"value": "5.5"}},
        ("/api/v1/encounters/<int:encounter_id>/finish", "POST"): {
            "json": {"disposition": "discharged"}
        },
        ("/api/v1/encounters/<int:encounter_id>/prescriptions", "POST"): {"json": {"items": items}},
        ("/api/v1/encounters/<int:encounter_id>/prescriptions/check", "POST"): {
            "json": {"items": items}
        },
        ("/api/v1/prescriptions/<int:prescription_id>", "PATCH"): {"json": {"advice": "Uống"}},
        ("/api/v1/prescriptions/<int:prescription_id>/replace", "POST"): {
            "json": {"items": items, "reason": "Đổi liều"}
        },
        ("/api/v1/prescriptions/<int:prescription_id>/returns", "POST"): {
            "json": {"items": [{"item_id": 1, "quantity": 1}], "reason": "Dư"}
        },
        ("/api/v1/stock/receipts", "POST"): {
            "json": {
                "lines": [
                    {
                        "drug_code": i["drug_code"],
                        "lot_number": "L9",
                        "expiry_date": "2099-01-01",
                        "quantity": 5,
                        "unit_cost": 800,
                    }
                ]
            }
        },
        ("/api/v1/bills/<int:bill_id>/payments", "POST"): {
            "json": {"method": "cash", "amount": 1000}
        },
        ("/api/v1/payments/<int:payment_id>/refund", "POST"): {"json": {"reason": "Nhầm"}},
        ("/api/v1/charges/<int:charge_id>/cancel", "POST"): {"json": {"reason": "Nhầm"}},
        ("/api/v1/payments/notify", "POST"): {
            "json": {"transaction_id": "FT1", "amount": 1000, "description": "CHUYEN TIEN"}
        },
        ("/api/v1/billing/params", "POST"): {
            "json": {
                "name": "small_bill_share_percent",
                "value": "16",
                "valid_from": "2099-01-01",
                "source": "Thử",
            }
        },
        ("/api/v1/visits/<int:visit_id>/charges", "POST"): {
            "json": {"code": "23.0075.1494", "quantity": "1"}
        },
        ("/fhir/$export", "GET"): {"headers": {"Prefer": "respond-async"}},
        ("/fhir/Patient/$export", "GET"): {"headers": {"Prefer": "respond-async"}},
        ("/fhir/Group/<group_id>/$export", "GET"): {"headers": {"Prefer": "respond-async"}},
        ("/fhir/<resource_type>/<resource_id>", "PATCH"): {
            "data": "[]",
            "headers": {"Content-Type": "application/json-patch+json"},
        },
        ("/fhir/$export", "POST"): {"headers": async_, "json": parameters},
        ("/fhir/Patient/$export", "POST"): {"headers": async_, "json": parameters},
        ("/fhir/Group/<group_id>/$export", "POST"): {"headers": async_, "json": parameters},
        ("/fhir/<resource_type>/_search", "POST"): {
            "data": "",
            "headers": {"Content-Type": "application/x-www-form-urlencoded"},
        },
        ("/fhir", "POST"): {"json": {"resourceType": "Bundle", "type": "batch", "entry": []}},
        ("/fhir/", "POST"): {"json": {"resourceType": "Bundle", "type": "batch", "entry": []}},
        ("/api/docs/assets/<path:filename>", "GET"): {},
    }


# --- the URLs ---------------------------------------------------------------------------------

# The FHIR routes of any type are walked for every type for read and search; the other
# interactions once per access class (patient index, clinical, prescriptions, claims,
# directories) and for the types that accept writes.
_FHIR_SAMPLE = ("Patient", "Encounter", "Claim")
# Each try of a password costs an argon2 hash: these routes, the same for every caller,
# are walked as the anonymous caller and one user.
PASSWORD_ROUTES = {("/login", "POST"), ("/api/v1/auth/token", "POST")}


def _fhir_types(interaction: str, rule: str) -> tuple[str, ...]:
    if rule in ("/fhir/<resource_type>", "/fhir/<resource_type>/<resource_id>") and (
        interaction in ("read", "search")
    ):
        return tuple(matrix.FHIR_TYPES)
    if interaction == "create":
        return ("Patient", "Observation", "DiagnosticReport", "AllergyIntolerance", "Encounter")
    if interaction == "update":
        return ("Patient", "Encounter")
    if interaction in ("delete", "conditional write"):
        return ("Patient",)
    return _FHIR_SAMPLE


def _methods(rule) -> list[str]:
    return sorted(rule.methods - {"HEAD", "OPTIONS"})


def _placeholder(name: str, rule: str, site: Site, resource_type: str | None):
    fixed = {
        "version_id": "1",
        "kind": "unknown",
        "filename": "none.css",
        "client_id": "no-such-client",
        "peer_id": 999999,
        "message_id": 999999,
        "file_id": 999999,
        "job_id": "00000000-0000-4000-8000-000000000000",
        "name": "Patient.ndjson",
    }
    if name in fixed:
        return fixed[name]
    if name == "resource_id":
        return site.fhir_ids.get(resource_type or rule.split("/")[2], "none")
    if name == "group_id":
        return site.fhir_ids.get("Group", "none")
    if name == "patient_id" and rule.startswith("/fhir"):
        return site.fhir_ids["Patient"]
    if name == "prescription_id" and "/edit" in rule:
        return site.ids["draft_id"]  # a signed prescription is not edited but replaced
    return site.ids[name]


@dataclass(frozen=True)
class Target:
    rule: str
    method: str
    url: str
    allowed: frozenset[Role] | None  # None: public
    offered: bool = True
    fhir_type: str | None = None


def targets(app, site: Site) -> list[Target]:
    out = []
    rules = sorted(app.url_map.iter_rules(), key=lambda r: ("logout" in r.rule, r.rule))
    for rule in rules:  # logging out ends the callers' sessions: last
        for method in _methods(rule):
            access = matrix.ROUTES[(rule.rule, method)]
            interaction = matrix.FHIR_INTERACTIONS.get((rule.rule, method))
            types = _fhir_types(interaction, rule.rule) if interaction else (None,)
            for resource_type in types:
                pieces = ARG.split(rule.rule)
                texts, args = (
                    pieces[0::4],
                    list(zip(pieces[1::4], pieces[2::4], pieces[3::4], strict=True)),
                )
                options = [
                    [o.strip() for o in conv_args.split(",")] if conv == "any" else [None]
                    for conv, conv_args, _name in args
                ]
                for combo in itertools.product(*options):
                    url = texts[0]
                    for (_conv, _a, name), chosen, text in zip(args, combo, texts[1:], strict=True):
                        if name == "resource_type":
                            value = resource_type
                        else:
                            value = chosen or _placeholder(name, rule.rule, site, resource_type)
                        url += str(value) + text
                    allowed, offered = access.roles, access.offered
                    if interaction:
                        allowed = matrix.fhir_roles(resource_type, interaction)
                        offered = allowed is not None
                    out.append(Target(rule.rule, method, url, allowed, offered, resource_type))
    return out


# --- the judgement ----------------------------------------------------------------------------


def _api(url: str) -> bool:
    return url.startswith(("/api/v1", "/fhir"))


def _to_login(response) -> bool:
    return response.status_code == 302 and "/login?next=" in response.headers.get("Location", "")


def verdict(target: Target, who, response) -> str | None:
    """None when the response is what the matrix says, else what was wrong."""
    status = response.status_code
    if not target.offered:
        return None if status == 405 else f"expected 405 (not offered), got {status}"
    if target.allowed is None:
        refused = status == 403 or _to_login(response)
        return f"public route refused with {status}" if refused else None
    if who == ANONYMOUS:
        if _api(target.url):
            return None if status == 401 else f"anonymous: expected 401, got {status}"
        return None if _to_login(response) else f"anonymous: expected the login page, got {status}"
    if who in target.allowed:
        if status in (401, 403) or _to_login(response):
            return f"{who.value}: allowed by the matrix, refused with {status}"
        if status >= 500:
            return f"{who.value}: server error {status}"
        return None
    return None if status == 403 else f"{who.value}: expected 403, got {status}"


def _callers(app, site: Site) -> dict:
    callers = {ANONYMOUS: Caller(app)}
    for role in ROLES:
        callers[role] = Caller(app, site.users[role])
    return callers


def test_every_route_for_every_role_and_facility(make_app, db_session, backend):
    """The two walks share one app, one set of records and one login per role: the
    other facility's records first, as the role walk ends by logging everyone out."""
    app = make_app()
    mine, theirs = _world(db_session)
    started, cpu = time.perf_counter(), time.process_time()
    callers = _callers(app, mine)
    facility_wrong, facility_urls, facility_count = _walk_other_facility(
        app, db_session, callers, theirs
    )
    wrong, urls, count = _walk_roles(app, callers, mine)
    print(
        f"\n{backend}: {urls} urls, {count} requests by role; {facility_urls} urls of another"
        f" facility, {facility_count} requests; {time.perf_counter() - started:.1f} s"
        f" ({time.process_time() - cpu:.1f} s of this process's CPU)"
    )
    assert facility_urls > 50 and facility_count > 200  # the walk really covered the records
    assert not wrong and not facility_wrong, "\n".join(wrong + facility_wrong)


def _walk_roles(app, callers: dict, site: Site) -> tuple[list[str], int, int]:
    """Every rule and method, for every role and the anonymous caller, against the matrix."""
    extras = requests_for(site)
    wrong, count, seen = [], 0, set()
    walked = targets(app, site)
    for target in walked:
        key = (target.rule, target.method)
        extra = extras.get(key, {})
        for who, caller in callers.items():
            if key in PASSWORD_ROUTES and who not in (ANONYMOUS, ROLES[0]):
                continue
            # The anonymous refusal is the route's, not the resource type's or the variant's.
            if who == ANONYMOUS and target.offered and key in seen:
                continue
            response = caller.call(target.method, target.url, extra)
            count += 1
            problem = verdict(target, who, response)
            if problem:
                wrong.append(f"{target.method} {target.url}: {problem}")
        seen.add(key)
    return wrong, len(walked), count


def _walk_other_facility(app, db_session, callers: dict, theirs: Site):
    """Facility A's users ask for facility B's visits, encounters, prescriptions, bills,
    payments, charges, rooms and their FHIR resources, with every method, as each role
    that may use the route at its own facility: each must be answered 404 or 403."""
    extras = requests_for(theirs)
    wrong, count, urls = [], 0, 0
    for target in targets(app, theirs):
        access = matrix.ROUTES[(target.rule, target.method)]
        records = (
            matrix.FHIR_TYPES[target.fhir_type].records
            if target.fhir_type and access.note == matrix.FHIR_GENERIC
            else access.records
        )
        names = {m["name"] for m in ARG.finditer(target.rule)} - {"resource_type"}
        if records != matrix.OWN or not target.offered or not names:
            continue
        urls += 1
        extra = extras.get((target.rule, target.method), {})
        for role in sorted(target.allowed or (), key=ROLES.index):
            response = callers[role].call(target.method, target.url, extra)
            count += 1
            if response.status_code not in (403, 404):
                wrong.append(
                    f"{role.value} {target.method} {target.url}: {response.status_code} "
                    + response.get_data(as_text=True)[:300]
                )
    # $everything of a patient seen at both: the shared Patient, none of B's records.
    theirs_rows = {
        f"{row.resource_type}/{row.resource_id}"
        for row in db_session.scalars(
            select(FhirResource).where(FhirResource.facility_id == theirs.facility_id)
        )
    }
    everything = f"/fhir/Patient/{theirs.fhir_ids['Patient']}/$everything"
    for role in sorted(matrix.PATIENT, key=ROLES.index):
        response = callers[role].call("GET", everything, {"headers": FHIR_JSON})
        count += 1
        got = {
            f"{e['resource']['resourceType']}/{e['resource']['id']}"
            for e in response.get_json().get("entry", [])
        }
        if response.status_code != 200 or got & theirs_rows:
            wrong.append(f"{role.value} {everything}: {response.status_code} {got & theirs_rows}")
    # The audit trail of a facility that is not under the user's is not theirs either.
    assert db_session.scalar(
        select(AuditEvent.id).where(AuditEvent.facility_id == theirs.facility_id).limit(1)
    ), "facility B has audit events to hide"
    for role in sorted(matrix.AUDIT, key=ROLES.index):
        url = f"/api/v1/audit-events?facility_id={theirs.facility_id}"
        response = callers[role].call("GET", url, {})
        count += 1
        if response.status_code != 200 or response.get_json():
            wrong.append(f"{role.value} {url}: {response.status_code} {response.get_json()}")
    # A search finds nothing of another facility either, not even by its id.
    for resource_type, resource_id in theirs.fhir_ids.items():
        if matrix.FHIR_TYPES.get(resource_type, None) is None:
            continue
        if matrix.FHIR_TYPES[resource_type].records != matrix.OWN:
            continue
        for role in sorted(matrix.FHIR_TYPES[resource_type].read, key=ROLES.index):
            response = callers[role].call(
                "GET", f"/fhir/{resource_type}?_id={resource_id}", {"headers": FHIR_JSON}
            )
            count += 1
            found = (
                len(response.get_json().get("entry", [])) if response.status_code == 200 else None
            )
            if found != 0:
                wrong.append(
                    f"{role.value} searched {resource_type}/{resource_id}: {response.status_code}"
                    f" {found} " + response.get_data(as_text=True)[:300]
                )
    return wrong, urls, count


def test_a_staff_token_reaches_through_fhir_only_what_the_role_reaches_elsewhere(
    client, db_session, login_token
):
    """Found by the walk: every staff token carried system/*.cruds, so a cashier read
    clinical records and an auditor patients through FHIR that REST refused them."""
    site = _site(db_session, "91003", icd10_lists(db_session)[0])
    db_session.commit()
    encounter = f"/fhir/Encounter/{site.fhir_ids_of(db_session, 'Encounter')}"
    patient = f"/fhir/Patient/{site.ids['patient_id']}"

    def get(role: Role, url: str) -> int:
        headers = {**login_token(site.users[role].username), **FHIR_JSON}
        return client.get(url, headers=headers).status_code

    rest_encounter = f"/api/v1/encounters/{site.ids['encounter_id']}"
    assert get(Role.CASHIER, rest_encounter) == 403
    assert get(Role.CASHIER, encounter) == 403
    assert get(Role.DOCTOR, encounter) == 200
    assert get(Role.AUDITOR, f"/api/v1/patients/{site.ids['patient_id']}") == 403
    assert get(Role.AUDITOR, patient) == 403
    assert get(Role.RECEPTIONIST, patient) == 200
