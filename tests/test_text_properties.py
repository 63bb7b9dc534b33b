"""Properties of the search normaliser ``fold_vi`` over generated text."""

from __future__ import annotations

import string
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from his.text import fold_vi

# Tone marks: huyền, sắc, hỏi, ngã, nặng.
TONES = ["\u0300", "\u0301", "\u0309", "\u0303", "\u0323"]
VOWELS = "aăâeêioôơuưy"
CONSONANTS = "bcdđghklmnpqrstvx"
# Each vowel with each tone (or none), precomposed, in both cases: 12 × 6 × 2 letters.
TONED_VOWELS = [unicodedata.normalize("NFC", v + t) for v in VOWELS for t in ["", *TONES]]
LOWER_LETTERS = sorted(set(TONED_VOWELS) | set(CONSONANTS) | set("fjwz"))
LETTERS = LOWER_LETTERS + [letter.upper() for letter in LOWER_LETTERS]
# What is left of each letter once all marks are gone.
BASE = {"ă": "a", "â": "a", "ê": "e", "ô": "o", "ơ": "o", "ư": "u", "đ": "d"}


def strip_tone(letter: str) -> str:
    """The letter without its tone mark but with its other marks (ấ → â, Ữ → Ư)."""
    decomposed = unicodedata.normalize("NFD", letter)
    kept = "".join(ch for ch in decomposed if ch not in TONES)
    return unicodedata.normalize("NFC", kept)


def ascii_letter(letter: str) -> str:
    bare = strip_tone(letter).lower()
    return BASE.get(bare, bare)


vietnamese_text = st.text(st.sampled_from([*LETTERS, " ", "\t"]))
words = st.lists(st.sampled_from(LETTERS), min_size=1, max_size=7).map("".join)
names = st.lists(words, min_size=1, max_size=5)


def test_alphabet_is_complete():
    assert len(TONED_VOWELS) == 72
    assert all(len(letter) == 1 for letter in LETTERS)
    assert "ữ" in LETTERS
    assert "Ặ" in LETTERS
    assert "Đ" in LETTERS


@given(st.text())
def test_fold_is_idempotent(text):
    assert fold_vi(fold_vi(text)) == fold_vi(text)


@given(vietnamese_text)
def test_fold_is_idempotent_on_vietnamese(text):
    assert fold_vi(fold_vi(text)) == fold_vi(text)


@given(st.text())
def test_fold_ignores_the_normalisation_form(text):
    folded = fold_vi(text)
    assert fold_vi(unicodedata.normalize("NFD", text)) == folded
    assert fold_vi(unicodedata.normalize("NFC", text)) == folded


@given(st.text())
def test_fold_leaves_no_combining_marks_nor_extra_spaces(text):
    folded = fold_vi(text)
    assert not any(unicodedata.combining(ch) for ch in folded)
    assert folded == " ".join(folded.split())


@given(vietnamese_text)
def test_vietnamese_letters_fold_to_lower_case_ascii(text):
    folded = fold_vi(text)
    assert set(folded) <= set(string.ascii_lowercase + " ")
    assert "đ" not in folded


@given(vietnamese_text)
def test_fold_ignores_case(text):
    assert fold_vi(text.upper()) == fold_vi(text)
    assert fold_vi(text.lower()) == fold_vi(text)
    assert fold_vi(text.title()) == fold_vi(text)


@given(names)
def test_a_name_and_the_same_name_without_tones_fold_alike(name_words):
    name = " ".join(name_words)
    without_tones = " ".join("".join(strip_tone(ch) for ch in word) for word in name_words)
    plain = " ".join("".join(ascii_letter(ch) for ch in word) for word in name_words)
    assert fold_vi(name) == fold_vi(without_tones) == fold_vi(plain) == plain.lower()
