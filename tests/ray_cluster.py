"""A local Ray cluster for the tests that run partitions as Ray actors (not a test module).

CI installs the ``distributed`` extra, so there a missing Ray is a failure, not a skip.
"""
from __future__ import annotations

import os

import pytest


def import_ray():
    if os.environ.get("CI"):
        import ray  # CI installs onnxc[distributed]: Ray must be there

        return ray
    return pytest.importorskip("ray", reason="Ray is optional: pip install 'onnxc[distributed]'")


def start_local_cluster():
    """A 2-CPU Ray instance in this process's session; the caller shuts it down."""
    ray = import_ray()
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    return ray
