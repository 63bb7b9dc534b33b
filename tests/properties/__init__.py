"""Property tests (hypothesis) for the parsers and normalisers, and the MLLP fuzz target.

Every test here uses ``BOUNDED`` (or ``scaled(n)`` examples): a fixed number of examples,
derandomized, so that ``make test`` costs the same time every run and a failure reproduces
exactly. ``HIS_PROPERTY_SCALE=20 pytest tests/properties`` runs twenty times as many examples,
randomized, for a longer hunt.
"""

import os

from hypothesis import HealthCheck, settings

SCALE = int(os.environ.get("HIS_PROPERTY_SCALE", "1"))


def scaled(examples: int) -> int:
    return examples * SCALE


BOUNDED = settings(
    max_examples=scaled(150),
    deadline=None,
    derandomize=SCALE == 1,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
