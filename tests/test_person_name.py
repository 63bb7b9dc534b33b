"""Full names: NFC, single spaces, letters only, ID-card UPPER CASE put in title case."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from his.person_name import normalise_full_name, split_name
from his.text import fold_vi
from tests.messages import invalid_message

pytestmark = pytest.mark.usefixtures("babel_context")


error = invalid_message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("NGUYỄN VĂN ĐỨC", "Nguyễn Văn Đức"),
        ("nguyễn văn đức", "Nguyễn Văn Đức"),
        ("  Nguyễn   Văn\tĐức ", "Nguyễn Văn Đức"),
        (unicodedata.normalize("NFD", "ĐẶNG THỊ THUÝ"), "Đặng Thị Thuý"),
        ("TRƯƠNG ƯỚC", "Trương Ước"),
        ("ÔNG ÍCH KHIÊM", "Ông Ích Khiêm"),
        ("NGUYỄN VĂN A", "Nguyễn Văn A"),
        ("nguyễn văn a", "Nguyễn Văn A"),
        # Mixed case is kept as typed; only all-upper or all-lower words are changed.
        ("Nguyễn văn ĐỨC", "Nguyễn Văn Đức"),
        ("McDONALD", "McDONALD"),
        ("Nguyễn McDonald", "Nguyễn McDonald"),
        ("ThạCH", "ThạCH"),
        # Hòa/Hoà: both tone placements are kept exactly as typed.
        ("LÊ THỊ HÒA", "Lê Thị Hòa"),
        ("LÊ THỊ HOÀ", "Lê Thị Hoà"),
        # Ê Đê and Khmer names; hyphens and apostrophes.
        ("H'HEN NIÊ", "H'Hen Niê"),
        ("H’HEN NIÊ", "H'Hen Niê"),
        ("Y-SA ÊBAN", "Y-Sa Êban"),
        ("THẠCH SA RAI", "Thạch Sa Rai"),
        ("O'NEILL", "O'Neill"),
        ("X" * 200, "X" + "x" * 199),
    ],
)
def test_normalise_full_name_valid(value, expected):
    name = normalise_full_name(value)
    assert name == expected
    assert unicodedata.is_normalized("NFC", name)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "The name is empty."),
        (" \t ", "The name is empty."),
        ("Nguyễn Văn 2", "The name contains the digit “2”: names have no digits."),
        ("Nguyễn Văn ²", "The name contains the digit “²”: names have no digits."),
        (
            "Nguyễn.Văn",
            "The name contains “.”: only letters, spaces, hyphens (-) and apostrophes (') "
            "are allowed.",
        ),
        (
            "Nguyễn, Văn",
            "The name contains “,”: only letters, spaces, hyphens (-) and apostrophes (') "
            "are allowed.",
        ),
        (
            "Trần (Bé)",
            "The name contains “(”: only letters, spaces, hyphens (-) and apostrophes (') "
            "are allowed.",
        ),
        ("- '", "The name has no letters."),
        (
            "x" * 201,
            "The name is too long: it has 201 characters, at most 200 are allowed.",
        ),
    ],
)
def test_normalise_full_name_invalid(value, message):
    assert error(normalise_full_name, value) == message


@pytest.mark.parametrize(
    ("full_name", "parts"),
    [
        ("Nguyễn Văn Đức", ("Nguyễn", "Văn", "Đức")),
        ("Nguyễn Thị Ánh Tuyết", ("Nguyễn", "Thị Ánh", "Tuyết")),
        ("Lê Tám", ("Lê", None, "Tám")),
        ("  Lê   Tám ", ("Lê", None, "Tám")),
        ("Tám", ("", None, "Tám")),
        ("Tôn Nữ Thị Ngọc Hân", ("Tôn", "Nữ Thị Ngọc", "Hân")),
    ],
)
def test_split_name(full_name, parts):
    assert split_name(full_name) == parts


def test_split_name_rejects_empty():
    assert error(split_name, "  ") == "The name is empty."


vietnamese_letters = "aăâbcdđeêghiklmnoôơpqrstuưvxy"
vietnamese_vowels = "aăâeêioôơuưy"
tones = ["", "\u0300", "\u0301", "\u0309", "\u0303", "\u0323"]


@st.composite
def vietnamese_words(draw):
    letters = draw(st.lists(st.sampled_from(vietnamese_letters), min_size=1, max_size=7))
    vowels = [i for i, letter in enumerate(letters) if letter in vietnamese_vowels]
    if vowels:  # the tone mark sits on a vowel
        i = draw(st.sampled_from(vowels))
        letters[i] += draw(st.sampled_from(tones))
    return unicodedata.normalize("NFC", "".join(letters))


names = st.lists(vietnamese_words(), min_size=1, max_size=5).map(" ".join)


@settings(deadline=None)
@given(names, st.sampled_from([str.upper, str.lower, str.title]))
def test_normalise_is_idempotent_and_case_insensitive_in_meaning(name, case):
    normalised = normalise_full_name(case(name))
    assert normalise_full_name(normalised) == normalised
    assert normalised == normalise_full_name(name.upper())
    assert fold_vi(normalised) == fold_vi(name)
    assert all(word[0].isupper() for word in normalised.split(" "))


@settings(deadline=None)
@given(names)
def test_split_parts_rebuild_the_name(name):
    family, middle, given_name = split_name(name)
    assert " ".join(part for part in (family, middle, given_name) if part) == name
