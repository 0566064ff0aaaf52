"""With no `certificate:` in the inventory, `rotate --purpose HTTPS` works: the default template
names the device's host in the subjectAltName, so the certificate passes the HTTPS check and
the new TLS handshake."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from test_rotate import served_certificate, sha1


def test_rotate_https_with_the_default_template_on_roomsims_inventory(
    sim: Any, lab: Path, tmp_path: Path, cli: Any
) -> None:
    inv = yaml.safe_load(sim.inventory_path.read_text())
    assert "certificate" not in inv["defaults"]
    assert all("certificate" not in d for d in inv["devices"].values())
    # roomsim's own inventory, trusting the lab CA too (else certfleet would lock itself out)
    both = tmp_path / "device-cas.pem"
    both.write_text(sim.ca_pem_path.read_text() + (lab / "ca.pem").read_text())
    inv["defaults"]["verify"] = f"ca:{both}"
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inv))
    old = {name: sha1(served_certificate(sim, name)) for name in sim.devices}

    result = cli("-i", str(path), "rotate", "--purpose", "HTTPS", "--signer", "local-ca",
                 "--ca-dir", str(lab), "--force", "-o", "json")
    assert result.exit_code == 0, result.output
    assert result.json()["summary"]["changed"] == len(sim.devices)
    for name in sim.devices:
        served = served_certificate(sim, name)
        assert sha1(served) != old[name]
        san = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
        cn = served.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
        assert cn == name
