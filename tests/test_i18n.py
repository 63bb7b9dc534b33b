"""Every user-visible string has a Vietnamese translation, and the catalogue compiles."""

import re
from io import BytesIO
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
PO = ROOT / "his/translations/vi/LC_MESSAGES/messages.po"
KEYWORDS = {"_": None, "gettext": None, "_l": None, "lazy_gettext": None}
METHODS = [
    ("his/**.py", "python"),
    ("billing/**.py", "python"),
    ("his/**/templates/**.html", "jinja2"),
]


def _source_messages() -> set[str]:
    found = set()
    for _file, _line, message, _comments, _ctx in extract_from_dir(
        ROOT, method_map=METHODS, keywords=KEYWORDS
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


def _catalog():
    with PO.open("rb") as f:
        return read_po(f, locale="vi")


def test_every_string_in_the_code_is_translated_to_vietnamese():
    catalog = _catalog()
    missing = sorted(
        m for m in _source_messages() if not (catalog.get(m) and catalog.get(m).string)
    )
    assert missing == [], "run `make i18n-update` and translate: " + "; ".join(missing)


def test_no_fuzzy_or_stale_entries():
    catalog = _catalog()
    source = _source_messages()
    assert [m.id for m in catalog if m.id and m.fuzzy] == []
    assert sorted(m.id for m in catalog if m.id and m.id not in source) == []


PLACEHOLDER = re.compile(r"%\(\w+\)[sd]")


def test_placeholders_survive_translation():
    for message in _catalog():
        if message.id:
            assert sorted(PLACEHOLDER.findall(message.id)) == sorted(
                PLACEHOLDER.findall(message.string)
            ), message.id


def test_catalogue_compiles():
    buffer = BytesIO()
    write_mo(buffer, _catalog())
    assert len(buffer.getvalue()) > 1000
