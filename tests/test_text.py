"""The one Vietnamese search normaliser."""

import unicodedata

import pytest

from his.text import clean, fold_vi


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("Nguyễn Văn Đức", "nguyen van duc"),
        ("ĐẶNG THỊ THUÝ", "dang thi thuy"),
        ("Hòa", "hoa"),
        ("Hoà", "hoa"),
        ("  Trần   Thị\tBích  ", "tran thi bich"),
        ("Thạch Sa Rai", "thach sa rai"),
    ],
)
def test_fold_vi(text, folded):
    assert fold_vi(text) == folded


def test_fold_is_the_same_for_decomposed_input():
    name = "Nguyễn Thị Ánh Tuyết"
    assert fold_vi(unicodedata.normalize("NFD", name)) == fold_vi(name)
    assert fold_vi(fold_vi(name)) == fold_vi(name)


def test_clean_composes_and_collapses_spaces():
    decomposed = unicodedata.normalize("NFD", " Lê  Văn Tám ")
    assert clean(decomposed) == "Lê Văn Tám"
    assert unicodedata.is_normalized("NFC", clean(decomposed))
