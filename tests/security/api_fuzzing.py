"""Fuzzing the REST API against its own OpenAPI document with schemathesis.

Shared by the bounded run in ``make test`` (tests/security/test_openapi_fuzz.py) and the
longer one (bench/fuzz_api.py, ``make fuzz``). The app is called in-process through WSGI,
as the document it serves at ``/api/openapi.json`` describes it. Every response must pass
the checks below: no 5xx, a documented status, content type and headers, and a body that
matches the documented schema. Path ids are drawn both at random and from rows seeded at
the caller's facility, so the fuzzer reaches real records (and their 409s and 412s), not
only 404s.
"""

from __future__ import annotations

import datetime as dt
import json
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import select

from billing import bills, payments
from billing.models import Charge, PaymentMethod
from his.localtime import local_today
from his.models import Role
from his.services import auth
from his.services import encounters as encounter_service
from his.services import patients as patient_service
from his.services import visits as visit_service
from his.services.access import Principal
from tests.billing_data import billing_hospital
from tests.encounters_data import icd10_lists
from tests.factories import PatientFactory, UserFactory
from tests.pharmacy_data import make_drug, make_lot, make_prescription
from tests.prescribing_data import add_diagnosis

OPENAPI_PATH = "/api/openapi.json"
CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)
LOGOUT = "POST /api/v1/auth/logout"
GIVEN_NAMES = ("An", "Bình", "Cường", "Dũng", "Hải", "Khoa", "Long", "Minh", "Nam", "Phúc")
TOKEN = "POST /api/v1/auth/token"


@dataclass
class Site:
    """The seeded facility: a user per role, and the id of one real row per path parameter."""

    facility_id: int
    usernames: dict[str, str]
    user_ids: dict[str, int]
    ids: dict[str, int]
    # Patients with no visit yet, for the stateful run's visits (one waiting visit per day).
    spare_patients: list[int] = field(default_factory=list)


def seed(session, code: str = "91001") -> Site:
    """A hospital with a patient examined (an order, a diagnosis, a bill paid in part, a
    charge), a drug in stock with a signed prescription, and a merge to undo."""
    place = billing_hospital(session, code=code)
    facility = place.facility
    users = {
        "admin": UserFactory(roles=(Role.ADMIN,), facility=facility),
        "receptionist": place.receptionist,
        "doctor": place.doctor,
        "nurse": place.nurse,
        "pharmacist": UserFactory(roles=(Role.PHARMACIST,), facility=facility),
        "cashier": place.cashier,
        "auditor": UserFactory(roles=(Role.AUDITOR,), facility=facility),
        "integration": place.lab,
    }
    icd, _later = icd10_lists(session)
    # Opened through the service, as the API would: its queue number comes from the room's
    # counter, which the fuzzer's own visits then continue.
    visit = visit_service.open_visit(
        session,
        Principal.for_user(place.receptionist),
        visit_service.VisitRequest(patient_id=PatientFactory().id, room_id=place.room.id),
    )
    doctor = Principal.for_user(place.doctor)
    encounter = encounter_service.start_examination(session, doctor, visit.id)
    order = encounter_service.add_order(session, doctor, encounter.id, "23.0075.1494")
    diagnosis = add_diagnosis(session, encounter, icd, "J06.9", main=True)
    bill = bills.build(session, visit).open_bill.bill
    paid = payments.take_payment(
        session, Principal.for_user(place.cashier), bill.id, PaymentMethod.CASH, 80_000
    )
    drug = make_drug(session, facility, f"AMO{code}")
    make_lot(session, facility, drug, "L1", local_today() + dt.timedelta(days=400), 100)
    rx = make_prescription(session, facility, [(drug, 10)], doctor=place.doctor)
    survivor, merged = PatientFactory(), PatientFactory()
    merge = patient_service.merge_patients(
        session, Principal.for_user(users["admin"]), survivor.id, merged.id
    )
    session.flush()
    charge = session.scalars(select(Charge).where(Charge.visit_id == visit.id)).first()
    ids = {
        "patient_id": visit.patient_id,
        "visit_id": visit.id,
        "room_id": place.room.id,
        "encounter_id": encounter.id,
        "order_id": order.id,
        "diagnosis_id": diagnosis.id,
        "prescription_id": rx.id,
        "bill_id": bill.id,
        "payment_id": getattr(paid, "id", None) or paid.payment.id,
        "charge_id": charge.id,
        "merge_id": merge.id,
    }
    return Site(
        facility_id=facility.id,
        usernames={role: user.username for role, user in users.items()},
        user_ids={role: user.id for role, user in users.items()},
        ids=ids,
        spare_patients=[PatientFactory().id for _ in range(12)],
    )


def mint_token(session, user_id: int) -> str:
    """A bearer token issued as POST /auth/token would, without argon2's cost per call."""
    from his.models import User

    user = session.get(User, user_id)
    raw, _token = auth.issue_token(session, user, dt.timedelta(hours=1))
    session.commit()
    return raw


def load_schema(app) -> Any:
    return schemathesis.openapi.from_wsgi(OPENAPI_PATH, app)


@dataclass
class Report:
    """What a fuzzing run did and found."""

    requests: int = 0
    operations: int = 0
    statuses: Counter = field(default_factory=Counter)
    by_operation: dict[str, Counter] = field(default_factory=dict)
    checks_passed: Counter = field(default_factory=Counter)
    checks_failed: Counter = field(default_factory=Counter)
    failures: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "operations": self.operations,
            "requests": self.requests,
            "stateful_requests": sum(
                sum(counts.values())
                for label, counts in self.by_operation.items()
                if label.startswith("stateful ")
            ),
            "failures": len(self.failures),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "checks": {
                check.__name__: {
                    "passed": self.checks_passed[check.__name__],
                    "failed": self.checks_failed[check.__name__],
                }
                for check in CHECKS
            },
            "notes": self.notes,
            "failure_details": self.failures,
        }

    def summary(self) -> str:
        return json.dumps({k: v for k, v in self.as_dict().items() if k != "failure_details"})


def _failure_text(error: BaseException) -> str:
    if isinstance(error, BaseExceptionGroup):
        return "\n".join(_failure_text(e) for e in error.exceptions)
    return f"{getattr(error, 'title', type(error).__name__)}: {str(error).strip()[:1500]}"


def validate(case, response, report: Report, label: str) -> None:
    """Runs each check on its own, so every check is counted and every failure kept."""
    report.requests += 1
    report.statuses[response.status_code] += 1
    report.by_operation.setdefault(label, Counter())[response.status_code] += 1
    for check in CHECKS:
        try:
            case.validate_response(response, checks=[check])
        except (AssertionError, BaseExceptionGroup) as error:
            report.checks_failed[check.__name__] += 1
            if len(report.failures) < 200:
                report.failures.append(
                    {
                        "operation": label,
                        "check": check.__name__,
                        "status": response.status_code,
                        "problem": _failure_text(error),
                        "request": case.as_curl_command(),
                        "body": response.text[:500],
                    }
                )
        else:
            report.checks_passed[check.__name__] += 1


# The role whose work an operation is, by its OpenAPI tag (and a few by path): most of
# each operation's cases run as that role, so they reach the view's logic, not its 403.
NATURAL_ROLE = {
    "auth": "admin",
    "facilities": "admin",
    "patients": "receptionist",
    "visits": "receptionist",
    "catalogs": "doctor",
    "encounters": "doctor",
    "prescriptions": "doctor",
    "stock": "pharmacist",
    "audit": "auditor",
    "billing": "cashier",
}
BY_PATH = (
    ("/merge", "admin"),
    ("/undo", "admin"),
    ("/result", "integration"),
    ("POST /api/v1/billing/params", "admin"),
    ("/dispens", "pharmacist"),
    ("/returns", "pharmacist"),
)
ANONYMOUS = "anonymous"


class Caller:
    """Who sends each request: two cases in three as the operation's own role, the third
    as the next of every role in turn (and anonymously), so each operation also meets the
    callers it must refuse, and their 401s and 403s are checked against the document."""

    def __init__(self, tokens: dict[str, str], fresh_token: Callable[[str], str]):
        self.tokens = tokens
        self.fresh_token = fresh_token
        self.others = [*sorted(tokens), ANONYMOUS]
        self.calls = 0
        self.roles_used: Counter = Counter()

    def natural_role(self, operation) -> str:
        for fragment, role in BY_PATH:
            if fragment in operation.label:
                return role
        tags = operation.tags or []
        return NATURAL_ROLE.get(tags[0], "admin") if tags else "admin"

    def headers(self, operation) -> dict[str, str]:
        self.calls += 1
        if self.calls % 3:
            role = self.natural_role(operation)
        else:
            role = self.others[(self.calls // 3) % len(self.others)]
        self.roles_used[role] += 1
        if role == ANONYMOUS:
            return {}
        if operation.label == LOGOUT:
            # Logging out revokes the token sent: each logout gets one of its own.
            return {"Authorization": "Bearer " + self.fresh_token(role)}
        return {"Authorization": "Bearer " + self.tokens[role]}


def _order(label: str) -> tuple[int, str]:
    # Logging in with made-up names (rate limits) and revoking tokens go last.
    return (1 if label in (TOKEN, LOGOUT) else 0, label)


def fuzz_operations(
    schema,
    caller: Caller,
    ids: dict[str, int],
    report: Report,
    *,
    max_examples: int,
    modes: tuple[GenerationMode, ...] = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE),
    seed: int | None = None,
    only: Callable[[str], bool] = lambda label: True,
) -> None:
    """Every operation of the document, ``max_examples`` cases per generation mode."""
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in sorted(operations, key=lambda op: _order(op.label)):
        if not only(operation.label):
            continue
        report.operations += 1
        path_names = [p.name for p in operation.path_parameters]
        known = {name: ids[name] for name in path_names if name in ids}
        for mode in modes:
            strategy = operation.as_strategy(generation_mode=mode)
            if known and mode is GenerationMode.POSITIVE:
                # Half the cases name seeded rows, so the view's logic runs, not just its 404.
                strategy = st.one_of(
                    strategy, operation.as_strategy(generation_mode=mode, path_parameters=known)
                )
            _run(strategy, operation.label, caller, report, max_examples, seed)


def _run(strategy, label: str, caller: Caller, report: Report, max_examples: int, seed) -> None:
    @hypothesis.given(case=strategy)
    @hypothesis.settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=seed is None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    def one(case):
        response = case.call(headers=caller.headers(case.operation))
        validate(case, response, report, label)

    if seed is not None:
        one = hypothesis.seed(seed)(one)
    try:
        one()
    except schemathesis.errors.SchemathesisError as error:
        # The document itself is at fault (a schema no case can be generated from).
        report.failures.append({"operation": label, "check": "schema", "problem": str(error)})


def fuzz_links(schema, caller: Caller, site: Site, report: Report, *, steps: int) -> None:
    """Follows the document's OpenAPI links as schemathesis's state machine chains them: a
    created patient is read, patched and card-checked; a created visit read, queued,
    examined and billed. Every other POST of a patient or a visit sends a known-good
    body (a new name; a seeded patient and room), so chains start from real rows too,
    not only from generated bodies the registration rules refuse."""
    linked = schema.include(path_regex="^/api/v1/(patients|visits|queues)")
    base = linked.as_state_machine()

    class Machine(base):  # type: ignore[misc, valid-type]
        def before_call(self, case):
            label = case.operation.label
            if not isinstance(case.body, dict):
                return
            # Chosen from the generated body itself, so a replayed case chooses the same.
            pick = zlib.crc32(json.dumps(case.body, sort_keys=True, default=str).encode())
            if pick % 2:
                return
            if label == "POST /api/v1/patients":
                case.body = {
                    "full_name": f"Nguyễn Văn {GIVEN_NAMES[pick % len(GIVEN_NAMES)]}",
                    "sex": "male",
                    "birth_date": f"19{50 + pick % 50}",
                    "allow_possible_duplicate": True,
                }
            elif label == "POST /api/v1/visits" and site.spare_patients:
                patient_id = site.spare_patients[pick % len(site.spare_patients)]
                case.body = {"patient_id": patient_id, "room_id": site.ids["room_id"]}

        def step(self, input):
            # "linked": the case's ids came from an earlier response through a link.
            self.prefix = "linked " if input.transition is not None and input.is_applied else ""
            return super().step(input)

        def get_call_kwargs(self, case):
            return {"headers": caller.headers(case.operation)}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            label = f"stateful {self.prefix}{case.operation.label}"
            validate(case, response, report, label)

    # Derandomized: the chains depend only on the document (a state machine run takes no seed).
    settings = hypothesis.settings(
        max_examples=steps,
        deadline=None,
        derandomize=True,
        database=None,
        stateful_step_count=6,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    try:
        Machine.run(settings=settings)
    except hypothesis.errors.FlakyStrategyDefinition as error:
        # The rows the scenarios create persist, so a replayed choice can find a link
        # that was not there before; hypothesis then stops. Requests made so far stand.
        report.notes.append(f"stateful run stopped early: {type(error).__name__}")
