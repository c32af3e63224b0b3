"""Test-wide settings.

Hypothesis: no per-example deadline (these 2-core machines are often busy, and
a slow example is not a wrong one); under CI the examples are derandomized, so
a run on the same code always explores the same inputs and a red build means a
real regression, while local runs keep exploring new ones.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("default", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "default")
