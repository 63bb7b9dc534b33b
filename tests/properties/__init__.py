"""Property tests (hypothesis) for the parsers and normalisers, and the MLLP fuzz target.

Every test here uses ``BOUNDED`` (or a stated multiple of it): a fixed number of examples,
derandomized, so a run costs the same time every time and a failure reproduces exactly.
"""

from hypothesis import HealthCheck, settings

BOUNDED = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
