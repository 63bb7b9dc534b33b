"""Sample BHYT claims built from literal values, shared by the claim-file tests.

An outpatient visit (two drugs, three services of which one is a supply, two lab results, a
patient with only a year of birth and two cards during the visit) and an inpatient episode
(with its clinical course). Every amount is written out; the arithmetic is in the comments.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D
from zoneinfo import ZoneInfo

from billing.claims import (
    BirthDate,
    CheckIn,
    Claim,
    CourseEntry,
    DrugLine,
    ResultLine,
    ServiceLine,
    Summary,
    check_claim,
)

VN = ZoneInfo("Asia/Ho_Chi_Minh")
FACILITY = "01001"
OUTPATIENT_MA_LK = "01001-20261127-000123"
INPATIENT_MA_LK = "01001-20261120-000045"
PATIENT_NAME = "Nguyễn Thị Hằng"


def at(day: int, hour: int, minute: int, month: int = 11) -> dt.datetime:
    """A moment of November 2026, Vietnam time."""
    return dt.datetime(2026, month, day, hour, minute, tzinfo=VN)


def outpatient_drugs(ma_lk: str = OUTPATIENT_MA_LK) -> tuple[DrugLine, ...]:
    common = {
        "ma_lk": ma_lk,
        "ma_nhom": "4",
        "don_vi_tinh": "Viên",
        "duong_dung": "1.01",
        "pham_vi": 1,
        "muc_huong": D(80),
        "ma_khoa": "K01",
        "ma_bac_si": ("001234/HNO-CCHN",),
        "ngay_yl": at(27, 9, 40),
    }
    return (
        # 10 × 500 = 5000.00, all insured; the fund pays 80 %.
        DrugLine(
            **common,
            ma_thuoc="40.48",
            ten_thuoc="Paracetamol 500mg",
            ham_luong="500mg",
            lieu_dung="Uống 1 viên/lần * 2 lần/ngày * 5 ngày [2 viên/ngày]",
            so_dang_ky="VD-12345-10",
            tt_thau="G1;N4;2026",
            tyle_tt_bh=D(100),
            so_luong=D(10),
            don_gia=D(500),
            thanh_tien_bv=D("5000.00"),
            thanh_tien_bh=D("5000.00"),
            t_bntt=D("0.00"),
            t_bncct=D("1000.00"),
            t_bhtt=D("4000.00"),
        ),
        # 2.5 × 12500 = 31250.00, insured at 50 %: 15625.00; the fund pays 80 % of that.
        DrugLine(
            **common,
            ma_thuoc="40.153",
            ten_thuoc="Amoxicilin 500mg",
            ham_luong="500mg",
            lieu_dung="Uống 1 viên/lần & sau ăn <30 phút>",
            so_dang_ky="VD-67890-12",
            tyle_tt_bh=D(50),
            so_luong=D("2.5"),
            don_gia=D(12500),
            thanh_tien_bv=D("31250.00"),
            thanh_tien_bh=D("15625.00"),
            t_bntt=D("15625.00"),
            t_bncct=D("3125.00"),
            t_bhtt=D("12500.00"),
        ),
    )


def outpatient_services(ma_lk: str = OUTPATIENT_MA_LK) -> tuple[ServiceLine, ...]:
    common = {
        "ma_lk": ma_lk,
        "pham_vi": 1,
        "so_luong": D(1),
        "tyle_tt_dv": D(100),
        "tyle_tt_bh": D(100),
        "muc_huong": D(80),
        "t_bntt": D("0.00"),
        "ma_khoa": "K01",
        "ma_bac_si": ("001234/HNO-CCHN",),
    }
    return (
        ServiceLine(
            **common,
            ma_dich_vu="02.1896",
            ma_nhom="13",
            ten_dich_vu="Khám Nội",
            don_vi_tinh="Lần",
            don_gia_bv=D(50600),
            don_gia_bh=D(50600),
            thanh_tien_bv=D("50600.00"),
            thanh_tien_bh=D("50600.00"),
            t_bncct=D("10120.00"),
            t_bhtt=D("40480.00"),
            ngay_yl=at(27, 7, 35),
        ),
        ServiceLine(
            **common,
            ma_dich_vu="22.0120.1370",
            ma_nhom="1",
            ten_dich_vu="Tổng phân tích tế bào máu ngoại vi",
            don_vi_tinh="Lần",
            don_gia_bv=D(46200),
            don_gia_bh=D(46200),
            thanh_tien_bv=D("46200.00"),
            thanh_tien_bh=D("46200.00"),
            t_bncct=D("9240.00"),
            t_bhtt=D("36960.00"),
            ngay_yl=at(27, 8, 0),
            ngay_th_yl=at(27, 8, 15),
            ngay_kq=at(27, 9, 15),
            ma_may=("XN.1.01234",),
        ),
        # The supply: 2 × 1250.5 = 2501.00.
        ServiceLine(
            **{**common, "so_luong": D(2)},
            ma_vat_tu="N03.02.010",
            ma_nhom="10",
            ten_vat_tu="Bơm tiêm nhựa 5ml",
            don_vi_tinh="Cái",
            don_gia_bv=D("1250.5"),
            don_gia_bh=D("1250.5"),
            thanh_tien_bv=D("2501.00"),
            thanh_tien_bh=D("2501.00"),
            t_bncct=D("500.20"),
            t_bhtt=D("2000.80"),
            ngay_yl=at(27, 8, 0),
        ),
    )


def outpatient_results(ma_lk: str = OUTPATIENT_MA_LK) -> tuple[ResultLine, ...]:
    common = {
        "ma_lk": ma_lk,
        "ma_dich_vu": "22.0120.1370",
        "ngay_kq": at(27, 9, 15),
        "ma_bs_doc_kq": ("005678/HNO-CCHN",),
    }
    return (
        ResultLine(**common, ma_chi_so="WBC", ten_chi_so="Số lượng bạch cầu", gia_tri="6.5",
                   don_vi_do="G/L"),
        ResultLine(**common, ma_chi_so="RBC", ten_chi_so="Số lượng hồng cầu", gia_tri="4.2",
                   don_vi_do="T/L", ket_luan="Bình thường"),
    )  # fmt: skip


def outpatient_summary(**changes: object) -> Summary:
    values: dict[str, object] = {
        "ma_lk": OUTPATIENT_MA_LK,
        "ma_bn": "BN0000123",
        "ho_ten": PATIENT_NAME,
        "so_cccd": "001148012345",
        "ngay_sinh": BirthDate(1948),
        "gioi_tinh": 2,
        "ma_quoctich": "000",
        "ma_dantoc": "01",
        "ma_nghe_nghiep": "00000",
        "dia_chi": "Số 12 phố Hàng Bông, phường Hoàn Kiếm, Hà Nội",
        "matinh_cu_tru": "01",
        "maxa_cu_tru": "00070",
        "dien_thoai": "0912345678",
        # The old card ends and a new one starts during the visit.
        "ma_the_bhyt": ("HT3010123456789", "GD4010198765432"),
        "ma_dkbd": ("01001", "01002"),
        "gt_the_tu": (dt.date(2026, 1, 1), dt.date(2026, 11, 1)),
        "gt_the_den": (dt.date(2026, 12, 31), dt.date(2027, 10, 31)),
        "ly_do_vv": "Ho, sốt 3 ngày",
        "chan_doan_rv": "Viêm họng cấp; tăng huyết áp; đái tháo đường típ 2",
        "ma_benh_chinh": "J02.9",
        "ma_benh_kt": ("I10", "E11.9"),
        "ma_doituong_kcb": "1.11",
        "ngay_vao": at(27, 7, 30),
        "ngay_ra": at(27, 14, 30),
        "so_ngay_dtri": 0,
        "ket_qua_dtri": 1,
        "ma_loai_rv": 1,
        # Drugs 5000.00 + 31250.00; the supply 2501.00; services 50600.00 + 46200.00 + 2501.00.
        "t_thuoc": D("36250.00"),
        "t_vtyt": D("2501.00"),
        "t_tongchi_bv": D("135551.00"),
        "t_tongchi_bh": D("119926.00"),
        "t_bntt": D("15625.00"),
        "t_bncct": D("23985.20"),
        "t_bhtt": D("95940.80"),
        "nam_qt": 2026,
        "thang_qt": 11,
        "ma_loai_kcb": "01",
        "ma_khoa": ("K01", "K02"),
        "ma_cskcb": FACILITY,
        "ma_ttdv": "0123456789",
    }
    values.update(changes)
    return Summary(**values)  # type: ignore[arg-type]


def outpatient_check_in() -> CheckIn:
    return CheckIn(
        ma_lk=OUTPATIENT_MA_LK,
        ma_bn="BN0000123",
        ho_ten=PATIENT_NAME,
        so_cccd="001148012345",
        ngay_sinh=BirthDate(1948),
        gioi_tinh=2,
        ma_the_bhyt=("HT3010123456789", "GD4010198765432"),
        ma_dkbd=("01001", "01002"),
        gt_the_tu=(dt.date(2026, 1, 1), dt.date(2026, 11, 1)),
        gt_the_den=(dt.date(2026, 12, 31), dt.date(2027, 10, 31)),
        ma_doituong_kcb="1.11",
        ngay_vao=at(27, 7, 30),
        ma_loai_kcb="01",
        ma_cskcb=FACILITY,
        ma_dich_vu="02.1896",
        ten_dich_vu="Khám Nội",
        ngay_yl=at(27, 7, 35),
    )


def outpatient_claim(**summary_changes: object) -> Claim:
    return Claim(
        check_in=outpatient_check_in(),
        summary=outpatient_summary(**summary_changes),
        drugs=outpatient_drugs(),
        services=outpatient_services(),
        results=outpatient_results(),
    )


def inpatient_claim() -> Claim:
    ma_lk = INPATIENT_MA_LK
    summary = Summary(
        ma_lk=ma_lk,
        ma_bn="BN0000456",
        ho_ten="Trần Văn Đức",
        so_cccd="001090054321",
        ngay_sinh=BirthDate(1990, 5, 7),
        gioi_tinh=1,
        ma_quoctich="000",
        ma_dantoc="01",
        ma_nghe_nghiep="00000",
        dia_chi="Xã Bát Tràng, Hà Nội",
        matinh_cu_tru="01",
        ma_the_bhyt=("DN4010112233445",),
        ma_dkbd=("01001",),
        gt_the_tu=(dt.date(2026, 1, 1),),
        gt_the_den=(dt.date(2026, 12, 31),),
        ly_do_vv="Sốt cao, khó thở",
        ly_do_vnt="Viêm phổi cần điều trị nội trú",
        chan_doan_vao="Viêm phổi",
        chan_doan_rv="Viêm phổi do vi khuẩn",
        ma_benh_chinh="J15.9",
        ma_doituong_kcb="1.11",
        ngay_vao=at(20, 8, 0),
        ngay_vao_noi_tru=at(20, 9, 10),
        ngay_ra=at(25, 10, 0),
        so_ngay_dtri=6,
        ket_qua_dtri=1,
        ma_loai_rv=1,
        # Drug 320000.00; bed days 1075000.00; the fund pays 80 %.
        t_thuoc=D("320000.00"),
        t_vtyt=D("0.00"),
        t_tongchi_bv=D("1395000.00"),
        t_tongchi_bh=D("1395000.00"),
        t_bntt=D("0.00"),
        t_bncct=D("279000.00"),
        t_bhtt=D("1116000.00"),
        nam_qt=2026,
        thang_qt=11,
        ma_loai_kcb="03",
        ma_khoa=("K19",),
        ma_cskcb=FACILITY,
        can_nang=D("62.5"),
        ma_hsba="BA-2026-0045",
        ma_ttdv="0123456789",
    )
    drug = DrugLine(
        ma_lk=ma_lk,
        ma_thuoc="40.222",
        ma_nhom="4",
        ten_thuoc="Ceftriaxon 1g",
        don_vi_tinh="Lọ",
        duong_dung="2.15",
        pham_vi=1,
        tyle_tt_bh=D(100),
        so_luong=D(10),
        don_gia=D(32000),
        thanh_tien_bv=D("320000.00"),
        thanh_tien_bh=D("320000.00"),
        muc_huong=D(80),
        t_bntt=D("0.00"),
        t_bncct=D("64000.00"),
        t_bhtt=D("256000.00"),
        ma_khoa="K19",
        ma_bac_si=("002345/HNO-CCHN",),
        ngay_yl=at(20, 9, 30),
        ngay_th_yl=at(20, 10, 0),
    )
    beds = ServiceLine(
        ma_lk=ma_lk,
        ma_dich_vu="K19.1900",
        ma_nhom="15",
        ten_dich_vu="Giường Nội khoa loại 1",
        don_vi_tinh="Ngày",
        pham_vi=1,
        so_luong=D(5),
        don_gia_bv=D(215000),
        don_gia_bh=D(215000),
        tyle_tt_dv=D(100),
        tyle_tt_bh=D(100),
        thanh_tien_bv=D("1075000.00"),
        thanh_tien_bh=D("1075000.00"),
        muc_huong=D(80),
        t_bntt=D("0.00"),
        t_bncct=D("215000.00"),
        t_bhtt=D("860000.00"),
        ma_khoa="K19",
        ma_giuong=("H001",),
        ma_bac_si=("002345/HNO-CCHN",),
        ngay_yl=at(20, 9, 10),
    )
    course = tuple(
        CourseEntry(
            ma_lk=ma_lk,
            dien_bien_ls=text,
            thoi_diem_dbls=moment,
            nguoi_thuc_hien=("002345/HNO-CCHN",),
            hoi_chan=consult,
        )
        for text, moment, consult in (
            ("Sốt 39°C, ran nổ đáy phổi phải", at(20, 9, 30), None),
            ("Hết sốt, còn ho khạc đờm", at(22, 8, 0), "Hội chẩn khoa: tiếp tục kháng sinh"),
            ("Ổn định, cho ra viện", at(25, 9, 0), None),
        )
    )
    return Claim(summary=summary, drugs=(drug,), services=(beds,), course=course)


def test_the_samples_are_valid_claims():
    assert check_claim(outpatient_claim()) == []
    assert check_claim(inpatient_claim()) == []
