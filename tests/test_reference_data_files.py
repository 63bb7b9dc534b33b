"""The reference CSV files in his/data are well formed and agree with each other."""

import csv
import datetime as dt
import re
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "his" / "data"


def _read(name: str) -> tuple[list[str], list[dict[str, str]]]:
    with (DATA / name).open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _digits(value: str, length: int) -> bool:
    return re.fullmatch(rf"\d{{{length}}}", value) is not None


def _clean_nfc(text: str) -> bool:
    return unicodedata.normalize("NFC", text) == text and " ".join(text.split()) == text


def _duplicates(keys) -> list:
    return [key for key, n in Counter(keys).items() if n > 1]


@pytest.fixture(scope="module")
def admin_units() -> list[dict[str, str]]:
    header, rows = _read("admin_units_2025.csv")
    assert header == ["level", "code", "name", "province_code"]
    return rows


@pytest.fixture(scope="module")
def legacy() -> list[dict[str, str]]:
    header, rows = _read("legacy_communes_2025.csv")
    assert header == [
        "old_commune_code",
        "old_commune_name",
        "old_district_code",
        "old_province_code",
        "new_commune_code",
        "new_province_code",
        "partial",
    ]
    return rows


def test_admin_units(admin_units):
    provinces = [r for r in admin_units if r["level"] == "province"]
    communes = [r for r in admin_units if r["level"] == "commune"]
    assert (len(provinces), len(communes), len(admin_units)) == (34, 3321, 3355)
    assert all(_digits(r["code"], 2) and r["province_code"] == r["code"] for r in provinces)
    assert all(_digits(r["code"], 5) for r in communes)
    assert not _duplicates((r["level"], r["code"]) for r in admin_units)
    assert all(r["name"] and _clean_nfc(r["name"]) for r in admin_units)
    province_codes = {r["code"] for r in provinces}
    assert {r["province_code"] for r in communes} == province_codes
    kinds = Counter(r["name"].split()[0] for r in communes)
    assert kinds == {"Xã": 2621, "Phường": 687, "Đặc": 13}
    assert {
        "level": "commune",
        "code": "30742",
        "name": "Phường Rạch Giá",
        "province_code": "91",
    } in (communes)


def test_legacy_communes(legacy, admin_units):
    communes = {r["code"]: r["province_code"] for r in admin_units if r["level"] == "commune"}
    assert len(legacy) > 10_000
    for r in legacy:
        assert _digits(r["old_commune_code"], 5), r
        assert _digits(r["old_district_code"], 3), r
        assert _digits(r["old_province_code"], 2), r
        assert _digits(r["new_commune_code"], 5), r
        assert r["partial"] in ("0", "1"), r
        assert _clean_nfc(r["old_commune_name"]), r
        assert communes.get(r["new_commune_code"]) == r["new_province_code"], r
    assert not _duplicates((r["old_commune_code"], r["new_commune_code"]) for r in legacy)
    # Each old commune has one name, district and province; partial means "several rows".
    by_old: dict[str, list[dict[str, str]]] = {}
    for r in legacy:
        by_old.setdefault(r["old_commune_code"], []).append(r)
    for rows in by_old.values():
        fields = ("old_commune_name", "old_district_code", "old_province_code")
        assert len({tuple(r[f] for f in fields) for r in rows}) == 1, rows
        assert {r["partial"] for r in rows} == {"1" if len(rows) > 1 else "0"}, rows
    district_province = {r["old_district_code"]: r["old_province_code"] for r in legacy}
    assert all(district_province[r["old_district_code"]] == r["old_province_code"] for r in legacy)


def test_bhyt_groups():
    header, rows = _read("bhyt_groups.csv")
    assert header == ["code", "benefit_level", "description", "valid_from", "valid_to", "source"]
    assert rows
    assert not _duplicates((r["code"], r["valid_from"]) for r in rows)
    for r in rows:
        assert re.fullmatch(r"[A-Z]{2}", r["code"]), r
        assert r["benefit_level"] in {"1", "2", "3", "4", "5"}, r
        assert _clean_nfc(r["description"]) and len(r["description"]) <= 300, r
        dt.date.fromisoformat(r["valid_from"])
        assert r["valid_to"] == "" or dt.date.fromisoformat(r["valid_to"]) > dt.date.fromisoformat(
            r["valid_from"]
        )
        assert r["source"] and len(r["source"]) <= 200, r
