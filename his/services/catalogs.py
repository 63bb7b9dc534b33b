"""Looking things up in the catalogs: by code on a date, and by accent-free text.

A catalog row is valid over a period; every look-up names the date it is for (the visit's
or the episode's), so an old record is read with the catalog of its own day.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import re
from importlib import resources

from sqlalchemy import and_, case, literal, or_, select
from sqlalchemy.orm import Session

from his.models import Drug, Icd10Code, Icd10Version, MedicalService
from his.text import fold_vi, nfc


def _valid_on(model, on: dt.date):
    return (model.valid_from <= on) & or_(model.valid_to.is_(None), model.valid_to >= on)


def icd10_version_on(session: Session, on: dt.date) -> Icd10Version | None:
    """The ICD-10 list in force on a date: of those valid then, the most recently started."""
    return session.scalars(
        select(Icd10Version)
        .where(_valid_on(Icd10Version, on))
        .order_by(Icd10Version.valid_from.desc(), Icd10Version.id.desc())
        .limit(1)
    ).first()


def icd10_code(session: Session, code: str, on: dt.date) -> Icd10Code | None:
    """The code as the list in force on ``on`` has it; ``code`` with or without the dot."""
    version = icd10_version_on(session, on)
    if version is None:
        return None
    return session.scalars(
        select(Icd10Code).where(
            Icd10Code.version_id == version.id, Icd10Code.code == normalise_icd10(code)
        )
    ).first()


def normalise_icd10(code: str) -> str:
    """``j189``, ``J18.9``, ``J18.9†`` → ``J18.9``."""
    raw = "".join(ch for ch in code.strip().upper() if ch.isalnum())
    return raw if len(raw) <= 3 else f"{raw[:3]}.{raw[3:]}"


def drug_by_code(session: Session, facility_id: int, code: str, on: dt.date) -> Drug | None:
    return session.scalars(
        select(Drug).where(
            Drug.facility_id == facility_id,
            Drug.code == code,
            Drug.active.is_(True),
            _valid_on(Drug, on),
        )
    ).first()


def service_by_code(
    session: Session, facility_id: int, code: str, on: dt.date
) -> MedicalService | None:
    return session.scalars(
        select(MedicalService).where(
            MedicalService.facility_id == facility_id,
            MedicalService.code == code,
            MedicalService.active.is_(True),
            _valid_on(MedicalService, on),
        )
    ).first()


# --- accent-free search -------------------------------------------------------------------

SEARCH_LIMIT_MAX = 100
_NON_WORD = re.compile(r"[^0-9a-z.]+")
_CODE_LIKE = re.compile(r"^[a-z][0-9]")


def search_text(*parts: str | None) -> str:
    """The stored search key: folded words separated by single spaces, punctuation dropped
    (so ``[cảm thường]`` is found by ``cam``), and one leading space so every word, the first
    included, is matched by ``LIKE '% word%'``."""
    words = _NON_WORD.sub(" ", " ".join(fold_vi(p) for p in parts if p)).split()
    return " " + " ".join(words)


def _query_words(q: str) -> list[str]:
    return [w.strip(".") for w in _NON_WORD.sub(" ", fold_vi(q)).split() if w.strip(".")]


def _words_match(column, words: list[str]):
    # Word prefixes, not substrings: "hong" finds "họng" but not "không".
    return and_(*(column.like(f"% {w}%") for w in words))


def _capped(limit: int) -> int:
    return max(1, min(int(limit), SEARCH_LIMIT_MAX))


def _code_prefix(q: str) -> str | None:
    """What a query typed as a code starts: ``j18`` → ``J18``, ``j189`` → ``J18.9``."""
    compact = fold_vi(q).replace(" ", "")
    if not _CODE_LIKE.match(compact):
        return None
    return normalise_icd10(compact)


def search_icd10(session: Session, q: str, on: dt.date, limit: int = 20) -> list[Icd10Code]:
    """Codes of the list in force on ``on`` whose code starts with ``q`` or whose titles
    contain every word of ``q`` (accents optional); code-prefix matches first, then by code."""
    version = icd10_version_on(session, on)
    words = _query_words(q)
    if version is None or not words:
        return []
    prefix = _code_prefix(q)
    conditions = [_words_match(Icd10Code.search_key, words)]
    if prefix:
        conditions.append(Icd10Code.code.like(f"{prefix}%"))
    by_prefix = Icd10Code.code.like(f"{prefix}%") if prefix else literal(False)
    return list(
        session.scalars(
            select(Icd10Code)
            .where(Icd10Code.version_id == version.id, or_(*conditions))
            .order_by(case((by_prefix, 0), else_=1), Icd10Code.code)
            .limit(_capped(limit))
        )
    )


def _search_facility_catalog(model, session: Session, facility_id: int, q: str, on, limit):
    words = _query_words(q)
    if model is Drug:
        # "acetaminophen" finds paracetamol: the key holds the canonical spelling.
        variants = _inn_variants()
        words = [variants.get(w, w) for w in words]
    if not words:
        return []
    compact = fold_vi(q).replace(" ", "").upper()
    by_prefix = model.code.startswith(compact, autoescape=True) if compact else literal(False)
    return list(
        session.scalars(
            select(model)
            .where(
                model.facility_id == facility_id,
                model.active.is_(True),
                _valid_on(model, on),
                or_(_words_match(model.search_key, words), by_prefix),
            )
            .order_by(case((by_prefix, 0), else_=1), model.code)
            .limit(_capped(limit))
        )
    )


def search_drugs(
    session: Session, facility_id: int, q: str, on: dt.date, limit: int = 20
) -> list[Drug]:
    """The facility's drugs valid on ``on`` by code prefix or by words of the active
    ingredient (any INN spelling), brand or national code."""
    return _search_facility_catalog(Drug, session, facility_id, q, on, limit)


def search_services(
    session: Session, facility_id: int, q: str, on: dt.date, limit: int = 20
) -> list[MedicalService]:
    """The facility's services valid on ``on`` by code prefix or by words of the name."""
    return _search_facility_catalog(MedicalService, session, facility_id, q, on, limit)


# --- active ingredients ---------------------------------------------------------------------

# Salt, hydrate and "as" words: "Amlodipin (dưới dạng amlodipin besylat)" is amlodipine.
_SALT_WORDS = frozenset(
    [
        "acid",
        "acetat",
        "acetate",
        "besilat",
        "besylat",
        "besylate",
        "bromid",
        "bromide",
        "butylbromid",
        "butylbromide",
        "carbonat",
        "carbonate",
        "citrat",
        "citrate",
        "clorid",
        "chloride",
        "dihydrat",
        "dihydrate",
        "fumarat",
        "fumarate",
        "hcl",
        "hydrobromid",
        "hydrobromide",
        "hydroclorid",
        "hydrochlorid",
        "hydrochloride",
        "kali",
        "maleat",
        "maleate",
        "mesilat",
        "mesylat",
        "mesylate",
        "monohydrat",
        "monohydrate",
        "natri",
        "phosphat",
        "phosphate",
        "potassium",
        "sodium",
        "succinat",
        "succinate",
        "sulfat",
        "sulfate",
        "sulphate",
        "tartrat",
        "tartrate",
        "trihydrat",
        "trihydrate",
        "dihydroclorid",
        "dihydrochlorid",
        "dihydrochloride",
        "propionat",
        "propionate",
        "furoat",
        "furoate",
        "gluconat",
        "gluconate",
        "hydroxyd",
        "hydroxid",
        "hydroxide",
        "lactat",
        "lactate",
        "hydrat",
        "hydrate",
    ]
)
_PARENTHESES = re.compile(r"\([^)]*\)|\[[^\]]*\]")
_UNIT = r"(?:mg|g|mcg|µg|μg|ug|ml|l|iu|ui|dvqt|%|lieu|vien|goi|ong)"
# Folded text: "500 mg", "10mg/ml", "0,5 %", "1.000.000 ĐVQT".
_STRENGTH = re.compile(rf"\b\d[\d.,]*\s*{_UNIT}?(?:\s*/\s*[\d.,]*\s*{_UNIT})?(?![a-z])")
_UNIT_ONLY = re.compile(rf"^(?:{_UNIT}\s*)+$")
# Words around an allergy as people record it: "dị ứng với amoxicilin", "allergic to …".
_FILLER = re.compile(r"\b(?:di ung|allergic to|allergy to|allergy|thuoc|voi)\b")
# "nhóm" (a drug group) folds to the same letters as "nhôm" (aluminium), so it is dropped
# before folding, while the accents still tell them apart.
_GROUP_WORD = re.compile(r"\b(?:nhóm|group of|class of)\b")
_SEPARATORS = re.compile(r"\s*(?:\+|,|;|/| và | and )\s*")


@functools.cache
def _inn_variants() -> dict[str, str]:
    text = resources.files("his.data").joinpath("inn_spellings.csv").read_text("utf-8")
    return {
        " ".join(row["variant"].split()): " ".join(row["canonical"].split())
        for row in csv.DictReader(io.StringIO(text))
    }


def _one_ingredient(part: str) -> list[str]:
    words = part.split()
    kept = [w for w in words if w not in _SALT_WORDS]
    # "Natri clorid" is all salt words: it is then the ingredient itself.
    phrase = " ".join(kept or words)
    variants = _inn_variants()
    canonical = variants.get(phrase) or " ".join(variants.get(w, w) for w in phrase.split())
    # A combination known by one name (co-trimoxazole) stands for each of its ingredients.
    return canonical.split(" + ")


def ingredient_keys(text: str) -> frozenset[str]:
    """The active ingredients a drug or an allergy text names, one key each: folded, without
    strengths, salt words or bracketed remarks, and with Vietnamese/English INN spellings
    reduced to one (``Amoxicilin`` = ``Amoxicillin``); "A + B" gives both."""
    folded = fold_vi(_GROUP_WORD.sub(" ", _PARENTHESES.sub(" ", nfc(text or "").casefold())))
    folded = _FILLER.sub(" ", _STRENGTH.sub(" ", folded))
    keys = set()
    for part in _SEPARATORS.split(f" {folded} "):
        cleaned = " ".join(re.sub(r"[^0-9a-z -]+", " ", part).split())
        if cleaned and not _UNIT_ONLY.match(cleaned):
            keys.update(_one_ingredient(cleaned))
    return frozenset(keys)


@functools.cache
def _allergy_groups() -> tuple[dict[str, frozenset[str]], dict[str, str]]:
    """From ``allergy_groups.csv``: each ingredient key's groups, and each way of writing a
    group's name → the group. Values go through :func:`ingredient_keys` like the texts
    they are compared with."""
    text = resources.files("his.data").joinpath("allergy_groups.csv").read_text("utf-8")
    members: dict[str, set[str]] = {}
    names: dict[str, str] = {}
    for row in csv.DictReader(io.StringIO(text)):
        for key in ingredient_keys(row["value"]):
            if row["kind"] == "member":
                members.setdefault(key, set()).add(row["group"])
            else:
                names[key] = row["group"]
    return {k: frozenset(v) for k, v in members.items()}, names


def drug_groups(keys: frozenset[str]) -> frozenset[str]:
    """The groups (penicillins, cephalosporins, NSAIDs, …) these ingredients belong to."""
    members, _names = _allergy_groups()
    return frozenset(g for key in keys for g in members.get(key, ()))


def allergy_groups(keys: frozenset[str]) -> frozenset[str]:
    """The groups an allergy names ("dị ứng nhóm penicilin") or whose member it names: an
    allergy to amoxicillin is an allergy to the penicillins."""
    _members, names = _allergy_groups()
    return drug_groups(keys) | {names[key] for key in keys if key in names}


def ingredient_key(text: str) -> str:
    """The stored form of :func:`ingredient_keys`: sorted keys joined by ``+``."""
    return "+".join(sorted(ingredient_keys(text)))
