"""The HL7 v2 sample corpus (tests/data/hl7, copied from ../shared/data/hl7 with its
licences in SOURCES.md) and what each file must give.

Every file is listed by SAMPLE_FILES; the tests derive MSH-9/10/12 from the raw text with a
deliberately naive reader (independent of his.hl7v2.codec) and compare our parser with it.
"""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "hl7"

SAMPLE_FILES: list[Path] = sorted(
    p for p in DATA_DIR.rglob("*") if p.is_file() and p.suffix not in (".md",)
)
assert SAMPLE_FILES, f"no HL7 samples under {DATA_DIR}"
MESSAGE_FILES = [p for p in SAMPLE_FILES if p.suffix != ".bin"]
MLLP_FILES = [p for p in SAMPLE_FILES if p.suffix == ".bin"]

# file (relative) → (code, location) of the refusal for a single-message file.
REFUSED = {
    "synthetic-vn/edge_missing_msh9.hl7": (101, "MSH^1^9"),
    "synthetic-vn/edge_missing_msh10.hl7": (101, "MSH^1^10"),
    # Our choice: the first missing required MSH field is reported (MSH-9, then 10, 12).
    "synthetic-vn/edge_msh_only_truncated.hl7": (101, "MSH^1^9"),
    "synthetic-vn/edge_cp1258_no_msh18.hl7": (102, "MSH^1^18"),
    "synthetic-vn/edge_declared_8859_1_but_utf8.hl7": (103, "MSH^1^18"),
    "synthetic-vn/edge_not_hl7.hl7": (100, "MSH^1"),
}

# Multi-message files: message index (0-based) → refusal. Two OML in HAPI's file have no MSH-10.
REFUSED_IN_STREAM = {
    "hapi-hl7v2/example_oml_o21.hl7": {10: (101, "MSH^1^10"), 11: (101, "MSH^1^10")},
}

# Batch files refused by batch.split: (code, location).
REFUSED_BATCHES = {
    "python-hl7/sample_bad_batch.hl7": (100, "EVN^1"),
    "python-hl7/sample_bad_batch1.hl7": (100, "BHS^2"),
    "python-hl7/sample_bad_file.hl7": (100, "EVN^1"),
    "python-hl7/sample_bad_file1.hl7": (100, "BHS^2"),
    "python-hl7/sample_bad_file2.hl7": (100, "FHS^2"),
    "python-hl7/sample_bad_file3.hl7": (100, "EVN^1"),
    "synthetic-vn/batch_bad_trailer_count.hl7": (100, "BTS^1^1"),
}

# Expected number of messages per multi-message file (everything else holds one).
MESSAGE_COUNTS = {
    "hapi-hl7v2/example_oml_o21.hl7": 13,
    "hapi-hl7v2/messages.txt": 18,
    "mirth-connect/batch01_SIU_multi.hl7": 3,
    "mirth-connect/batch03_ADT_A40_ORU_R01.hl7": 2,
    "python-hl7/sample_batch1.hl7": 2,
    "python-hl7/sample_batch2.hl7": 2,
    "python-hl7/sample_file1.hl7": 3,
    "python-hl7/sample_file2.hl7": 2,
    "synthetic-vn/batch_fhs_bhs_two_adt.hl7": 2,
    "synthetic-vn/edge_dup_control_id.hl7": 2,
    "synthetic-vn/edge_not_hl7.hl7": 0,
}


def rel(path: Path) -> str:
    return path.relative_to(DATA_DIR).as_posix()


def read(name: str) -> bytes:
    return (DATA_DIR / name).read_bytes()


def naive_msh(message: bytes) -> tuple[str, str, str]:
    """(MSH-9, MSH-10, MSH-12.1) read the simplest possible way, raw (still escaped)."""
    text = message.decode("utf-8", errors="replace").lstrip("\ufeff")
    first = text.replace("\r\n", "\r").replace("\n", "\r").split("\r")[0]
    fs = first[3]
    comp = first[4]
    fields = first.split(fs)  # fields[n - 1] is MSH-n for n >= 2

    def f(n: int) -> str:
        return fields[n - 1] if len(fields) >= n else ""

    return f(9), f(10).strip(), f(12).split(comp)[0].strip()
