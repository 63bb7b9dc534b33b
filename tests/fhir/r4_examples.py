"""The official FHIR R4 examples (npm ``hl7.fhir.r4.examples@4.0.1``, CC0), installed by
the test setup into a cache folder that git ignores.

The first run downloads the 18.8 MB package with ``npm pack`` and unpacks it; later runs
reuse the cache. Outside CI a machine without npm or network skips the tests that need it;
under ``CI=true`` that is a failure, because the conformance claim rests on these files.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PACKAGE = "hl7.fhir.r4.examples@4.0.1"
ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "fhir-r4-examples"
FILES = CACHE / "package"
FILE_COUNT = 5307  # every file of the package, package.json included
# The spec's definition Bundles (all StructureDefinitions, all ValueSets ...) repeat the
# single files of the package and weigh 1-35 MB each: validated through those files.
DEFINITION_BUNDLE_BYTES = 1_000_000


def _installed() -> bool:
    return FILES.is_dir() and sum(1 for _ in FILES.iterdir()) >= FILE_COUNT


def _install() -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is missing (`apt-get install nodejs npm`)")
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as work:
        done = subprocess.run(
            [npm, "pack", PACKAGE, "--silent", "--pack-destination", work],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        tarballs = list(Path(work).glob("*.tgz"))
        if done.returncode != 0 or not tarballs:
            raise RuntimeError(f"npm pack {PACKAGE} failed: {done.stderr.strip()[-500:]}")
        unpacked = Path(work) / "unpacked"
        with tarfile.open(tarballs[0]) as archive:
            archive.extractall(unpacked, filter="data")
        if FILES.exists():
            shutil.rmtree(FILES)
        (unpacked / "package").rename(FILES)  # whole or nothing: a half copy is never used


def require_examples() -> Path:
    """The folder of the unpacked package; installs it on first use."""
    if _installed():
        return FILES
    try:
        # The suite runs in two processes: one installs while the other waits for it.
        CACHE.mkdir(parents=True, exist_ok=True)
        with open(CACHE / ".install.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not _installed():
                _install()
    except (RuntimeError, OSError, subprocess.SubprocessError, tarfile.TarError) as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the FHIR R4 examples tests: {exc}", pytrace=False)
        pytest.skip(f"FHIR R4 examples unavailable: {exc}")
    return FILES


def example_files(types: tuple[str, ...] | set[str]) -> Iterator[Path]:
    """The example files of the given resource types (named ``Type-id.json``), in order."""
    for path in sorted(require_examples().glob("*.json")):
        resource_type = path.name.split("-", 1)[0]
        if resource_type not in types:
            continue
        if resource_type == "Bundle" and path.stat().st_size > DEFINITION_BUNDLE_BYTES:
            continue
        yield path


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))
