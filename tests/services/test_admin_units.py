"""The 2025 units loaded by migration 0003, and pre-2025 addresses mapped onto them."""

import pytest
from sqlalchemy import func, select

from his.errors import ValidationFailed
from his.models import AdminUnit, BhytGroup, LegacyCommuneMap
from his.services.admin_units import ResolvedAddress, communes_of, resolve_address, unit_name
from his.text import fold_vi


def _count(session, *where):
    return session.scalar(select(func.count()).select_from(AdminUnit).where(*where))


def _refused(session, **codes) -> dict[str, list[str]]:
    with pytest.raises(ValidationFailed) as caught:
        resolve_address(session, **codes)
    assert caught.value.detail == "The address is not valid."
    return caught.value.errors


def test_the_2025_list_is_loaded(db_session):
    assert _count(db_session, AdminUnit.level == "province") == 34
    assert _count(db_session, AdminUnit.level == "commune") == 3321
    assert _count(db_session, AdminUnit.valid_to.is_not(None)) == 0
    assert db_session.scalar(select(func.count()).select_from(LegacyCommuneMap)) > 10_000
    groups = dict(db_session.execute(select(BhytGroup.code, BhytGroup.benefit_level)).all())
    assert (groups["TE"], groups["HT"], groups["QN"]) == (1, 3, 5)


def test_an_giang_has_102_communes_in_vietnamese_order(db_session):
    communes = communes_of(db_session, "91")
    assert len(communes) == 102
    assert ("31078", "Đặc khu Phú Quốc") in communes
    assert ("30742", "Phường Rạch Giá") in communes
    names = [name for _, name in communes]
    assert names == sorted(names, key=fold_vi)
    assert communes_of(db_session, "99") == []


def test_unit_names(db_session):
    assert unit_name(db_session, "province", "91") == "Tỉnh An Giang"
    assert unit_name(db_session, "commune", "30742") == "Phường Rạch Giá"
    assert unit_name(db_session, "commune", "91") is None


def test_a_commune_fills_in_its_province(db_session):
    assert resolve_address(db_session, commune_code="30742") == ResolvedAddress(
        province_code="91",
        commune_code="30742",
        legacy_province_code=None,
        legacy_district_code=None,
        legacy_commune_code=None,
    )
    both = resolve_address(db_session, province_code="91", commune_code="30742")
    assert (both.province_code, both.commune_code) == ("91", "30742")


def test_nothing_given_resolves_to_nothing(db_session):
    assert resolve_address(db_session, province_code=" ") == ResolvedAddress(
        None, None, None, None, None
    )


def test_a_commune_in_another_province_is_refused(db_session):
    errors = _refused(db_session, province_code="01", commune_code="30742")
    assert errors == {"commune_code": ["Phường Rạch Giá (30742) is not in Thành phố Hà Nội."]}


@pytest.mark.parametrize(
    ("codes", "field", "message"),
    [
        ({"province_code": "99"}, "province_code", "No province has the code 99."),
        ({"commune_code": "99999"}, "commune_code", "No commune has the code 99999."),
        (
            {"legacy_province_code": "99"},
            "legacy_province_code",
            "No pre-2025 province has the code 99.",
        ),
        (
            {"legacy_district_code": "999"},
            "legacy_district_code",
            "No pre-2025 district has the code 999.",
        ),
        (
            {"legacy_commune_code": "99999"},
            "legacy_commune_code",
            "No pre-2025 commune has the code 99999.",
        ),
    ],
)
def test_unknown_codes_are_refused(db_session, codes, field, message):
    assert _refused(db_session, **codes) == {field: [message]}


def test_an_old_kien_giang_commune_maps_to_its_new_commune(db_session):
    # Phường Vĩnh Thanh, Rạch Giá city, Kiên Giang (91) became part of Phường Rạch Giá.
    resolved = resolve_address(
        db_session,
        legacy_province_code="91",
        legacy_district_code="899",
        legacy_commune_code="30733",
    )
    assert resolved == ResolvedAddress(
        province_code="91",
        commune_code="30742",
        legacy_province_code="91",
        legacy_district_code="899",
        legacy_commune_code="30733",
    )


def test_an_old_an_giang_commune_maps_into_the_new_an_giang(db_session):
    # Phường Mỹ Bình, Long Xuyên, old An Giang (89) → Phường Long Xuyên, new An Giang (91).
    resolved = resolve_address(db_session, legacy_province_code="89", legacy_commune_code="30280")
    assert (resolved.province_code, resolved.commune_code) == ("91", "30307")
    assert resolved.legacy_province_code == "89"


def test_a_split_commune_lists_its_candidates(db_session):
    errors = _refused(db_session, legacy_district_code="884", legacy_commune_code="30334")
    assert errors == {
        "commune_code": [
            "Xã Vĩnh Châu (30334) was split between several communes; choose one: "
            "Phường Châu Đốc (30316), Phường Vĩnh Tế (30325)."
        ]
    }


def test_the_receptionists_choice_among_the_candidates_is_kept(db_session):
    resolved = resolve_address(db_session, commune_code="30325", legacy_commune_code="30334")
    assert (resolved.province_code, resolved.commune_code) == ("91", "30325")
    assert resolved.legacy_commune_code == "30334"


def test_a_commune_that_is_not_a_successor_is_refused(db_session):
    errors = _refused(db_session, commune_code="30742", legacy_commune_code="30334")
    assert errors == {
        "commune_code": [
            "Xã Vĩnh Châu (30334) is now part of Phường Châu Đốc (30316), Phường Vĩnh Tế (30325)."
        ]
    }


def test_a_successor_in_another_province_is_refused(db_session):
    errors = _refused(db_session, province_code="01", legacy_commune_code="30733")
    assert errors == {
        "province_code": ["Phường Vĩnh Thanh (30733) is now part of Phường Rạch Giá (30742)."]
    }


def test_inconsistent_old_codes_are_refused(db_session):
    assert _refused(db_session, legacy_district_code="883", legacy_commune_code="30733") == {
        "legacy_commune_code": ["The pre-2025 commune 30733 was not in district 883."]
    }
    assert _refused(db_session, legacy_province_code="89", legacy_commune_code="30733") == {
        "legacy_commune_code": ["The pre-2025 commune 30733 was not in province 89."]
    }
    assert _refused(db_session, legacy_province_code="91", legacy_district_code="883") == {
        "legacy_district_code": ["The pre-2025 district 883 was not in province 91."]
    }


def test_an_old_district_alone_gives_the_new_province(db_session):
    resolved = resolve_address(db_session, legacy_province_code="89", legacy_district_code="883")
    assert (resolved.province_code, resolved.commune_code) == ("91", None)
    assert _refused(db_session, province_code="01", legacy_district_code="883") == {
        "province_code": ["The pre-2025 district 883 is now in Tỉnh An Giang."]
    }
    assert _refused(db_session, commune_code="00004", legacy_province_code="89") == {
        "commune_code": ["The pre-2025 province 89 is now in Tỉnh An Giang."]
    }
