"""Root conftest: registers the emref harness as a pytest plugin.

The environment is fixed here, before anything imports numba or matplotlib:
each pytest-xdist worker gets ``cores // workers`` numba threads (at least 1)
so that workers do not oversubscribe the cores, and matplotlib draws with Agg.
"""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
if "PYTEST_XDIST_WORKER_COUNT" in os.environ and "NUMBA_NUM_THREADS" not in os.environ:
    workers = max(1, int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ["NUMBA_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))

pytest_plugins = ["harness.plugin"]
