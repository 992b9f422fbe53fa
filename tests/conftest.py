"""Suite-wide pytest settings."""
from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Under ``pytest -n N``, keep each ``xdist_group``'s tests on one worker, so an expensive
    module fixture (a ResNet-50 compile, torch's exporter warming up) runs once, not per worker.
    Tests without the mark are spread one by one as before."""
    if getattr(config.option, "dist", "no") == "load":
        config.option.dist = "loadgroup"
