"""Shared test configuration: seeded randomness and hypothesis profiles.

Profiles: ``ci`` (default; more examples, no deadline, derandomized so a CI
run is reproducible) and ``dev`` (fast).  Select with HYPOTHESIS_PROFILE.
"""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=300, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=50, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def rng() -> random.Random:
    """A seeded RNG: every test that needs randomness gets the same stream."""
    return random.Random(0x7E2ED0)


@pytest.fixture(autouse=True)
def _restore_proxy_logger():
    """``cli.main()`` configures the ``proxy`` logger (own handler, no
    propagation); put it back after every test so caplog sees later logs."""
    import logging

    logger = logging.getLogger("proxy")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:] = saved[0]
    logger.level, logger.propagate = saved[1], saved[2]
