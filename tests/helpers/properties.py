"""The settings every hypothesis property here runs with.

deadline=None: the first example of a CLI property imports torch and matplotlib.
database=None: the properties write nothing beside the tests (no .hypothesis folder).
derandomize=True: the same examples on every run, so a run never fails on a new draw (explore by
hand with derandomize off).
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

PROPERTY = settings(deadline=None, max_examples=60, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
CLI_PROPERTY = settings(PROPERTY, max_examples=25)
