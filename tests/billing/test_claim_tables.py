"""The claim tables XML0-XML5: written in the schemas' order and formats, validated by our XSDs,
read back field by field; claims with wrong amounts or values refused; the XSDs shown to fail."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import types
import typing
from decimal import Decimal as D

import pytest
from lxml import etree

from billing.claims import (
    BirthDate,
    CheckIn,
    ClaimError,
    CourseEntry,
    DrugLine,
    ResultLine,
    ServiceLine,
    Summary,
    build_check_in,
    build_table,
    check_claim,
    read_table,
    tables_for,
    validate_table,
)
from billing.claims import formats as f
from billing.claims.layout import ROW_NUMBER, layout
from billing.claims.validate import schema_problems
from tests.billing.test_claim_samples import (
    INPATIENT_MA_LK,
    OUTPATIENT_MA_LK,
    VN,
    inpatient_claim,
    outpatient_check_in,
    outpatient_claim,
)

ROWS = {
    "XML0": CheckIn,
    "XML1": Summary,
    "XML2": DrugLine,
    "XML3": ServiceLine,
    "XML4": ResultLine,
    "XML5": CourseEntry,
}

# The Python type of each value type of types.xsd.
PYTHON_TYPES = {
    "Text": str,
    "Code": str,
    "CodeList": tuple[str, ...],
    "Time": dt.datetime,
    "Date": dt.date,
    "DateList": tuple[dt.date, ...],
    "BirthDate": BirthDate,
    "Integer": int,
    "Money": D,
    "Quantity": D,
    "UnitPrice": D,
    "Weight": D,
    "Percent": D,
}


def problems_of(error: pytest.ExceptionInfo[ClaimError]) -> str:
    return "\n".join(error.value.problems)


# --- the dataclasses follow the schemas ----------------------------------------------------------


@pytest.mark.parametrize("kind", list(ROWS))
def test_dataclass_fields_are_the_schema_fields_in_order_with_matching_types(kind):
    row_type = ROWS[kind]
    fields = [field for field in layout(kind).fields if field.tag != ROW_NUMBER]
    assert [field.name for field in dataclasses.fields(row_type)] == [
        field.attribute for field in fields
    ]
    hints = typing.get_type_hints(row_type)
    defaults = {field.name: field.default for field in dataclasses.fields(row_type)}
    for field in fields:
        hint = hints[field.attribute]
        optional = isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)
        base = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
        assert base == PYTHON_TYPES[field.kind], field.tag
        if field.required:
            assert not optional, f"{kind} {field.tag} is required: no None"
        else:
            assert optional or defaults[field.attribute] == (), f"{kind} {field.tag} is optional"


def test_the_layouts_count_the_fields_of_the_tables():
    counts = {kind: len(layout(kind).fields) for kind in ROWS}
    assert counts == {"XML0": 26, "XML1": 66, "XML2": 39, "XML3": 47, "XML4": 12, "XML5": 9}


# --- the outpatient visit, table by table -----------------------------------------------------


def test_an_outpatient_visit_sends_xml1_to_xml4_and_never_xml0():
    assert tables_for(outpatient_claim()) == ["XML1", "XML2", "XML3", "XML4"]


def test_xml1_reads_back_field_by_field_in_order():
    xml = build_table("XML1", outpatient_claim())
    assert xml.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<TONG_HOP>')
    validate_table("XML1", xml)
    [row] = read_table("XML1", xml)
    assert list(row.items()) == [
        ("MA_LK", OUTPATIENT_MA_LK),
        ("STT", "1"),
        ("MA_BN", "BN0000123"),
        ("HO_TEN", "Nguyễn Thị Hằng"),
        ("SO_CCCD", "001148012345"),
        ("NGAY_SINH", "194800000000"),
        ("GIOI_TINH", "2"),
        ("NHOM_MAU", ""),
        ("MA_QUOCTICH", "000"),
        ("MA_DANTOC", "01"),
        ("MA_NGHE_NGHIEP", "00000"),
        ("DIA_CHI", "Số 12 phố Hàng Bông, phường Hoàn Kiếm, Hà Nội"),
        ("MATINH_CU_TRU", "01"),
        ("MAHUYEN_CU_TRU", ""),
        ("MAXA_CU_TRU", "00070"),
        ("DIEN_THOAI", "0912345678"),
        ("MA_THE_BHYT", "HT3010123456789;GD4010198765432"),
        ("MA_DKBD", "01001;01002"),
        ("GT_THE_TU", "20260101;20261101"),
        ("GT_THE_DEN", "20261231;20271031"),
        ("NGAY_MIEN_CCT", ""),
        ("LY_DO_VV", "Ho, sốt 3 ngày"),
        ("LY_DO_VNT", ""),
        ("MA_LY_DO_VNT", ""),
        ("CHAN_DOAN_VAO", ""),
        ("CHAN_DOAN_RV", "Viêm họng cấp; tăng huyết áp; đái tháo đường típ 2"),
        ("MA_BENH_CHINH", "J02.9"),
        ("MA_BENH_KT", "I10;E11.9"),
        ("MA_BENH_YHCT", ""),
        ("MA_PTTT_QT", ""),
        ("MA_DOITUONG_KCB", "1.11"),
        ("MA_NOI_DI", ""),
        ("MA_NOI_DEN", ""),
        ("MA_TAI_NAN", ""),
        ("NGAY_VAO", "202611270730"),
        ("NGAY_VAO_NOI_TRU", ""),
        ("NGAY_RA", "202611271430"),
        ("GIAY_CHUYEN_TUYEN", ""),
        ("SO_NGAY_DTRI", "0"),
        ("PP_DIEU_TRI", ""),
        ("KET_QUA_DTRI", "1"),
        ("MA_LOAI_RV", "1"),
        ("GHI_CHU", ""),
        ("NGAY_TTOAN", ""),
        ("T_THUOC", "36250.00"),
        ("T_VTYT", "2501.00"),
        ("T_TONGCHI_BV", "135551.00"),
        ("T_TONGCHI_BH", "119926.00"),
        ("T_BNTT", "15625.00"),
        ("T_BNCCT", "23985.20"),
        ("T_BHTT", "95940.80"),
        ("T_NGUONKHAC", "0.00"),
        ("T_BHTT_GDV", "0.00"),
        ("NAM_QT", "2026"),
        ("THANG_QT", "11"),
        ("MA_LOAI_KCB", "01"),
        ("MA_KHOA", "K01;K02"),
        ("MA_CSKCB", "01001"),
        ("MA_KHUVUC", ""),
        ("CAN_NANG", ""),
        ("CAN_NANG_CON", ""),
        ("NAM_NAM_LIEN_TUC", ""),
        ("NGAY_TAI_KHAM", ""),
        ("MA_HSBA", ""),
        ("MA_TTDV", "0123456789"),
        ("DU_PHONG", ""),
    ]


def test_xml2_reads_back_field_by_field_with_text_escaped():
    xml = build_table("XML2", outpatient_claim())
    validate_table("XML2", xml)
    # lxml escaped the dosage text, which came back unchanged.
    escaped = "<LIEU_DUNG>Uống 1 viên/lần &amp; sau ăn &lt;30 phút&gt;</LIEU_DUNG>"
    assert escaped.encode() in xml
    first, second = read_table("XML2", xml)
    assert (first["STT"], first["SO_LUONG"], first["DON_GIA"], first["THANH_TIEN_BV"]) == (
        "1",
        "10.000",
        "500.000",
        "5000.00",
    )
    assert list(second.items()) == [
        ("MA_LK", OUTPATIENT_MA_LK),
        ("STT", "2"),
        ("MA_THUOC", "40.153"),
        ("MA_PP_CHEBIEN", ""),
        ("MA_CSKCB_THUOC", ""),
        ("MA_NHOM", "4"),
        ("TEN_THUOC", "Amoxicilin 500mg"),
        ("DON_VI_TINH", "Viên"),
        ("HAM_LUONG", "500mg"),
        ("DUONG_DUNG", "1.01"),
        ("DANG_BAO_CHE", ""),
        ("LIEU_DUNG", "Uống 1 viên/lần & sau ăn <30 phút>"),
        ("CACH_DUNG", ""),
        ("SO_DANG_KY", "VD-67890-12"),
        ("TT_THAU", ""),
        ("PHAM_VI", "1"),
        ("TYLE_TT_BH", "50"),
        ("SO_LUONG", "2.500"),
        ("DON_GIA", "12500.000"),
        ("THANH_TIEN_BV", "31250.00"),
        ("THANH_TIEN_BH", "15625.00"),
        ("T_NGUONKHAC_NSNN", "0.00"),
        ("T_NGUONKHAC_VTNN", "0.00"),
        ("T_NGUONKHAC_VTTN", "0.00"),
        ("T_NGUONKHAC_CL", "0.00"),
        ("T_NGUONKHAC", "0.00"),
        ("MUC_HUONG", "80"),
        ("T_BNTT", "15625.00"),
        ("T_BNCCT", "3125.00"),
        ("T_BHTT", "12500.00"),
        ("MA_KHOA", "K01"),
        ("MA_BAC_SI", "001234/HNO-CCHN"),
        ("MA_DICH_VU", ""),
        ("NGAY_YL", "202611270940"),
        ("NGAY_TH_YL", ""),
        ("MA_PTTT", "1"),
        ("NGUON_CTRA", "1"),
        ("VET_THUONG_TP", ""),
        ("DU_PHONG", ""),
    ]


def test_xml3_reads_back_field_by_field_and_the_supply_line():
    xml = build_table("XML3", outpatient_claim())
    validate_table("XML3", xml)
    exam, blood_count, syringe = read_table("XML3", xml)
    assert [row["STT"] for row in (exam, blood_count, syringe)] == ["1", "2", "3"]
    assert (exam["MA_DICH_VU"], exam["TEN_DICH_VU"], exam["NGAY_YL"]) == (
        "02.1896",
        "Khám Nội",
        "202611270735",
    )
    assert (blood_count["NGAY_TH_YL"], blood_count["NGAY_KQ"], blood_count["MA_MAY"]) == (
        "202611270815",
        "202611270915",
        "XN.1.01234",
    )
    assert list(syringe.items()) == [
        ("MA_LK", OUTPATIENT_MA_LK),
        ("STT", "3"),
        ("MA_DICH_VU", ""),
        ("MA_PTTT_QT", ""),
        ("MA_VAT_TU", "N03.02.010"),
        ("MA_NHOM", "10"),
        ("GOI_VTYT", ""),
        ("TEN_VAT_TU", "Bơm tiêm nhựa 5ml"),
        ("TEN_DICH_VU", ""),
        ("MA_XANG_DAU", ""),
        ("DON_VI_TINH", "Cái"),
        ("PHAM_VI", "1"),
        ("SO_LUONG", "2.000"),
        ("DON_GIA_BV", "1250.500"),
        ("DON_GIA_BH", "1250.500"),
        ("TT_THAU", ""),
        ("TYLE_TT_DV", "100"),
        ("TYLE_TT_BH", "100"),
        ("THANH_TIEN_BV", "2501.00"),
        ("THANH_TIEN_BH", "2501.00"),
        ("T_TRANTT", ""),
        ("MUC_HUONG", "80"),
        ("T_NGUONKHAC_NSNN", "0.00"),
        ("T_NGUONKHAC_VTNN", "0.00"),
        ("T_NGUONKHAC_VTTN", "0.00"),
        ("T_NGUONKHAC_CL", "0.00"),
        ("T_NGUONKHAC", "0.00"),
        ("T_BNTT", "0.00"),
        ("T_BNCCT", "500.20"),
        ("T_BHTT", "2000.80"),
        ("MA_KHOA", "K01"),
        ("MA_GIUONG", ""),
        ("MA_BAC_SI", "001234/HNO-CCHN"),
        ("NGUOI_THUC_HIEN", ""),
        ("MA_BENH", ""),
        ("MA_BENH_YHCT", ""),
        ("NGAY_YL", "202611270800"),
        ("NGAY_TH_YL", ""),
        ("NGAY_KQ", ""),
        ("MA_PTTT", "1"),
        ("VET_THUONG_TP", ""),
        ("PP_VO_CAM", ""),
        ("VI_TRI_TH_DVKT", ""),
        ("MA_MAY", ""),
        ("MA_HIEU_SP", ""),
        ("TAI_SU_DUNG", ""),
        ("DU_PHONG", ""),
    ]


def test_xml4_reads_back_field_by_field():
    xml = build_table("XML4", outpatient_claim())
    validate_table("XML4", xml)
    white_cells, red_cells = read_table("XML4", xml)
    assert white_cells["STT"] == "1"
    assert (white_cells["MA_CHI_SO"], white_cells["GIA_TRI"]) == ("WBC", "6.5")
    assert list(red_cells.items()) == [
        ("MA_LK", OUTPATIENT_MA_LK),
        ("STT", "2"),
        ("MA_DICH_VU", "22.0120.1370"),
        ("MA_CHI_SO", "RBC"),
        ("TEN_CHI_SO", "Số lượng hồng cầu"),
        ("GIA_TRI", "4.2"),
        ("DON_VI_DO", "T/L"),
        ("MO_TA", ""),
        ("KET_LUAN", "Bình thường"),
        ("NGAY_KQ", "202611270915"),
        ("MA_BS_DOC_KQ", "005678/HNO-CCHN"),
        ("DU_PHONG", ""),
    ]


@pytest.mark.parametrize("claim", [outpatient_claim(), inpatient_claim()], ids=["out", "in"])
def test_header_totals_equal_the_sums_of_the_parsed_details(claim):
    [header] = read_table("XML1", build_table("XML1", claim))
    drugs = read_table("XML2", build_table("XML2", claim))
    services = read_table("XML3", build_table("XML3", claim))
    lines = drugs + services

    def total(rows, tag):
        return sum((D(row[tag]) for row in rows), D(0))

    assert D(header["T_THUOC"]) == total(drugs, "THANH_TIEN_BV")
    supplies = [row for row in services if row["MA_NHOM"] in {"10", "11"}]
    assert D(header["T_VTYT"]) == total(supplies, "THANH_TIEN_BV")
    assert D(header["T_TONGCHI_BV"]) == total(lines, "THANH_TIEN_BV")
    assert D(header["T_TONGCHI_BH"]) == total(lines, "THANH_TIEN_BH")
    for tag in ("T_BNTT", "T_BNCCT", "T_BHTT", "T_NGUONKHAC"):
        assert D(header[tag]) == total(lines, tag), tag
    assert D(header["T_BHTT"]) == D(header["T_TONGCHI_BH"]) - D(header["T_BNCCT"])
    for row in lines:
        assert row["MA_LK"] == header["MA_LK"]


# --- the inpatient episode --------------------------------------------------------------------


def test_an_inpatient_episode_sends_its_clinical_course_as_xml5():
    claim = inpatient_claim()
    assert tables_for(claim) == ["XML1", "XML2", "XML3", "XML5"]
    [header] = read_table("XML1", build_table("XML1", claim))
    assert (header["NGAY_SINH"], header["NGAY_VAO"], header["NGAY_VAO_NOI_TRU"]) == (
        "199005070000",
        "202611200800",
        "202611200910",
    )
    assert (header["NGAY_RA"], header["SO_NGAY_DTRI"], header["MA_LOAI_KCB"]) == (
        "202611251000",
        "6",
        "03",
    )
    assert (header["CAN_NANG"], header["MA_HSBA"], header["MA_THE_BHYT"]) == (
        "62.50",
        "BA-2026-0045",
        "DN4010112233445",
    )
    [beds] = read_table("XML3", build_table("XML3", claim))
    assert (beds["MA_GIUONG"], beds["SO_LUONG"], beds["DON_GIA_BV"]) == (
        "H001",
        "5.000",
        "215000.000",
    )
    xml = build_table("XML5", claim)
    validate_table("XML5", xml)
    rows = read_table("XML5", xml)
    assert [row["STT"] for row in rows] == ["1", "2", "3"]
    assert list(rows[1].items()) == [
        ("MA_LK", INPATIENT_MA_LK),
        ("STT", "2"),
        ("DIEN_BIEN_LS", "Hết sốt, còn ho khạc đờm"),
        ("GIAI_DOAN_BENH", ""),
        ("HOI_CHAN", "Hội chẩn khoa: tiếp tục kháng sinh"),
        ("PHAU_THUAT", ""),
        ("THOI_DIEM_DBLS", "202611220800"),
        ("NGUOI_THUC_HIEN", "002345/HNO-CCHN"),
        ("DU_PHONG", ""),
    ]


def test_a_table_the_claim_has_no_rows_for_is_refused():
    with pytest.raises(ClaimError, match="XML4: the claim has no rows"):
        build_table("XML4", inpatient_claim())


# --- the check-in file ------------------------------------------------------------------------


def test_the_check_in_file_reads_back_and_keeps_a_place_for_its_signature():
    xml = build_check_in(outpatient_check_in())
    assert build_table("XML0", outpatient_claim()) == xml
    validate_table("XML0", xml)
    root = etree.fromstring(xml)
    assert [child.tag for child in root] == ["DSACH_TRANG_THAI_KCB", "CHUKYDONVI"]
    assert len(root.find("CHUKYDONVI")) == 0
    [row] = read_table("XML0", xml)
    assert list(row.items()) == [
        ("MA_LK", OUTPATIENT_MA_LK),
        ("STT", "1"),
        ("MA_BN", "BN0000123"),
        ("HO_TEN", "Nguyễn Thị Hằng"),
        ("SO_CCCD", "001148012345"),
        ("NGAY_SINH", "194800000000"),
        ("GIOI_TINH", "2"),
        ("MA_THE_BHYT", "HT3010123456789;GD4010198765432"),
        ("MA_DKBD", "01001;01002"),
        ("GT_THE_TU", "20260101;20261101"),
        ("GT_THE_DEN", "20261231;20271031"),
        ("MA_DOITUONG_KCB", "1.11"),
        ("NGAY_VAO", "202611270730"),
        ("NGAY_VAO_NOI_TRU", ""),
        ("LY_DO_VNT", ""),
        ("MA_LY_DO_VNT", ""),
        ("MA_LOAI_KCB", "01"),
        ("MA_CSKCB", "01001"),
        ("MA_DICH_VU", "02.1896"),
        ("TEN_DICH_VU", "Khám Nội"),
        ("MA_THUOC", ""),
        ("TEN_THUOC", ""),
        ("MA_VAT_TU", ""),
        ("TEN_VAT_TU", ""),
        ("NGAY_YL", "202611270735"),
        ("DU_PHONG", ""),
    ]


def test_no_check_in_for_emergencies():
    emergency = dataclasses.replace(outpatient_check_in(), ma_doituong_kcb="2")
    with pytest.raises(ClaimError, match=r"XML0: not sent for emergencies \(MA_DOITUONG_KCB 2\)"):
        build_check_in(emergency)


def test_the_check_in_names_its_first_charge_with_one_pair():
    two = dataclasses.replace(outpatient_check_in(), ma_thuoc="40.48", ten_thuoc="Paracetamol")
    half = dataclasses.replace(outpatient_check_in(), ten_dich_vu=None)
    for check_in in (two, half):
        with pytest.raises(ClaimError, match="XML0: name the first charge with one pair"):
            build_check_in(check_in)


def test_xml0_of_a_claim_without_a_check_in_is_refused():
    claim = dataclasses.replace(outpatient_claim(), check_in=None)
    with pytest.raises(ClaimError, match="XML0: the claim has no check-in record"):
        build_table("XML0", claim)


# --- formats ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("birth", "written"),
    [
        (BirthDate(1948), "194800000000"),
        (BirthDate(1948, 3), "194803000000"),
        (BirthDate(1990, 5, 7), "199005070000"),
        (BirthDate(2026, 11, 20, 6, 5), "202611200605"),
        (BirthDate.of(dt.date(1990, 5, 7)), "199005070000"),
        (BirthDate.of(dt.datetime(2026, 11, 20, 23, 59)), "202611202359"),  # noqa: DTZ001
        (BirthDate.of(types.SimpleNamespace(year=1948, month=None, day=None)), "194800000000"),
    ],
)
def test_birth_dates_have_12_characters_with_zeros_for_what_is_unknown(birth, written):
    assert f.birth_date12(birth) == written


@pytest.mark.parametrize(
    "parts",
    [(1948, None, 5), (2026, 2, 30), (1948, 13), (1948, 3, None, 10), (2026, 1, 1, None, 5)],
)
def test_impossible_birth_dates_are_refused(parts):
    with pytest.raises(ValueError):
        BirthDate(*parts)


def test_times_are_written_in_vietnam_time():
    assert f.time12(dt.datetime(2026, 11, 27, 7, 30, tzinfo=dt.UTC)) == "202611271430"
    assert f.time12(dt.datetime(2026, 12, 31, 20, 0, tzinfo=dt.UTC)) == "202701010300"
    with pytest.raises(ValueError, match="no time zone"):
        f.time12(dt.datetime(2026, 11, 27, 14, 30))  # noqa: DTZ001
    assert f.date8(dt.date(2026, 1, 1)) == "20260101"
    with pytest.raises(TypeError):
        f.date8(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))


@pytest.mark.parametrize(
    ("writer", "value", "written"),
    [
        (f.money, D("12500"), "12500.00"),
        (f.money, D("2000.8"), "2000.80"),
        (f.money, D("1E+3"), "1000.00"),
        (f.money, 0, "0.00"),
        (f.quantity, D("2.5"), "2.500"),
        (f.unit_price, D("12500"), "12500.000"),
        (f.unit_price, D("1250.5"), "1250.500"),
        (f.weight, D("62.5"), "62.50"),
        (f.percent, D("100.00"), "100"),
        (f.percent, D("1E+2"), "100"),
        (f.percent, D("47.50"), "47.5"),
        (f.percent, 80, "80"),
    ],
)
def test_decimals_have_a_point_and_fixed_places(writer, value, written):
    assert writer(value) == written


@pytest.mark.parametrize("writer", [f.money, f.quantity, f.unit_price, f.weight, f.percent])
def test_floats_are_refused(writer):
    with pytest.raises(TypeError, match="float"):
        writer(12500.0)


def test_amounts_with_more_places_than_their_kind_are_refused_not_rounded():
    with pytest.raises(ValueError, match="more than 2 decimal places"):
        f.money(D("0.005"))
    with pytest.raises(ValueError, match="more than 3 decimal places"):
        f.quantity(D("2.0005"))


def test_lists_join_with_semicolons_and_codes_may_not_hold_one():
    assert f.render("CodeList", ("K01", "K02")) == "K01;K02"
    assert f.render("DateList", (dt.date(2026, 1, 1),)) == "20260101"
    assert f.render("CodeList", ()) == ""
    with pytest.raises(TypeError, match="not a tuple"):
        f.render("CodeList", "K01;K02")
    with pytest.raises(ValueError, match="use a tuple"):
        f.render("Code", "K01;K02")


def test_text_is_written_composed():
    decomposed = "Nguye\u0302\u0303n Thi\u0323 Ha\u0306\u0300ng"
    assert f.text(decomposed) == "Nguyễn Thị Hằng"
    assert len(f.text(decomposed)) == len("Nguyễn Thị Hằng")
    with pytest.raises(ValueError, match="XML cannot carry"):
        f.text("a\x01b")


# --- claims that are refused, with the field named --------------------------------------------


def test_a_wrong_total_is_refused():
    with pytest.raises(ClaimError) as error:
        build_table("XML1", outpatient_claim(t_thuoc=D("36251.00")))
    assert error.value.problems == [
        "XML1 T_THUOC: 36251.00, but the drug lines' THANH_TIEN_BV (XML2) add up to 36250.00"
    ]


def test_a_fund_share_that_is_not_the_insured_total_less_the_co_payment_is_refused():
    claim = outpatient_claim(t_bhtt=D("95940.00"))
    assert check_claim(claim) == [
        "XML1 T_BHTT: 95940.00, but T_BHTT of XML2 and XML3 add up to 95940.80",
        "XML1 T_BHTT: 95940.00, but T_TONGCHI_BH - T_BNCCT - T_NGUONKHAC = 95940.80",
    ]


def test_a_wrong_line_amount_is_refused():
    claim = outpatient_claim()
    drugs = list(claim.drugs)
    drugs[1] = dataclasses.replace(drugs[1], thanh_tien_bh=D("31250.00"), t_bntt=D("0.00"))
    with pytest.raises(ClaimError) as error:
        build_table("XML2", dataclasses.replace(claim, drugs=tuple(drugs)))
    assert (
        "XML2 row 2 THANH_TIEN_BH: 31250.00, but SO_LUONG × DON_GIA × TYLE_TT_BH / 100 = 15625.00"
        in error.value.problems
    )


def test_a_service_line_amount_applies_the_service_rate():
    claim = outpatient_claim()
    services = list(claim.services)
    services[0] = dataclasses.replace(services[0], tyle_tt_dv=D(50))
    problems = check_claim(dataclasses.replace(claim, services=tuple(services)))
    assert problems[:2] == [
        "XML3 row 1 THANH_TIEN_BV: 50600.00, but"
        " SO_LUONG × DON_GIA_BV × TYLE_TT_DV / 100 = 25300.00",
        "XML3 row 1 THANH_TIEN_BH: 50600.00, but"
        " SO_LUONG × DON_GIA_BH × TYLE_TT_DV / 100 × TYLE_TT_BH / 100 = 25300.00",
    ]


def test_a_line_whose_payers_do_not_add_up_is_refused():
    claim = outpatient_claim()
    drugs = (dataclasses.replace(claim.drugs[0], t_bncct=D("900.00")), claim.drugs[1])
    problems = check_claim(dataclasses.replace(claim, drugs=drugs))
    assert problems[0] == (
        "XML2 row 1 THANH_TIEN_BV: 5000.00, but T_BHTT + T_BNCCT + T_BNTT + T_NGUONKHAC = 4900.00"
    )


def test_thirteen_secondary_diagnoses_are_refused_and_twelve_accepted():
    codes = tuple(f"J{number:02d}.0" for number in range(13))
    with pytest.raises(ClaimError) as error:
        build_table("XML1", outpatient_claim(ma_benh_kt=codes))
    # Said plainly by the rule, and again by the schema, which also guards files made elsewhere.
    rule, schema = error.value.problems
    assert rule == "XML1 MA_BENH_KT: 13 secondary diagnoses, at most 12"
    assert schema.startswith("XML1 line 30 /TONG_HOP/MA_BENH_KT: Element 'MA_BENH_KT': [facet")
    [row] = read_table("XML1", build_table("XML1", outpatient_claim(ma_benh_kt=codes[:12])))
    assert row["MA_BENH_KT"].count(";") == 11


def test_a_float_is_refused_with_its_field_named():
    claim = outpatient_claim()
    drugs = (claim.drugs[0], dataclasses.replace(claim.drugs[1], so_luong=2.5))
    with pytest.raises(ClaimError) as error:
        build_table("XML1", dataclasses.replace(claim, drugs=drugs))
    assert error.value.problems == ["XML2 row 2 SO_LUONG: 2.5 is a float: use Decimal"]


def test_a_line_of_another_visit_is_refused():
    claim = outpatient_claim()
    results = (dataclasses.replace(claim.results[0], ma_lk="01001-20261127-000999"),)
    with pytest.raises(ClaimError) as error:
        build_table("XML4", dataclasses.replace(claim, results=results))
    assert error.value.problems == [
        "XML4 row 1 MA_LK: '01001-20261127-000999', not the summary's '01001-20261127-000123'"
    ]


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"ma_cskcb": "0100"}, "/TONG_HOP/MA_CSKCB"),
        ({"ma_the_bhyt": ("HT301012345678", "GD4010198765432")}, "/TONG_HOP/MA_THE_BHYT"),
        ({"so_cccd": "0011480123456789"}, "/TONG_HOP/SO_CCCD"),
        ({"ho_ten": "A" * 256}, "/TONG_HOP/HO_TEN"),
        ({"ma_loai_kcb": "1"}, "/TONG_HOP/MA_LOAI_KCB"),
        ({"ma_doituong_kcb": "1.111"}, "/TONG_HOP/MA_DOITUONG_KCB"),
        ({"gioi_tinh": 4}, "/TONG_HOP/GIOI_TINH"),
    ],
)
def test_lengths_and_codes_are_checked_by_the_schema(changes, named):
    with pytest.raises(ClaimError) as error:
        build_table("XML1", outpatient_claim(**changes))
    for problem in error.value.problems:
        assert problem.startswith("XML1 line ")
        assert named in problem


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        (
            {"ngay_ra": dt.datetime(2026, 11, 27, 0, 0, tzinfo=dt.UTC)},  # 07:00 in Vietnam
            "XML1 NGAY_RA: 2026-11-27T00:00:00+00:00 is before NGAY_VAO 2026-11-27T07:30:00+07:00",
        ),
        (
            {"ma_dkbd": ("01001",)},
            "XML1 MA_DKBD: 1 value(s) for 2 card(s) in MA_THE_BHYT",
        ),
        (
            {"gt_the_den": (dt.date(2026, 12, 31), dt.date(2026, 10, 31))},
            "XML1 GT_THE_TU: card 2 is valid from 2026-11-01, after its end 2026-10-31"
            " (GT_THE_DEN)",
        ),
        ({"ma_benh_chinh": ""}, "XML1 MA_BENH_CHINH: required, but empty"),
        (
            {"ngay_vao": dt.datetime(2026, 11, 27, 7, 30)},  # noqa: DTZ001
            "XML1 NGAY_VAO: 2026-11-27T07:30:00 has no time zone",
        ),
        ({"ma_khoa": "K01;K02"}, "XML1 MA_KHOA: 'K01;K02' is not a tuple"),
        ({"t_bntt": None}, "XML1 T_BNTT: required, but empty"),
    ],
)
def test_summary_values_that_cannot_be_sent_are_refused(changes, problem):
    with pytest.raises(ClaimError) as error:
        build_table("XML1", outpatient_claim(**changes))
    assert problem in error.value.problems


def test_every_problem_is_reported_at_once():
    departure = dt.datetime(2026, 11, 27, 7, 0, tzinfo=VN)
    claim = outpatient_claim(t_vtyt=D("0.00"), ngay_ra=departure, ma_cskcb="01")
    problems = check_claim(claim)
    assert [problem.split(":")[0] for problem in problems] == [
        "XML1 NGAY_RA",
        "XML1 T_VTYT",
        "XML1 line 60 /TONG_HOP/MA_CSKCB",
    ]


# --- the schemas fail when they should --------------------------------------------------------


def test_the_schema_rejects_a_time_of_10_digits_with_its_line_and_element():
    xml = build_table("XML1", outpatient_claim())
    broken = xml.replace(b"<NGAY_VAO>202611270730</NGAY_VAO>", b"<NGAY_VAO>2026112707</NGAY_VAO>")
    with pytest.raises(ClaimError) as error:
        validate_table("XML1", broken)
    [problem] = error.value.problems
    assert problem.startswith(
        "XML1 line 37 /TONG_HOP/NGAY_VAO: Element 'NGAY_VAO': [facet 'pattern']"
    )


def test_the_schema_rejects_a_missing_required_element():
    xml = build_table("XML1", outpatient_claim())
    broken = xml.replace(b"  <MA_CSKCB>01001</MA_CSKCB>\n", b"")
    with pytest.raises(ClaimError) as error:
        validate_table("XML1", broken)
    assert "Element 'MA_KHUVUC': This element is not expected. Expected is ( MA_CSKCB )." in (
        problems_of(error)
    )


@pytest.mark.parametrize(
    ("kind", "old", "new"),
    [
        ("XML2", b"<THANH_TIEN_BV>5000.00<", b"<THANH_TIEN_BV>5000.000<"),
        ("XML2", b"<SO_LUONG>10.000<", b"<SO_LUONG>1E+1<"),
        ("XML2", b"<MA_LK>", b"<MA_LK_X>"),
        ("XML3", b"<STT>1</STT>", b"<STT>01</STT>"),
        ("XML4", b"<NGAY_KQ>202611270915<", b"<NGAY_KQ>202613270915<"),
        ("XML0", b"<CHUKYDONVI/>", b""),
    ],
)
def test_the_schemas_reject_hand_broken_files(kind, old, new):
    xml = build_table(kind, outpatient_claim())
    assert old in xml
    assert schema_problems(kind, xml.replace(old, new, 1))


@pytest.mark.parametrize("kind", list(ROWS))
def test_blanking_a_field_fails_the_schema_exactly_when_the_field_is_required(kind):
    claim = inpatient_claim() if kind == "XML5" else outpatient_claim()
    document = etree.fromstring(build_table(kind, claim))
    table = layout(kind)
    for number, field in enumerate(table.fields):
        broken = copy.deepcopy(document)
        row = broken if len(table.path) == 1 else broken.find("/".join(table.path[1:]))
        row[number].text = None
        problems = schema_problems(kind, etree.tostring(broken))
        assert bool(problems) == field.required, (field.tag, problems)


def test_reading_a_table_of_another_kind_is_refused():
    with pytest.raises(ClaimError, match="XML2: the root is TONG_HOP"):
        read_table("XML2", build_table("XML1", outpatient_claim()))
