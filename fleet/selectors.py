"""fleet.selectors — the old home of ``--limit firmware:…`` and ``product:…``.

The whole ``--limit`` language now lives in :mod:`fleet.inventory.select`; this module only keeps
the old import path working.
"""

from .inventory.select import (
    Recorded,
    firmware_test,
    no_record_hint,
    product_test,
    version_parts,
)

__all__ = ["Recorded", "firmware_test", "no_record_hint", "product_test", "version_parts"]
