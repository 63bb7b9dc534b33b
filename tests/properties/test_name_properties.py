"""Properties of the text cleaner and the full-name normaliser over any text, not only
Vietnamese names: every input is either a clean NFC name or an InvalidValue, never another
exception; NFC and NFD spellings of one name are one name."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from his.errors import InvalidValue
from his.person_name import MAX_LENGTH, normalise_full_name, split_name
from his.text import clean, fold_vi, nfc
from tests.properties import BOUNDED

pytestmark = pytest.mark.usefixtures("babel_context")

TONES = "\u0300\u0301\u0309\u0303\u0323"
BASE_LETTERS = "aăâbcdđeêghiklmnoôơpqrstuưvxy"


@st.composite
def syllables(draw) -> str:
    """A Vietnamese-looking word, its tone mark written decomposed or composed."""
    letters = draw(st.lists(st.sampled_from(BASE_LETTERS), min_size=1, max_size=6))
    word = "".join(letters)
    if draw(st.booleans()):
        word += draw(st.sampled_from(TONES))
    case = draw(st.sampled_from([str.lower, str.upper, str.title]))
    return case(word)


# Names typed as people type them: extra spaces, hyphens and apostrophes (Ê Đê, H'Hen).
typed_names = st.lists(
    st.tuples(syllables(), st.sampled_from([" ", "  ", "\t", "-", "'", "\u2019"])),
    min_size=1,
    max_size=6,
).map(lambda parts: " " + "".join(word + sep for word, sep in parts))

# Anything at all, including controls, surrogates excluded (they cannot be in a str from UTF-8).
any_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=80)


@BOUNDED
@given(any_text)
def test_clean_is_idempotent_nfc_and_trimmed(text):
    cleaned = clean(text)
    assert clean(cleaned) == cleaned
    assert cleaned == nfc(cleaned)
    assert cleaned == cleaned.strip()
    assert "  " not in cleaned


@BOUNDED
@given(any_text)
def test_any_text_is_a_name_or_an_invalid_value(text):
    try:
        name = normalise_full_name(text)
    except InvalidValue as error:
        assert str(error)  # a message the receptionist can read
        return
    assert normalise_full_name(name) == name
    assert name == unicodedata.normalize("NFC", name)
    assert 0 < len(name) <= MAX_LENGTH
    assert not any(char.isdigit() for char in name)
    assert name == name.strip() and "  " not in name


@BOUNDED
@given(typed_names)
def test_nfc_and_nfd_spellings_of_a_name_are_the_same_name(text):
    composed = unicodedata.normalize("NFC", text)
    decomposed = unicodedata.normalize("NFD", text)
    try:
        expected = normalise_full_name(composed)
    except InvalidValue:
        # Only a name of punctuation alone may fail here ("-'"): the other spelling too.
        with pytest.raises(InvalidValue):
            normalise_full_name(decomposed)
        return
    assert normalise_full_name(decomposed) == expected
    assert fold_vi(decomposed) == fold_vi(composed)


@BOUNDED
@given(any_text)
def test_split_name_rebuilds_the_clean_name_or_refuses_empty(text):
    try:
        family, middle, given_name = split_name(text)
    except InvalidValue:
        assert clean(text) == ""
        return
    assert " ".join(p for p in (family, middle, given_name) if p) == clean(text)
    assert given_name and " " not in given_name and " " not in family


@BOUNDED
@given(any_text)
def test_fold_is_stable_under_nfd_and_leaves_no_marks(text):
    folded = fold_vi(text)
    assert fold_vi(unicodedata.normalize("NFD", text)) == folded
    assert not any(unicodedata.combining(char) for char in folded)
    assert "đ" not in folded and "Đ" not in folded
