"""Fleet analysis: the page_owner captures of many hosts, aggregated on Dask.

`discover` finds captures and their sidecars, `table` holds the mergeable per-host
partial tables, `job` runs the reading and the tree reduction on a dask.distributed
cluster, `results` ranks the merged table, `export` writes Parquet and `simulate` boots a
fleet of simulated machines. Dask and pyarrow come with the `pageowner[fleet]` extra and
are imported only by `job` and `export`; `require_extra` tells how to get them.
"""

from __future__ import annotations

import importlib

from pageowner.errors import PageOwnerError

__all__ = ["INSTALL_HINT", "FleetExtraMissing", "require_extra"]

INSTALL_HINT = "pip install 'pageowner[fleet]'"


class FleetExtraMissing(PageOwnerError):
    """Dask or pyarrow is not installed."""


def require_extra() -> None:
    """Raise FleetExtraMissing, saying how to install it, unless the fleet extra is there."""
    for module in ("distributed", "pyarrow"):
        try:
            importlib.import_module(module)
        except ImportError:
            raise FleetExtraMissing(
                f"fleet needs dask.distributed and pyarrow ({module} is missing): "
                f"{INSTALL_HINT} (in a checkout: .venv/bin/pip install -e '.[fleet]')"
            ) from None
