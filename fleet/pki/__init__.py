"""fleet.pki — keys, certificates, fingerprints, PEM bundles and signers."""

from .certs import (
    CaCertificate,
    fingerprint,
    load_ca_files,
    normalize_fingerprint,
    oneline_name,
    parse_pem_certificates,
)

__all__ = [
    "CaCertificate",
    "fingerprint",
    "load_ca_files",
    "normalize_fingerprint",
    "oneline_name",
    "parse_pem_certificates",
]
