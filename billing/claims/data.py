"""The values of one BHYT visit, table by table, as typed Python values.

Field names are the XML tag names in lower case and in the order of the tables' schemas
(``schemas/qd4750-3176``), which are the one place for order, lengths and which values are
required; ``STT`` is not a field, the tables number their rows. Optional values default to
``None`` (or an empty tuple) and are written as empty elements.

Types: ``datetime`` (aware) for moments, ``date`` for days, :class:`BirthDate` for NGAY_SINH,
``Decimal`` (or ``int``) for quantities, prices, rates and money, never ``float``; ``str`` for
codes, including MA_LOAI_KCB ("01") and MA_DOITUONG_KCB ("1.11"); tuples of ``str`` or ``date``
for the values written with ``;`` between them.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

ZERO = Decimal("0")

# Cost groups (MA_NHOM) of medical supplies: 10 in the benefit list, 11 paid at a rate. XML1
# T_VTYT is the sum of these lines of XML3. [verify] that no other group counts as a supply.
SUPPLY_GROUPS = frozenset({"10", "11"})


class _YearMonthDay(Protocol):
    year: int
    month: int | None
    day: int | None


@dataclass(frozen=True)
class BirthDate:
    """A date of birth of which only the year may be known (elderly patients often know no
    more), and the time of birth, which newborns up to 28 days old must have."""

    year: int
    month: int | None = None
    day: int | None = None
    hour: int | None = None
    minute: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.year <= 9999:
            raise ValueError(f"birth year {self.year} is not a year")
        if self.month is None and self.day is not None:
            raise ValueError("a day of birth needs a month of birth")
        if self.month is not None and not 1 <= self.month <= 12:
            raise ValueError(f"birth month {self.month} does not exist")
        if self.day is not None:
            assert self.month is not None
            if not 1 <= self.day <= calendar.monthrange(self.year, self.month)[1]:
                raise ValueError(f"day {self.day} does not exist in {self.month:02d}/{self.year}")
        if self.hour is not None and self.day is None:
            raise ValueError("a time of birth needs the full date of birth")
        if self.minute is not None and self.hour is None:
            raise ValueError("a minute of birth needs an hour of birth")
        if self.hour is not None and not 0 <= self.hour <= 23:
            raise ValueError(f"hour {self.hour} does not exist")
        if self.minute is not None and not 0 <= self.minute <= 59:
            raise ValueError(f"minute {self.minute} does not exist")

    @classmethod
    def of(cls, value: dt.date | _YearMonthDay) -> BirthDate:
        """From a ``date``, a ``datetime`` (time of birth kept, as given) or anything with
        ``year``, ``month`` and ``day`` such as ``his.partial_date.PartialDate``."""
        if isinstance(value, dt.datetime):
            return cls(value.year, value.month, value.day, value.hour, value.minute)
        return cls(value.year, value.month, value.day)


@dataclass(frozen=True, kw_only=True)
class CheckIn:
    """XML0: the check-in status, sent at the first charge of the visit (and at the first charge
    in each treating department). One of the three code/name pairs names that first charge."""

    ma_lk: str
    ma_bn: str
    ho_ten: str
    so_cccd: str | None = None
    ngay_sinh: BirthDate
    gioi_tinh: int
    ma_the_bhyt: tuple[str, ...]
    ma_dkbd: tuple[str, ...]
    gt_the_tu: tuple[dt.date, ...]
    gt_the_den: tuple[dt.date, ...]
    ma_doituong_kcb: str
    ngay_vao: dt.datetime
    ngay_vao_noi_tru: dt.datetime | None = None
    ly_do_vnt: str | None = None
    ma_ly_do_vnt: str | None = None
    ma_loai_kcb: str
    ma_cskcb: str
    ma_dich_vu: str | None = None
    ten_dich_vu: str | None = None
    ma_thuoc: str | None = None
    ten_thuoc: str | None = None
    ma_vat_tu: str | None = None
    ten_vat_tu: str | None = None
    ngay_yl: dt.datetime
    du_phong: str | None = None


@dataclass(frozen=True, kw_only=True)
class Summary:
    """XML1: the visit or treatment episode, with the totals of its detail lines."""

    ma_lk: str
    ma_bn: str
    ho_ten: str
    so_cccd: str | None = None
    ngay_sinh: BirthDate
    gioi_tinh: int
    nhom_mau: str | None = None
    ma_quoctich: str
    ma_dantoc: str
    ma_nghe_nghiep: str
    dia_chi: str
    matinh_cu_tru: str | None = None
    mahuyen_cu_tru: str | None = None
    maxa_cu_tru: str | None = None
    dien_thoai: str | None = None
    ma_the_bhyt: tuple[str, ...]
    ma_dkbd: tuple[str, ...]
    gt_the_tu: tuple[dt.date, ...]
    gt_the_den: tuple[dt.date, ...]
    ngay_mien_cct: dt.date | None = None
    ly_do_vv: str | None = None
    ly_do_vnt: str | None = None
    ma_ly_do_vnt: str | None = None
    chan_doan_vao: str | None = None
    chan_doan_rv: str
    ma_benh_chinh: str
    ma_benh_kt: tuple[str, ...] = ()
    ma_benh_yhct: tuple[str, ...] = ()
    ma_pttt_qt: tuple[str, ...] = ()
    ma_doituong_kcb: str
    ma_noi_di: str | None = None
    ma_noi_den: str | None = None
    ma_tai_nan: str | None = None
    ngay_vao: dt.datetime
    ngay_vao_noi_tru: dt.datetime | None = None
    ngay_ra: dt.datetime
    giay_chuyen_tuyen: str | None = None
    so_ngay_dtri: int
    pp_dieu_tri: str | None = None
    ket_qua_dtri: int
    ma_loai_rv: int
    ghi_chu: str | None = None
    ngay_ttoan: dt.datetime | None = None
    t_thuoc: Decimal
    t_vtyt: Decimal
    t_tongchi_bv: Decimal
    t_tongchi_bh: Decimal
    t_bntt: Decimal
    t_bncct: Decimal
    t_bhtt: Decimal
    t_nguonkhac: Decimal = ZERO
    t_bhtt_gdv: Decimal = ZERO
    nam_qt: int
    thang_qt: int
    ma_loai_kcb: str
    ma_khoa: tuple[str, ...]
    ma_cskcb: str
    ma_khuvuc: str | None = None
    can_nang: Decimal | None = None
    can_nang_con: str | None = None
    nam_nam_lien_tuc: dt.date | None = None
    ngay_tai_kham: tuple[dt.date, ...] = ()
    ma_hsba: str | None = None
    ma_ttdv: str
    du_phong: str | None = None


@dataclass(frozen=True, kw_only=True)
class DrugLine:
    """XML2: one drug line. THANH_TIEN_BV = SO_LUONG × DON_GIA; THANH_TIEN_BH applies
    TYLE_TT_BH; both rounded to 2 places (see ``amounts``)."""

    ma_lk: str
    ma_thuoc: str
    ma_pp_chebien: str | None = None
    ma_cskcb_thuoc: str | None = None
    ma_nhom: str
    ten_thuoc: str
    don_vi_tinh: str
    ham_luong: str | None = None
    duong_dung: str | None = None
    dang_bao_che: str | None = None
    lieu_dung: str | None = None
    cach_dung: str | None = None
    so_dang_ky: str | None = None
    tt_thau: str | None = None
    pham_vi: int
    tyle_tt_bh: Decimal
    so_luong: Decimal
    don_gia: Decimal
    thanh_tien_bv: Decimal
    thanh_tien_bh: Decimal
    t_nguonkhac_nsnn: Decimal = ZERO
    t_nguonkhac_vtnn: Decimal = ZERO
    t_nguonkhac_vttn: Decimal = ZERO
    t_nguonkhac_cl: Decimal = ZERO
    t_nguonkhac: Decimal = ZERO
    muc_huong: Decimal
    t_bntt: Decimal
    t_bncct: Decimal
    t_bhtt: Decimal
    ma_khoa: str
    ma_bac_si: tuple[str, ...]
    ma_dich_vu: str | None = None
    ngay_yl: dt.datetime
    ngay_th_yl: dt.datetime | None = None
    ma_pttt: int = 1
    nguon_ctra: int = 1
    vet_thuong_tp: int | None = None
    du_phong: str | None = None


@dataclass(frozen=True, kw_only=True)
class ServiceLine:
    """XML3: one technical service or medical supply line (a supply when MA_NHOM is a supply
    group). Amounts apply TYLE_TT_DV, and TYLE_TT_BH for the insured part (see ``amounts``)."""

    ma_lk: str
    ma_dich_vu: str | None = None
    ma_pttt_qt: tuple[str, ...] = ()
    ma_vat_tu: str | None = None
    ma_nhom: str
    goi_vtyt: str | None = None
    ten_vat_tu: str | None = None
    ten_dich_vu: str | None = None
    ma_xang_dau: str | None = None
    don_vi_tinh: str
    pham_vi: int
    so_luong: Decimal
    don_gia_bv: Decimal
    don_gia_bh: Decimal
    tt_thau: str | None = None
    tyle_tt_dv: Decimal
    tyle_tt_bh: Decimal
    thanh_tien_bv: Decimal
    thanh_tien_bh: Decimal
    t_trantt: Decimal | None = None
    muc_huong: Decimal
    t_nguonkhac_nsnn: Decimal = ZERO
    t_nguonkhac_vtnn: Decimal = ZERO
    t_nguonkhac_vttn: Decimal = ZERO
    t_nguonkhac_cl: Decimal = ZERO
    t_nguonkhac: Decimal = ZERO
    t_bntt: Decimal
    t_bncct: Decimal
    t_bhtt: Decimal
    ma_khoa: str
    ma_giuong: tuple[str, ...] = ()
    ma_bac_si: tuple[str, ...]
    nguoi_thuc_hien: tuple[str, ...] = ()
    ma_benh: tuple[str, ...] = ()
    ma_benh_yhct: tuple[str, ...] = ()
    ngay_yl: dt.datetime
    ngay_th_yl: dt.datetime | None = None
    ngay_kq: dt.datetime | None = None
    ma_pttt: int = 1
    vet_thuong_tp: int | None = None
    pp_vo_cam: int | None = None
    vi_tri_th_dvkt: str | None = None
    ma_may: tuple[str, ...] = ()
    ma_hieu_sp: str | None = None
    tai_su_dung: int | None = None
    du_phong: str | None = None

    @property
    def is_supply(self) -> bool:
        return self.ma_nhom in SUPPLY_GROUPS


@dataclass(frozen=True, kw_only=True)
class ResultLine:
    """XML4: one indicator of a paraclinical result."""

    ma_lk: str
    ma_dich_vu: str
    ma_chi_so: str | None = None
    ten_chi_so: str | None = None
    gia_tri: str | None = None
    don_vi_do: str | None = None
    mo_ta: str | None = None
    ket_luan: str | None = None
    ngay_kq: dt.datetime
    ma_bs_doc_kq: tuple[str, ...] = ()
    du_phong: str | None = None


@dataclass(frozen=True, kw_only=True)
class CourseEntry:
    """XML5: one entry of the clinical course of a treatment episode."""

    ma_lk: str
    dien_bien_ls: str
    giai_doan_benh: str | None = None
    hoi_chan: str | None = None
    phau_thuat: str | None = None
    thoi_diem_dbls: dt.datetime
    nguoi_thuc_hien: tuple[str, ...]
    du_phong: str | None = None


@dataclass(frozen=True, kw_only=True)
class Claim:
    """One visit or treatment episode: what goes into one GIAMDINHHS envelope, and the check-in
    record that was (or will be) sent on its own."""

    check_in: CheckIn | None = None
    summary: Summary
    drugs: tuple[DrugLine, ...] = ()
    services: tuple[ServiceLine, ...] = ()
    results: tuple[ResultLine, ...] = ()
    course: tuple[CourseEntry, ...] = ()
