"""fleet.inventory — load, validate and select from YAML inventories of RoomOS devices.

An inventory has three top-level sections::

    defaults:   settings every device starts from
    groups:     named sets of settings (and tags) that devices join with ``groups: [...]``
    devices:    one entry per device, in the order the fleet is worked through

Settings merge in this order: defaults, then each group in the order the device lists them, then
the device's own keys. ``tags`` accumulate (union); ``certificate`` merges key by key, and its
``subject`` RDN by RDN. Everything is checked in one pass: :func:`load_inventory` raises a single
:class:`~fleet.errors.InventoryError` whose ``problems`` holds every problem found, each located
at file, line and key path (``devices.room-1.pasword``).

The inventory never holds a secret: ``password`` and ``token`` are references
(``env:VAR``, ``keyring:SERVICE/USER``, ``file:PATH``, see :mod:`fleet.secrets`), resolved only
when a device is contacted.

:meth:`Inventory.select` implements ``--limit`` (:mod:`fleet.inventory.select`): names, globs,
``tag:x``, ``group:y``, ``@set`` (for instance ``@failed``, the devices that failed in the last
run), ``firmware:…``, ``product:…`` and ``!`` to exclude.

The package, by concept: :mod:`~fleet.inventory.model` (devices, groups, :class:`Verify`),
:mod:`~fleet.inventory.template` (certificate templates), :mod:`~fleet.inventory.select`
(``--limit``), :mod:`~fleet.inventory.yaml_nodes` (YAML with line numbers, ``<<`` merges and the
alias budget), :mod:`~fleet.inventory.fields` (each setting's reader),
:mod:`~fleet.inventory.layers` (how defaults, groups and devices merge),
:mod:`~fleet.inventory.checks` (single values) and :mod:`~fleet.inventory.loader`.
"""

from .loader import load_inventory
from .model import (
    DEFAULT_API_RATE_PER_MINUTE,
    DEFAULT_API_URL,
    MAX_API_RATE_PER_MINUTE,
    TRANSPORTS,
    VERIFY_FORMS,
    Device,
    Group,
    Inventory,
    Verify,
    VerifyMode,
    parse_verify,
)
from .template import (
    KEY_TYPES,
    PLACEHOLDERS,
    SUBJECT_KEYS,
    CertificateTemplate,
    FrozenMapping,
    RenderedCertificate,
)

__all__ = [
    "DEFAULT_API_RATE_PER_MINUTE",
    "DEFAULT_API_URL",
    "KEY_TYPES",
    "MAX_API_RATE_PER_MINUTE",
    "PLACEHOLDERS",
    "SUBJECT_KEYS",
    "TRANSPORTS",
    "VERIFY_FORMS",
    "CertificateTemplate",
    "Device",
    "FrozenMapping",
    "Group",
    "Inventory",
    "RenderedCertificate",
    "Verify",
    "VerifyMode",
    "load_inventory",
    "parse_verify",
]
