"""BHYT claim files for the social-insurance assessment gateway (QĐ 4750/QĐ-BYT as amended by
QĐ 3176/QĐ-BYT): the tables XML0-XML5, our own XSD for each, the GIAMDINHHS envelope and the
facility's XML signature.

Pure Python (lxml, signxml, cryptography): no database, no Flask. Callers build a
:class:`~billing.claims.data.Claim` from their records and get signed bytes back::

    envelope = build_envelope(facility_code, claim, created)
    signed = sign_envelope(envelope, key_pem, cert_pem)

Every file is checked (``check_claim``) and validated against its schema before it is returned;
problems come back all at once in :class:`ClaimError`.
"""

from billing.claims.data import (
    BirthDate,
    CheckIn,
    Claim,
    CourseEntry,
    DrugLine,
    ResultLine,
    ServiceLine,
    Summary,
)
from billing.claims.envelope import build_envelope, read_envelope
from billing.claims.errors import ClaimError
from billing.claims.parse import read_table
from billing.claims.signing import make_test_certificate, sign_envelope, verify_envelope
from billing.claims.tables import build_check_in, build_table, check_claim, tables_for
from billing.claims.validate import SCHEMA_VERSION, validate_envelope, validate_table

__all__ = [
    "SCHEMA_VERSION",
    "BirthDate",
    "CheckIn",
    "Claim",
    "ClaimError",
    "CourseEntry",
    "DrugLine",
    "ResultLine",
    "ServiceLine",
    "Summary",
    "build_check_in",
    "build_envelope",
    "build_table",
    "check_claim",
    "make_test_certificate",
    "read_envelope",
    "read_table",
    "sign_envelope",
    "tables_for",
    "validate_envelope",
    "validate_table",
    "verify_envelope",
]
