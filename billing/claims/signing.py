"""The facility's XML signature in CHUKYDONVI, its verification, and a test certificate.

An enveloped XML-DSig signature over the whole document (reference URI ""), RSA-SHA256 with a
SHA-256 digest, the certificate in KeyInfo/X509Data, placed in the document's CHUKYDONVI (the
GIAMDINHHS envelope, or an XML0 check-in file, which has its own).

Canonicalization: exclusive C14N 1.0 rather than signxml's default, C14N 1.1. Our documents
declare no namespace outside the signature, so both give the same bytes here; but the gateway's
verifier is not ours, and exclusive C14N is implemented by the common XML-DSig libraries (.NET's
SignedXml, Java's XML Signature, xmlsec) where C14N 1.1 is not (.NET's SignedXml lacks it).
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml import (
    CanonicalizationMethod,
    DigestAlgorithm,
    SignatureConfiguration,
    SignatureMethod,
    XMLSigner,
    XMLVerifier,
    methods,
)
from signxml.exceptions import SignXMLException

from billing.claims.errors import ClaimError
from billing.claims.render import SIGNATURE_PLACE, document_bytes
from billing.claims.validate import ENVELOPE, parser, schema_problems

DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
SIGNATURE_METHOD = SignatureMethod.RSA_SHA256
DIGEST = DigestAlgorithm.SHA256
C14N = CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0

# Root element -> the schema the signed document must still satisfy.
_SCHEMAS = {"GIAMDINHHS": ENVELOPE, "CHI_TIEU_TRANG_THAI_KCB": "XML0"}

TEST_CERTIFICATE_YEARS = 5


def sign_envelope(xml_bytes: bytes, key_pem: bytes, cert_pem: bytes) -> bytes:
    """The document signed by the facility, its signature in the (empty) CHUKYDONVI."""
    root = etree.fromstring(xml_bytes, parser())
    schema = _schema_of(root)
    place = root.find(SIGNATURE_PLACE)
    if place is None or len(place) or (place.text or "").strip():
        raise ClaimError([f"{root.tag}: no empty {SIGNATURE_PLACE} for the signature"])
    # signxml puts an enveloped signature where it finds this placeholder.
    etree.SubElement(
        place, etree.QName(DSIG_NS, "Signature"), Id="placeholder", nsmap={"ds": DSIG_NS}
    )
    signer = XMLSigner(
        method=methods.enveloped,
        signature_algorithm=SIGNATURE_METHOD,
        digest_algorithm=DIGEST,
        c14n_algorithm=C14N,
    )
    try:
        signed = signer.sign(root, key=key_pem, cert=cert_pem.decode("ascii"))
    except (SignXMLException, ValueError) as error:
        raise ClaimError([f"{root.tag}: cannot sign: {error}"]) from error
    signed_bytes = document_bytes(signed, indent=False)
    problems = schema_problems(schema, signed_bytes)
    if problems:
        raise ClaimError(problems)
    return signed_bytes


def verify_envelope(xml_bytes: bytes, cert_pem: bytes) -> bytes:
    """What the facility's certificate signed: the document without its signature. Use these
    bytes, not the input, from here on: only they are covered by the signature.

    Raises :class:`ClaimError` if the signature is missing, not in CHUKYDONVI, not RSA-SHA256
    over a SHA-256 digest, made with another key, or if any signed byte changed.
    """
    config = SignatureConfiguration(
        location=f"./{SIGNATURE_PLACE}/",
        expect_references=1,
        signature_methods=frozenset({SIGNATURE_METHOD}),
        digest_algorithms=frozenset({DIGEST}),
    )
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem)
        root = etree.fromstring(xml_bytes, parser())
        result = XMLVerifier().verify(root, x509_cert=certificate, expect_config=config)
    except (SignXMLException, ValueError, etree.XMLSyntaxError) as error:
        raise ClaimError([f"signature: {error}"]) from error
    return document_bytes(result.signed_xml, indent=False)


def make_test_certificate(facility_code: str, name: str) -> tuple[bytes, bytes]:
    """(private key PEM, self-signed certificate PEM) for demos and tests: RSA-2048, valid five
    years, subject CN = the facility's name, O and serialNumber = its code. Not for the gateway,
    which accepts only the certificate the facility registered there."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, facility_code),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, facility_code),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate a clock slightly behind
        .not_valid_after(now + dt.timedelta(days=365 * TEST_CERTIFICATE_YEARS + 1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, certificate.public_bytes(serialization.Encoding.PEM)


def _schema_of(root: etree._Element) -> str:
    if root.tag not in _SCHEMAS:
        raise ClaimError([f"{root.tag}: not a document the facility signs"])
    return _SCHEMAS[root.tag]
