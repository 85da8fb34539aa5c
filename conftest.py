"""Test fixtures shared by the core's and the plugins' tests."""

import os

from hypothesis import HealthCheck, settings

pytest_plugins = ["bridge.testing.fixtures"]

# Property-based tests (tests/test_fuzz.py): CI runs a small derandomized budget, reproducible
# and within the suite's time; run a longer search locally with
#   HYPOTHESIS_PROFILE=long uv run pytest tests/test_fuzz.py
settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("long", max_examples=3000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
