"""Every verb against a fleet of mixed RoomOS releases and products (roomsim `--firmware mix`:
9.15, 10.19, 11.24.1, 11.27.2.0, 26.1.1 and 26.4.1 on codecs, boards, a Room Navigator...).

What is checked, over real sockets and real TLS, with the real SCEP server:

* roomsim's request log holds no command, parameter, value or configuration write outside the
  receiving device's release and product (its `violations()` check);
* every device ends changed, ok, or skipped with a reason that names the release it needs —
  none fails because of what certfleet sent;
* certfleet read each device's release and product once per run, and reports them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from certfleet.fleet.pki.certs import fingerprint

CA_PASS = "mix-ca-passphrase-5521"
JOURNAL_PASS = "mix-journal-passphrase-8817"
RELEASE = re.compile(r"RoomOS \d+\.\d+")


@pytest.fixture
def mix(tmp_path: Path) -> Iterator[Any]:
    from certfleet.roomsim import SimFleetThread

    with SimFleetThread(tmp_path / "mix", devices=8, firmware="mix") as fleet:
        yield fleet


def mix_inventory(sim: Any, lab: Path, tmp_path: Path) -> str:
    """The sim's inventory, trusting the sim CA and the lab CA (HTTPS gets rotated to the lab
    CA), with a certificate template for CSRs and SCEP."""
    both = tmp_path / "device-cas.pem"
    both.write_text(sim.ca_pem_path.read_text() + (lab / "ca.pem").read_text())
    inv = yaml.safe_load(sim.inventory_path.read_text())
    inv["defaults"]["verify"] = f"ca:{both}"
    inv["defaults"]["certificate"] = {"key": "ec-p256", "subject": {"O": "Example", "C": "NO"},
                                      "san_ip": ["{host}"], "san_dns": ["{name}.rooms.example"]}
    path = tmp_path / "mix.yaml"
    path.write_text(yaml.safe_dump(inv))
    return str(path)


def release_of(sim: Any, name: str) -> tuple[int, ...]:
    return tuple(int(p) for p in sim.devices[name].firmware.release.split("."))


def check_run(sim: Any, result: Any, verb: str, *, skipped: set[str] | None = None
              ) -> dict[str, dict[str, Any]]:
    """Exit 0; every device changed/ok, or skipped naming a release; nothing outside any
    device's release was sent. Returns the devices' entries by name."""
    assert result.exit_code == 0, f"{verb}: {result.output}"
    doc = result.json()
    by_name = {d["device"]: d for d in doc["devices"]}
    assert set(by_name) == set(sim.devices)
    for name, entry in by_name.items():
        assert entry["outcome"] in ("changed", "ok", "skipped"), (verb, name, entry)
        if entry["outcome"] == "skipped":
            assert RELEASE.search(entry["reason"]), (verb, name, entry["reason"])
            assert name in entry["reason"]
    if skipped is not None:
        assert {n for n, e in by_name.items() if e["outcome"] == "skipped"} == skipped, verb
    assert doc["summary"]["failed"] == 0 and doc["summary"]["skipped"] == len(
        [e for e in by_name.values() if e["outcome"] == "skipped"])
    assert sim.violations() == [], verb
    return by_name


@pytest.mark.slow
def test_every_verb_fits_every_release(mix: Any, lab: Path, scep_server: Any, corp_ca: Any,
                                       tmp_path: Path, cli: Any,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    sim = mix
    inv = mix_inventory(sim, lab, tmp_path)
    names = list(sim.devices)
    no_scep = {n for n in names if release_of(sim, n) < (11,)}
    navigators = {n for n in names if sim.devices[n].firmware.product.code == "vecchio"}
    assert no_scep and navigators  # the mix has both

    # status: each device's release and product, read once, in JSON and in the table
    status = cli("status", "-i", inv, "-o", "json")
    by_name = check_run(sim, status, "status", skipped=set())
    for name, entry in by_name.items():
        fw = sim.devices[name].firmware
        assert entry["firmware"]["version"].startswith(fw.release)
        assert entry["firmware"]["product"] == fw.product.product_id
        gets = [c for c in entry["calls"] if c["path"] == "Status/SystemUnit"]
        assert len(gets) == 1
    table = cli("status", "-i", inv)
    assert table.exit_code == 0 and "RoomOS" in table.stdout and "9.15.17.4" in table.stdout

    # the journal remembers them: --limit by release and product, before any contact
    old = cli("inventory", "list", "-i", inv, "--limit", "firmware:<11", "-o", "json")
    assert old.exit_code == 0, old.output
    assert {d["name"] for d in old.json()["devices"]} == no_scep
    nav = cli("inventory", "list", "-i", inv, "--limit", "product:Room Navigator")
    assert nav.exit_code == 0 and "11.24.1" in nav.stdout

    # push-ca with SyncToPeripherals (where the product has it), then --prune
    _, corp_pem = corp_ca
    pushed = cli("push-ca", "-i", inv, str(corp_pem), "--sync-to-peripherals", "on", "-o",
                 "json")
    by_name = check_run(sim, pushed, "push-ca", skipped=set())
    for name in navigators | no_scep:
        assert "SyncToPeripherals" in by_name[name]["message"]
    pruned = cli("push-ca", "-i", inv, str(corp_pem), "--prune", "--yes", "-o", "json")
    check_run(sim, pruned, "push-ca --prune", skipped=set())

    # csr (no device), signed by the lab CA, pushed for 802.1X on every release
    out = tmp_path / "csrs"
    made = cli("csr", "-i", inv, "--out", str(out))
    assert made.exit_code == 0, made.output
    for name in names:
        signed = cli("ca", "sign", str(out / f"{name}.csr.pem"), "--dir", str(lab),
                     "--passphrase", "env:CERTFLEET_CA_PASSPHRASE",
                     "--out", str(out / f"{name}.pem"))
        assert signed.exit_code == 0, signed.output
    cert = cli("push-cert", "-i", inv, "--purpose", "802.1X", "--dir", str(out), "--ca-file",
               str(lab / "ca.pem"), "-o", "json")
    check_run(sim, cert, "push-cert", skipped=set())

    rotated = cli("rotate", "-i", inv, "--purpose", "HTTPS", "--signer", "local-ca",
                  "--ca-dir", str(lab), "--renew-before", "400d", "-o", "json")
    by_name = check_run(sim, rotated, "rotate", skipped=set())
    assert all(e["outcome"] == "changed" for e in by_name.values())

    # enroll: 9.15 and 10.19 have no SCEP; the renewal profile's challenge only from 26.1.1
    monkeypatch.setenv("TEST_SCEP_CHALLENGE", scep_server.challenge)
    enrolled = cli("enroll", "-i", inv, "--scep", scep_server.url, "--ca-fingerprint",
                   scep_server.ca_sha256, "--challenge", "env:TEST_SCEP_CHALLENGE",
                   "--purpose", "802.1X", "--renewal-profile", "-o", "json")
    by_name = check_run(sim, enrolled, "enroll", skipped=no_scep)
    for name in no_scep:
        assert by_name[name]["reason"].startswith("SCEP enrollment needs RoomOS 11.23.1 or "
                                                  f"later; {name} runs ")
    for name in set(names) - no_scep:
        assert by_name[name]["outcome"] == "changed"
        assert len(sim.devices[name].profiles) == 1
        if release_of(sim, name) < (26, 1):
            assert "without its challenge" in by_name[name]["message"]
    assert scep_server.challenge not in enrolled.output

    ca = x509.load_pem_x509_certificate(scep_server.ca_pem.read_bytes())
    ca_sha1 = fingerprint(ca)
    listed = cli("renewal", "list", "-i", inv, "-o", "json")
    by_name = check_run(sim, listed, "renewal list", skipped=no_scep)
    assert all(by_name[n]["facts"]["profiles"][0]["fingerprint"] == ca_sha1
               for n in set(names) - no_scep)
    reset = cli("renewal", "set", "-i", inv, "--ca-fingerprint", ca_sha1, "--url",
                scep_server.url, "--challenge", "env:TEST_SCEP_CHALLENGE", "-o", "json")
    check_run(sim, reset, "renewal set", skipped=no_scep)
    deleted = cli("renewal", "delete", "-i", inv, "--ca-fingerprint", ca_sha1, "-o", "json")
    by_name = check_run(sim, deleted, "renewal delete", skipped=no_scep)
    assert all(not sim.devices[n].profiles for n in names)

    # wired 802.1X everywhere (9.15/10.19 cannot show it coming up: set, not verified)
    wired = cli("dot1x", "-i", inv, "-o", "json")
    by_name = check_run(sim, wired, "dot1x", skipped=set())
    for name in names:
        assert by_name[name]["outcome"] == "changed"
        assert sim.devices[name].config["Network[1]/IEEE8021X/Mode"] == "On"
    for name in no_scep:
        assert "not verified" in by_name[name]["message"]

    # Wi-Fi EAP-TLS: the Type each release has, Connect only from 26.1.1, no Navigator
    wifi = cli("wifi", "-i", inv, "--ssid", "corp-wifi", "-o", "json")
    by_name = check_run(sim, wifi, "wifi", skipped=navigators)
    for name in set(names) - navigators:
        step = by_name[name]["steps"][0]["detail"]
        release = release_of(sim, name)
        expected = ("Wpa-eap-tls" if release < (10,) else "Wpa2-eap-tls" if release < (11, 27)
                    else "Enterprise-Tls")
        assert step.startswith(expected + ","), (name, step)
        assert ("Connect Auto" in step) is (release >= (26, 1)), (name, step)
    for name in navigators:
        assert "Wi-Fi EAP-TLS is not available on this product" in by_name[name]["reason"]


@pytest.mark.parametrize("transport", ["websocket", "cloud"])
def test_other_transports_fit_every_release(tmp_path: Path, cli: Any, corp_ca: Any,
                                            transport: str) -> None:
    """The same reading and choices over JSON-RPC and the Webex cloud: status reports each
    release, push-ca syncs where the product can, renewal list and wifi skip what a release
    lacks — and nothing outside a device's release reaches it."""
    from certfleet.roomsim import SimFleetThread

    with SimFleetThread(tmp_path / "mix", devices=8, firmware="mix",
                        cloud=transport == "cloud") as sim:
        if transport == "cloud":
            inv_path = tmp_path / "webex.yaml"
            imported = cli("inventory", "import-webex", "--api-url", sim.cloud_url,
                           "--token", f"file:{sim.state_dir}/cloud-token",
                           "--api-verify", f"ca:{sim.ca_pem_path}", "--out", str(inv_path))
            assert imported.exit_code == 0, imported.output
        else:
            inv_data = yaml.safe_load(sim.inventory_path.read_text())
            inv_data["defaults"]["transport"] = "websocket"
            inv_path = tmp_path / "ws.yaml"
            inv_path.write_text(yaml.safe_dump(inv_data))
        inv = str(inv_path)
        names = list(sim.devices)
        no_scep = {n for n in names if release_of(sim, n) < (11,)}
        navigators = {n for n in names if sim.devices[n].firmware.product.code == "vecchio"}

        status = cli("status", "-i", inv, "-o", "json")
        by_name = check_run(sim, status, f"{transport} status", skipped=set())
        for name, entry in by_name.items():
            assert entry["firmware"]["version"].startswith(sim.devices[name].firmware.release)
        _, corp_pem = corp_ca
        pushed = cli("push-ca", "-i", inv, str(corp_pem), "--sync-to-peripherals", "on",
                     "-o", "json")
        check_run(sim, pushed, f"{transport} push-ca", skipped=set())
        listed = cli("renewal", "list", "-i", inv, "-o", "json")
        check_run(sim, listed, f"{transport} renewal list", skipped=no_scep)
        wifi = cli("wifi", "-i", inv, "--ssid", "corp-wifi", "--force", "-o", "json")
        check_run(sim, wifi, f"{transport} wifi", skipped=navigators)
