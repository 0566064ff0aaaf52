"""Tests for fleet.inventory: loading, validation, merging, templates and --limit selection."""

from __future__ import annotations

import contextlib
import datetime as dt
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certfleet.fleet.errors import InputError, InventoryError, SelectionError
from certfleet.fleet.inventory import (
    CertificateTemplate,
    Device,
    FrozenMapping,
    Inventory,
    RenderedCertificate,
    Verify,
    load_inventory,
    parse_verify,
)
from certfleet.fleet.secrets import SecretRef

EXAMPLE = Path(__file__).resolve().parents[2] / "inventories" / "example.yaml"
PIN = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def write(folder: Path, text: str, name: str = "inventory.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def problems_of(path: Path) -> list[InventoryError]:
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    return info.value.problems


def only_problem(path: Path) -> InventoryError:
    found = problems_of(path)
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


@pytest.fixture(scope="session")
def ca_pem(tmp_path_factory: pytest.TempPathFactory) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Device CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = tmp_path_factory.mktemp("ca") / "device-ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


# ------------------------------------------------------------------------ good files


def test_example_inventory_loads() -> None:
    inventory = load_inventory(EXAMPLE)
    assert len(inventory.devices) >= 6
    transports = {d.transport for d in inventory.devices.values()}
    assert {"local", "cloud"} <= transports
    assert {"oslo", "bergen"} <= set(inventory.groups)
    cloud = next(d for d in inventory.devices.values() if d.transport == "cloud")
    assert cloud.device_id and cloud.token is not None and cloud.token.scheme == "env"
    assert any(d.password and d.password.scheme == "keyring" for d in inventory.devices.values())
    for device in inventory.devices.values():
        device.certificate.render(device)  # every template renders for its device


def test_design_example_loads(tmp_path: Path, ca_pem: Path) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "device-ca.pem").write_bytes(ca_pem.read_bytes())
    path = write(
        tmp_path,
        """
        defaults:
          transport: local                  # local | cloud | websocket
          username: admin
          password: keyring:certfleet/admin # or env:VAR or file:PATH; never a literal secret
          verify: ca:certs/device-ca.pem    # or pin:sha256:<64 hex>, or system, or insecure
          certificate: {key: rsa-2048, subject: {O: Example, C: NO}, san_dns: ["{name}.rooms.example.com"]}
        groups:
          oslo: {tags: [norway], timezone: Europe/Oslo}
        devices:
          oslo-board-1: {host: board-1.oslo.rooms.example.com, groups: [oslo], tags: [board]}
          bergen-desk-7: {transport: cloud, device_id: Y2lzY29zcGFyazovL}
          room-001: {host: 127.0.0.1, port: 40123, groups: [oslo]}
        """,
    )
    inventory = load_inventory(path)
    assert list(inventory.devices) == ["oslo-board-1", "bergen-desk-7", "room-001"]
    board = inventory.devices["oslo-board-1"]
    assert board == Device(
        name="oslo-board-1",
        host="board-1.oslo.rooms.example.com",
        port=443,
        transport="local",
        username="admin",
        password=SecretRef("keyring", "certfleet/admin"),
        token=None,
        device_id=None,
        verify=Verify("ca", ca_path=tmp_path / "certs" / "device-ca.pem"),
        groups=("oslo",),
        tags=("board", "norway"),
        timezone="Europe/Oslo",
        certificate=CertificateTemplate(
            key="rsa-2048",
            subject={"O": "Example", "C": "NO"},
            san_dns=("{name}.rooms.example.com",),
        ),
        source=f"{path}:10",
    )
    assert board.certificate.subject["C"] == "NO"  # a bare NO is not YAML's false here
    assert inventory.devices["room-001"].port == 40123
    cloud = inventory.devices["bergen-desk-7"]
    assert (cloud.transport, cloud.host, cloud.device_id) == ("cloud", None, "Y2lzY29zcGFyazovL")
    assert inventory.groups["oslo"].devices == ("oslo-board-1", "room-001")
    assert inventory.groups["oslo"].tags == ("norway",)
    assert inventory.groups["oslo"].source == f"{path}:8"
    assert inventory.warnings == []
    assert inventory.path == path.absolute()
    assert hash(board) == hash(board)  # devices are hashable (usable as keys)


def test_minimal_device_defaults(tmp_path: Path) -> None:
    inventory = load_inventory(write(tmp_path, "devices:\n  r1: {host: r1.example.com}\n"))
    device = inventory.devices["r1"]
    assert (device.port, device.transport, device.verify) == (443, "local", Verify("system"))
    assert (device.username, device.password, device.token, device.timezone) == (None,) * 4
    assert device.certificate == CertificateTemplate()
    assert device.certificate.subject == {"CN": "{name}"}
    assert device.source == f"{tmp_path / 'inventory.yaml'}:2"


def test_empty_defaults_and_groups_sections_are_fine(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        defaults:
        groups:
        devices:
          r1: {host: 10.0.0.1}
        """,
    )
    assert list(load_inventory(path).devices) == ["r1"]


def test_yaml_anchors_and_merge_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        groups:
          base: &base {tags: [a]}
        devices:
          r1: &dev {host: 10.0.0.1, port: 8443, tags: [x]}
          r2:
            <<: *dev
            host: 10.0.0.2
          r3: {<<: [{port: 1}, {port: 2, host: h3}]}
        """,
    )
    inventory = load_inventory(path)
    assert inventory.devices["r2"].host == "10.0.0.2"
    assert inventory.devices["r2"].port == 8443
    assert inventory.devices["r2"].tags == ("x",)
    assert (inventory.devices["r3"].host, inventory.devices["r3"].port) == ("h3", 1)


def test_recursive_alias_does_not_hang(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        devices:
          r1: &r {host: h1, <<: *r}
        """,
    )
    # PyYAML lets an alias refer to its own (unfinished) anchor; the loader must terminate
    with contextlib.suppress(InventoryError):
        load_inventory(path)


# ---------------------------------------------------------------- unknown keys, types


def test_typo_is_reported_with_line_key_path_and_suggestion(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        defaults:
          username: admin
        devices:
          room-1:
            host: 10.0.0.1
            pasword: env:CERTFLEET_PASSWORD
        """,
    )
    problem = only_problem(path)
    assert problem.file == str(path)
    assert problem.line == 6
    assert problem.key == "devices.room-1.pasword"
    assert "did you mean 'password'?" in problem.reason
    assert str(problem).startswith(f"{path}:6: devices.room-1.pasword: ")


def test_unknown_key_without_close_match_lists_allowed_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "devices:\n  r1: {host: h, colour: blue}\n")
    problem = only_problem(path)
    assert problem.key == "devices.r1.colour"
    assert "allowed in a device: transport, username, password" in problem.reason


def test_typo_of_host_does_not_also_report_missing_host(tmp_path: Path) -> None:
    problem = only_problem(write(tmp_path, "devices:\n  r1: {hots: 10.0.0.1}\n"))
    assert "did you mean 'host'?" in problem.reason


@pytest.mark.parametrize(
    ("text", "line", "key", "fragment"),
    [
        ("extra: 1\ndevices: {r: {host: h}}\n", 1, "extra", "allowed in the top level"),
        ("device: {r: {host: h}}\n", 1, "device", "did you mean 'devices'?"),
        (
            "defaults: {host: h}\ndevices: {r: {host: h}}\n",
            1,
            "defaults.host",
            "only be set on a device",
        ),
        (
            "groups: {g: {groups: [x]}}\ndevices: {r: {host: h}}\n",
            1,
            "groups.g.groups",
            "only be set on a device",
        ),
        (
            "devices:\n  r:\n    host: h\n    certificate: {sans: [a]}\n",
            4,
            "devices.r.certificate.sans",
            "unknown key 'sans'",
        ),
        (
            "devices:\n  r:\n    host: h\n    certificate: {subject: {cn: x}}\n",
            4,
            "devices.r.certificate.subject.cn",
            "did you mean 'CN'?",
        ),
    ],
)
def test_unknown_keys_everywhere(
    tmp_path: Path, text: str, line: int, key: str, fragment: str
) -> None:
    problem = only_problem(write(tmp_path, text))
    assert (problem.line, problem.key) == (line, key)
    assert fragment in problem.reason


@pytest.mark.parametrize(
    ("device", "key", "fragment"),
    [
        (
            "{host: h, tags: board}",
            "devices.r.tags",
            "must be a list, not text (for a single item write [board])",
        ),
        ("{host: h, groups: g}", "devices.r.groups", "must be a list"),
        ("{host: h, port: '443'}", "devices.r.port", "whole number"),
        ("{host: h, port: 4.5}", "devices.r.port", "whole number"),
        ("{host: h, port: true}", "devices.r.port", "whole number"),
        ("{host: h, port: 0}", "devices.r.port", "out of range 1..65535"),
        ("{host: h, port: 65536}", "devices.r.port", "out of range 1..65535"),
        ("{host: h, port: }", "devices.r.port", "whole number"),
        ("{host: [a, b]}", "devices.r.host", "must be text, not a list"),
        ("{host: }", "devices.r.host", "has no value"),
        ("{host: ''}", "devices.r.host", "is empty"),
        ("{host: 'https://room.example.com'}", "devices.r.host", "not a URL"),
        ("{host: 'room.example.com:8443'}", "devices.r.host", "put the port in port:"),
        ("{host: 'bad host'}", "devices.r.host", "not a valid host name"),
        ("{host: h, username: {a: b}}", "devices.r.username", "must be text, not a mapping"),
        ("{host: h, transport: https}", "devices.r.transport", "unknown transport 'https'"),
        ("{host: h, transport: locl}", "devices.r.transport", "did you mean 'local'?"),
        ("{host: h, timezone: Europe/Osloo}", "devices.r.timezone", "did you mean 'Europe/Oslo'?"),
        ("{host: h, timezone: ../../etc/passwd}", "devices.r.timezone", "unknown timezone"),
        ("{host: h, certificate: [a]}", "devices.r.certificate", "must be a mapping"),
        (
            "{host: h, certificate: {key: rsa-1024}}",
            "devices.r.certificate.key",
            "unknown key type",
        ),
        (
            "{host: h, certificate: {subject: O}}",
            "devices.r.certificate.subject",
            "must be a mapping",
        ),
        ("{host: h, tags: [a b]}", "devices.r.tags[0]", "no spaces or commas"),
        ("{host: h, tags: [!x y]}", "devices.r.tags[0]", "unsupported YAML tag"),
        ("{host: h, tags: [[a]]}", "devices.r.tags[0]", "must be text, not a list"),
        ("{transport: cloud, device_id: 'a b'}", "devices.r.device_id", "spaces"),
        ("[h]", "devices.r", "must be a mapping of settings, not a list"),
    ],
)
def test_wrong_types_and_values(tmp_path: Path, device: str, key: str, fragment: str) -> None:
    problem = only_problem(write(tmp_path, f"devices:\n  r: {device}\n"))
    assert problem.key == key
    assert problem.line == 2
    assert fragment in problem.reason


def test_duplicate_keys_are_errors(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        devices:
          r1:
            host: 10.0.0.1
            host: 10.0.0.2
          r2: {host: h}
          r1: {host: h}
        devices: {}
        """,
    )
    found = {(p.line, p.key): p.reason for p in problems_of(path)}
    assert found[(4, "devices.r1.host")] == "duplicate key 'host' (first on line 3)"
    assert found[(6, "devices.r1")] == "duplicate key 'r1' (first on line 2)"
    assert found[(7, "devices")] == "duplicate key 'devices' (first on line 1)"


@pytest.mark.parametrize("name", ["bad name", "-lead", ".hidden", "a/b", "ÿ", "a:b", "x*"])
def test_device_names_must_be_file_name_safe(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, f"devices:\n  {yaml.safe_dump(name).splitlines()[0]}: {{host: h}}\n")
    problem = only_problem(path)
    assert problem.key == f"devices.{name}"
    assert "must start with a letter or digit" in problem.reason


def test_device_names_that_yaml_would_retype_stay_text(tmp_path: Path) -> None:
    path = write(tmp_path, "devices:\n  123: {host: h}\n  yes: {host: h2}\n  1.5: {host: h3}\n")
    assert list(load_inventory(path).devices) == ["123", "yes", "1.5"]


def test_unknown_group_is_an_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        groups:
          oslo: {}
        devices:
          r1: {host: h, groups: [oslo, osl]}
        """,
    )
    problem = only_problem(path)
    assert (problem.line, problem.key) == (4, "devices.r1.groups[1]")
    assert "unknown group 'osl' (did you mean 'oslo'?)" in problem.reason


def test_group_listed_twice_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "groups: {g: {}}\ndevices:\n  r1: {host: h, groups: [g, g]}\n")
    assert "listed twice" in only_problem(path).reason


@pytest.mark.parametrize(
    ("device", "fragment"),
    [
        ("{port: 8443}", "transport local needs host:"),
        ("{transport: websocket}", "transport websocket needs host:"),
        ("{transport: cloud}", "transport cloud needs device_id:"),
        ("{transport: cloud, host: h}", "transport cloud needs device_id:"),
        ("", "the device has no settings"),
    ],
)
def test_transport_requirements(tmp_path: Path, device: str, fragment: str) -> None:
    problem = only_problem(write(tmp_path, f"devices:\n  r1: {device}\n"))
    assert (problem.line, problem.key) == (2, "devices.r1")
    assert fragment in problem.reason


def test_transport_and_host_can_come_from_defaults_and_groups(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        defaults: {transport: cloud}
        groups:
          lan: {transport: websocket}
        devices:
          c1: {device_id: abc}
          w1: {host: w1.example.com, groups: [lan]}
          l1: {host: l1.example.com, groups: [lan], transport: local}
        """,
    )
    devices = load_inventory(path).devices
    assert [d.transport for d in devices.values()] == ["cloud", "websocket", "local"]


# --------------------------------------------------------------------------- secrets


@pytest.mark.parametrize(
    ("line", "literal"),
    [
        ("password: hunter2-but-longer", "hunter2-but-longer"),
        ("password: 'Pa55:word!'", "Pa55:word!"),
        ("password: 123456789", "123456789"),
        ("token: ZmFrZS10b2tlbi1mb3ItdGVzdHM=", "ZmFrZS10b2tlbi1mb3ItdGVzdHM="),
    ],
)
def test_literal_secrets_are_refused_without_echoing_them(
    tmp_path: Path, line: str, literal: str
) -> None:
    path = write(tmp_path, f"devices:\n  r1:\n    host: h\n    {line}\n")
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    problem = info.value
    field = line.split(":")[0]
    assert (problem.line, problem.key) == (4, f"devices.r1.{field}")
    assert "literal secrets are not allowed in an inventory" in problem.reason
    assert "env:VAR, keyring:SERVICE/USER or file:PATH" in problem.reason
    assert literal not in str(problem)
    assert all(literal not in str(p) for p in problem.problems)


def test_secret_references_are_parsed(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    path = write(
        tmp_path,
        """
        defaults: {password: env:CERTFLEET_PASSWORD}
        devices:
          a: {host: h1}
          b: {host: h2, password: keyring:corp/certfleet/admin}
          c: {host: h3, password: file:secrets/c.txt}
          d: {host: h4, password: file:/run/secrets/d}
          e: {transport: cloud, device_id: x, token: env:WEBEX_TOKEN}
        """,
    )
    devices = load_inventory(path).devices
    assert devices["a"].password == SecretRef("env", "CERTFLEET_PASSWORD")
    assert devices["b"].password == SecretRef("keyring", "corp/certfleet/admin")
    assert devices["b"].password.keyring_service_user == ("corp/certfleet", "admin")
    # relative file: paths are relative to the inventory, like ca: paths
    assert devices["c"].password == SecretRef("file", str(tmp_path / "secrets" / "c.txt"))
    assert devices["d"].password == SecretRef("file", "/run/secrets/d")
    assert devices["e"].token == SecretRef("env", "WEBEX_TOKEN")


def test_file_secret_of_a_loaded_inventory_resolves_from_another_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "pw"
    secret.write_text("sim-password-123\n")
    secret.chmod(0o600)
    path = write(tmp_path, "devices:\n  r1: {host: 127.0.0.1, port: 40001, password: file:pw}\n")
    monkeypatch.chdir("/")
    device = load_inventory(path).devices["r1"]
    assert device.password is not None
    assert device.password.resolve().reveal() == "sim-password-123"


# ---------------------------------------------------------------------------- verify


def test_verify_ca_relative_to_the_inventory_folder(
    tmp_path: Path, ca_pem: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.pem").write_bytes(ca_pem.read_bytes())
    path = write(tmp_path, "defaults: {verify: ca:certs/ca.pem}\ndevices:\n  r1: {host: h}\n")
    monkeypatch.chdir("/")
    verify = load_inventory(path).devices["r1"].verify
    assert verify.mode == "ca"
    assert verify.ca_path == tmp_path / "certs" / "ca.pem"
    assert verify.ca_path is not None and verify.ca_path.is_absolute()
    assert str(verify) == f"ca:{tmp_path / 'certs' / 'ca.pem'}"


def test_verify_ca_absolute_path(tmp_path: Path, ca_pem: Path) -> None:
    path = write(tmp_path, f"devices:\n  r1: {{host: h, verify: 'ca:{ca_pem}'}}\n")
    assert load_inventory(path).devices["r1"].verify == Verify("ca", ca_path=ca_pem)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "does not exist"),
        (b"just text\n", "holds no PEM certificate"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "holds no PEM"),
        (
            b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
            "does not parse",
        ),
    ],
)
def test_verify_ca_file_must_hold_a_certificate(
    tmp_path: Path, content: bytes | None, fragment: str
) -> None:
    if content is not None:
        (tmp_path / "ca.pem").write_bytes(content)
    path = write(
        tmp_path,
        """
        devices:
          r1:
            host: h
            verify: ca:ca.pem
        """,
    )
    problem = only_problem(path)
    assert (problem.line, problem.key) == (4, "devices.r1.verify")
    assert fragment in problem.reason


def test_verify_ca_directory_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "cadir").mkdir()
    path = write(tmp_path, "devices:\n  r1: {host: h, verify: 'ca:cadir'}\n")
    assert "is a directory" in only_problem(path).reason


def test_verify_pin_forms(tmp_path: Path) -> None:
    colons = ":".join(PIN[i : i + 2] for i in range(0, 64, 2)).upper()
    path = write(
        tmp_path,
        f"""
        devices:
          r1: {{host: h, verify: 'pin:sha256:{PIN}'}}
          r2: {{host: h2, verify: 'pin:sha256:{colons}'}}
          r3: {{host: h3, verify: 'pin:SHA256:{PIN.upper()}'}}
        """,
    )
    devices = load_inventory(path).devices
    for device in devices.values():
        assert device.verify == Verify("pin", pin_sha256=PIN)
        assert str(device.verify) == f"pin:sha256:{PIN}"


@pytest.mark.parametrize(
    ("verify", "fragment"),
    [
        ("pin:sha256:abcd", "64 hex digits"),
        (f"pin:sha256:{PIN}00", "64 hex digits"),
        (f"pin:sha256:{PIN[:-1]}g", "64 hex digits"),
        (f"pin:sha1:{PIN}", "pin:sha256:<64 hex digits>"),
        ("pin:", "pin:sha256:<64 hex digits>"),
        ("ca:", "needs the path"),
        ("tofu", "use one of: ca:PATH, pin:sha256:<64 hex digits>, system or insecure"),
        ("System", "use one of"),
    ],
)
def test_verify_bad_forms(tmp_path: Path, verify: str, fragment: str) -> None:
    path = write(tmp_path, f"devices:\n  r1:\n    host: h\n    verify: '{verify}'\n")
    problem = only_problem(path)
    assert (problem.line, problem.key) == (4, "devices.r1.verify")
    assert fragment in problem.reason


def test_verify_insecure_is_warned_per_device(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        devices:
          r1: {host: h1, verify: insecure}
          r2: {host: h2}
          r3: {host: h3, verify: insecure}
        """,
    )
    inventory = load_inventory(path)
    assert inventory.devices["r1"].verify.insecure
    assert str(inventory.devices["r1"].verify) == "insecure"
    assert inventory.devices["r2"].verify == Verify("system")
    insecure = [w for w in inventory.warnings if "insecure" in w]
    assert len(insecure) == 2
    assert insecure[0].startswith("r1: verify: insecure") and f"{path}:2" in insecure[0]
    assert insecure[1].startswith("r3: ")


def test_verify_insecure_for_many_devices_is_one_summary_line(tmp_path: Path) -> None:
    lines = "".join(f"  r{i}: {{host: h{i}}}\n" for i in range(40))
    path = write(tmp_path, f"defaults: {{verify: insecure}}\ndevices:\n{lines}")
    warnings = [w for w in load_inventory(path).warnings if "insecure" in w]
    assert len(warnings) == 1
    assert warnings[0].startswith("40 devices use verify: insecure")
    assert "r0, r1, r2" in warnings[0] and "20 more" in warnings[0]


def test_parse_verify_directly(tmp_path: Path, ca_pem: Path) -> None:
    assert parse_verify("system") == Verify("system")
    assert parse_verify(f"ca:{ca_pem.name}", base_dir=ca_pem.parent).ca_path == ca_pem
    missing = parse_verify("ca:nope.pem", base_dir=tmp_path, check_file=False)
    assert missing.ca_path == tmp_path / "nope.pem"
    with pytest.raises(InputError):
        parse_verify("ca:nope.pem", base_dir=tmp_path)
    with pytest.raises(InputError):
        Verify("pin", pin_sha256="xyz")
    with pytest.raises(InputError):
        Verify("ca")


# ----------------------------------------------------------------- merging and tags


def test_groups_merge_in_order_and_tags_accumulate(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        defaults:
          username: admin
          port: 443
          tags: [fleet]
          timezone: UTC
          certificate:
            key: rsa-2048
            subject: {O: Example, C: NO, OU: IT}
            san_dns: ["{name}.example.com"]
        groups:
          oslo:
            tags: [norway, hq]
            timezone: Europe/Oslo
            username: oslo-admin
            certificate: {subject: {L: Oslo}}
          lab:
            tags: [lab, norway]
            port: 8443
            username: lab-admin
            certificate: {key: ec-p256, subject: {OU: Lab}}
        devices:
          a: {host: a.example.com, groups: [oslo, lab], tags: [board, fleet]}
          b: {host: b.example.com, groups: [lab, oslo], username: me, port: 9443}
          c:
            host: c.example.com
            certificate: {san_dns: ["{host}"], subject: {CN: "room {name}"}}
        """,
    )
    inventory = load_inventory(path)
    a, b, c = (inventory.devices[n] for n in "abc")
    assert a.tags == ("board", "fleet", "hq", "lab", "norway")
    assert a.username == "lab-admin"  # the later group wins
    assert a.port == 8443
    assert a.timezone == "Europe/Oslo"
    assert a.certificate.key == "ec-p256"
    assert dict(a.certificate.subject) == {
        "C": "NO",
        "L": "Oslo",
        "O": "Example",
        "OU": "Lab",
        "CN": "{name}",
    }
    assert a.certificate.san_dns == ("{name}.example.com",)
    assert b.username == "oslo-admin" or b.username == "me"
    assert b.username == "me"  # the device's own keys win over its groups
    assert b.port == 9443
    assert b.groups == ("lab", "oslo")
    assert c.tags == ("fleet",)
    assert c.timezone == "UTC"
    assert c.certificate.key == "rsa-2048"
    assert c.certificate.san_dns == ("{host}",)  # lists replace, they do not add up
    assert dict(c.certificate.subject) == {
        "C": "NO",
        "O": "Example",
        "OU": "IT",
        "CN": "room {name}",
    }
    assert inventory.groups["lab"].devices == ("a", "b")


def test_same_address_twice_is_a_warning(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "devices:\n  r1: {host: 127.0.0.1, port: 4001}\n  r2: {host: 127.0.0.1, port: 4001}\n"
        "  r3: {host: 127.0.0.1, port: 4002}\n",
    )
    warnings = load_inventory(path).warnings
    assert warnings == ["r1 and r2 have the same address 127.0.0.1:4001"]


# -------------------------------------------------------------------------- templates


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("{nme}.example.com", "unknown placeholder {nme}"),
        ("{0}.example.com", "unknown placeholder {0}"),
        ("{name.upper}.example.com", "unknown placeholder"),
        ("{}.example.com", "unknown placeholder {}"),
        ("{name.example.com", "unbalanced braces"),
        ("name}.example.com", "unbalanced braces"),
        ("{name!r}.example.com", "without a format or conversion"),
        ("{name:>10}.example.com", "without a format or conversion"),
    ],
)
def test_bad_templates(tmp_path: Path, template: str, fragment: str) -> None:
    path = write(
        tmp_path,
        f"""
        defaults:
          certificate:
            san_dns: ['{template}']
        devices:
          r1: {{host: h}}
        """,
    )
    problem = only_problem(path)
    assert (problem.line, problem.key) == (3, "defaults.certificate.san_dns[0]")
    assert fragment in problem.reason


@pytest.mark.parametrize(
    ("subject", "key", "fragment"),
    [
        ("{C: NOR}", "C", "two-letter country code"),
        ("{C: '1X'}", "C", "two-letter country code"),
        ("{CN: '{nam}'}", "CN", "unknown placeholder"),
        ("{O: ''}", "O", "is empty"),
        ("{CN: " + "x" * 65 + "}", "CN", "longer than 64"),
    ],
)
def test_bad_subjects(tmp_path: Path, subject: str, key: str, fragment: str) -> None:
    path = write(
        tmp_path, f"devices:\n  r1:\n    host: h\n    certificate: {{subject: {subject}}}\n"
    )
    problem = only_problem(path)
    assert problem.key == f"devices.r1.certificate.subject.{key}"
    assert fragment in problem.reason


@pytest.mark.parametrize(
    ("kind", "value", "fragment"),
    [
        ("san_ip", "10.0.0.300", "not an IP address"),
        ("san_dns", "bad_name.example.com", "not a DNS name"),
        ("san_dns", "10.0.0.1", "put it in san_ip"),
        ("san_email", "nobody", "not an e-mail address"),
        ("san_uri", "no-scheme", "not a URI"),
    ],
)
def test_static_san_values_are_checked_at_load(
    tmp_path: Path, kind: str, value: str, fragment: str
) -> None:
    path = write(
        tmp_path, f"devices:\n  r1:\n    host: h\n    certificate: {{{kind}: ['{value}']}}\n"
    )
    problem = only_problem(path)
    assert problem.key == f"devices.r1.certificate.{kind}[0]"
    assert fragment in problem.reason


def test_render_fills_placeholders(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        defaults:
          certificate:
            key: ec-p384
            subject: {CN: "{name}", OU: "{site} rooms", O: Example, C: se, L: "{group}"}
            san_dns: ["{name}.{site}.example.com", "{host}", "{name}.{site}.example.com"]
            san_ip: ["10.0.0.1", "2001:DB8::1"]
            san_email: ["rooms+{name}@example.com"]
            san_uri: ["https://{host}:{port}/", "urn:{{literal}}"]
        groups:
          oslo: {}
          extra: {}
        devices:
          room-7: {host: r7.oslo.example.com, port: 8443, groups: [oslo, extra]}
        """,
    )
    device = load_inventory(path).devices["room-7"]
    rendered = device.certificate.render(device)
    assert rendered == RenderedCertificate(
        subject=(
            ("C", "SE"),
            ("L", "oslo"),
            ("O", "Example"),
            ("OU", "oslo rooms"),
            ("CN", "room-7"),
        ),
        san_dns=("room-7.oslo.example.com", "r7.oslo.example.com"),  # duplicates dropped
        san_ip=("10.0.0.1", "2001:db8::1"),
        san_email=("rooms+room-7@example.com",),
        san_uri=("https://r7.oslo.example.com:8443/", "urn:{literal}"),
        key="ec-p384",
    )
    assert rendered.common_name == "room-7"


def test_default_template_names_the_host_in_the_san(tmp_path: Path) -> None:
    # With no SAN in the template, the device's host is named as written: a certificate with
    # no subjectAltName is refused for HTTPS, so the old default was unfit for it.
    path = write(
        tmp_path,
        """
        devices:
          by-name: {host: board-1.oslo.example.com}
          by-ipv4: {host: 127.0.0.1}
          by-ipv6: {host: "::1"}
          in-cloud: {transport: cloud, device_id: abc, token: env:T}
          key-only: {host: 127.0.0.2, certificate: {key: ec-p256}}
          own-sans: {host: 127.0.0.3, certificate: {san_dns: ["{name}.rooms.example"]}}
          no-sans: {host: 127.0.0.4, certificate: {san_dns: []}}
        """,
    )
    devices = load_inventory(path).devices

    def sans(name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        rendered = devices[name].certificate.render(devices[name])
        return rendered.san_dns, rendered.san_ip

    assert sans("by-name") == (("board-1.oslo.example.com",), ())
    assert sans("by-ipv4") == ((), ("127.0.0.1",))
    assert sans("by-ipv6") == ((), ("::1",))
    assert sans("in-cloud") == ((), ())
    assert sans("key-only") == ((), ("127.0.0.2",))
    assert sans("own-sans") == (("own-sans.rooms.example",), ())
    assert sans("no-sans") == ((), ())  # said in so many words: no SAN
    assert devices["by-name"].certificate.render(devices["by-name"]).common_name == "by-name"


def test_render_validates_san_ip_and_names_the_device() -> None:
    template = CertificateTemplate(san_ip=("10.0.{port}.1",))
    device = Device(name="room-9", host="h", port=443, certificate=template)
    with pytest.raises(InputError) as info:
        template.render(device)
    assert "room-9" in str(info.value)
    assert "'10.0.443.1' is not an IP address" in str(info.value)
    ok = Device(name="room-9", host="h", port=200, certificate=template)
    assert template.render(ok).san_ip == ("10.0.200.1",)


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        (CertificateTemplate(san_dns=("{host}",)), "uses {host} but the device has no host"),
        (
            CertificateTemplate(subject={"OU": "{group}"}),
            "uses {group} but the device has no group",
        ),
        (CertificateTemplate(san_dns=("{site}.example.com",)), "no group"),
        (CertificateTemplate(subject={"C": "{name}"}), "two-letter country code"),
        (CertificateTemplate(san_dns=("{name}.example.com",)), "not a DNS name"),
    ],
)
def test_render_errors_name_the_device(template: CertificateTemplate, fragment: str) -> None:
    device = Device(name="cloud_1", transport="cloud", device_id="x", certificate=template)
    with pytest.raises(InputError) as info:
        template.render(device)
    assert str(info.value).startswith("cloud_1: ")
    assert fragment in str(info.value)


def test_certificate_template_validates_and_is_hashable() -> None:
    template = CertificateTemplate(subject={"O": "Example", "C": "no"})
    assert list(template.subject.items()) == [("C", "NO"), ("O", "Example"), ("CN", "{name}")]
    assert isinstance(template.subject, FrozenMapping)
    assert hash(template) == hash(CertificateTemplate(subject={"C": "NO", "O": "Example"}))
    for bad in (
        {"key": "dsa-1024"},
        {"subject": {"XX": "y"}},
        {"san_dns": ("{nope}",)},
        {"san_ip": ("not-ip",)},
    ):
        with pytest.raises(InputError):
            CertificateTemplate(**bad)


# ------------------------------------------------------------------- whole-file errors


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("", None, "the inventory is empty"),
        ("# only a comment\n", None, "the inventory is empty"),
        ("- a\n- b\n", 1, "top level must be a mapping"),
        ("just text\n", 1, "top level must be a mapping"),
        ("devices:\n  r1: {host: h\n  r2: {}\n", 3, "YAML syntax error"),
        ("devices:\n  r1: [\n", 3, "YAML syntax error"),
        ("devices:\n\tr1: {}\n", 2, "YAML syntax error"),
        ("a: 1\n---\nb: 2\n", 2, "YAML syntax error"),
        ("defaults: {username: a}\n", None, "no devices"),
        ("devices:\n", 1, "no devices"),
        ("devices: {}\n", 1, "no devices"),
        ("devices: [r1, r2]\n", 1, "must map device names to settings, not a list"),
        ("groups: [a]\ndevices: {r: {host: h}}\n", 1, "must map group names to settings"),
        ("devices: {r: {host: h}}\nx: \x07\n", 2, "control characters"),
        ("devices: !!python/object:os.system {r: {host: h}}\n", 1, "unsupported YAML tag"),
    ],
)
def test_whole_file_errors(tmp_path: Path, text: str, line: int | None, fragment: str) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    first = info.value.problems[0]
    assert fragment in first.reason
    assert first.line == line
    assert first.file == str(path)


def test_deep_nesting_is_an_error_not_a_crash(tmp_path: Path) -> None:
    # What certfleet promises (an InventoryError naming the file and the line, in its own
    # words), whichever of certfleet or the YAML library notices the depth first: PyYAML 6.0.4's
    # libyaml reports "exceeded maximum nesting depth" itself at 1000 flow levels.
    for depth in (40, 200_000):
        path = tmp_path / f"deep-{depth}.yaml"
        path.write_text("devices:\n  r1: " + "[" * depth + "]" * depth + "\n")
        with pytest.raises(InventoryError) as info:
            load_inventory(path)
        assert info.value.file == str(path) and info.value.line == 2
        assert "nested more than 32 levels deep" in info.value.reason


def _merge_bomb(levels: int, fanout: int = 9) -> str:
    lines = ["groups:", "  g0: &a0 {tags: [x]}"]
    for level in range(1, levels + 1):
        refs = ", ".join([f"*a{level - 1}"] * fanout)
        lines.append(f"  g{level}: &a{level} {{<<: [{refs}]}}")
    return "\n".join([*lines, "devices:", f"  r1: {{host: h1, groups: [g{levels}]}}", ""])


def test_merge_key_bomb_fails_fast_naming_file_and_line(tmp_path: Path) -> None:
    # Each level merges nine copies of the one before: 9**7 merged mappings from 442 bytes
    # (this took 5 s before the work was bounded, and 51 s at eight levels).
    path = tmp_path / "bomb.yaml"
    path.write_text(_merge_bomb(7))
    started = time.process_time()  # CPU, not wall time: parallel workers share the cores
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    assert time.process_time() - started < 2.0
    assert info.value.file == str(path) and info.value.line is not None
    assert 3 <= info.value.line <= 9  # a line with a << on it
    assert "merge" in info.value.reason and "<<" in info.value.reason


def test_long_merge_chain_is_an_error_not_a_recursion_error(tmp_path: Path) -> None:
    lines = ["groups:", "  g0: &a0 {tags: [x]}"]
    lines += [f"  g{i}: &a{i} {{<<: *a{i - 1}}}" for i in range(1, 2000)]
    path = tmp_path / "chain.yaml"
    path.write_text("\n".join([*lines, "devices:", "  r1: {host: h1}", ""]))
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    assert info.value.file == str(path) and info.value.line is not None
    assert "<<" in info.value.reason


@pytest.mark.parametrize("shared", ["list", "mapping"])
def test_an_alias_used_by_every_device_cannot_make_the_load_quadratic(
    tmp_path: Path, shared: str
) -> None:
    # 3,000 devices each using one 3,000-item anchor: 9 million items from 117 KB (15 s)
    n = 3000
    items = ", ".join(f"t{i}" for i in range(n))
    if shared == "list":
        lines = ["groups:", f"  big: {{tags: &t [{items}]}}", "devices:"]
        lines += [f"  r{i}: {{host: h{i}, tags: *t}}" for i in range(n)]
    else:
        subject = ", ".join(f"OU{i}: x" for i in range(n))
        lines = ["groups:", f"  big: {{certificate: {{subject: &s {{{subject}}}}}}}",
                 "devices:"]
        lines += [f"  r{i}: {{host: h{i}, certificate: {{subject: *s}}}}" for i in range(n)]
    path = tmp_path / "quadratic.yaml"
    path.write_text("\n".join(lines) + "\n")
    started = time.process_time()  # CPU, not wall time: parallel workers share the cores
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    assert time.process_time() - started < 5.0
    assert info.value.file == str(path)
    assert info.value.line == 2 and "alias" in info.value.reason


def test_ordinary_merge_keys_over_many_devices_still_load(tmp_path: Path) -> None:
    # The bound is on work per byte of inventory: 20,000 devices sharing one anchor are fine.
    lines = ["groups:", "  base: &common {username: admin, port: 8443, tags: [a, b]}", "devices:"]
    lines += [f"  r{i}: {{<<: *common, host: h{i}}}" for i in range(20_000)]
    path = tmp_path / "many.yaml"
    path.write_text("\n".join(lines) + "\n")
    inventory = load_inventory(path)
    assert len(inventory.devices) == 20_000
    assert inventory.devices["r19999"].port == 8443
    assert inventory.devices["r0"].tags == ("a", "b")


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="no such inventory file"):
        load_inventory(tmp_path / "missing.yaml")
    with pytest.raises(InventoryError, match="is a directory"):
        load_inventory(tmp_path)
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"devices:\n  r1: {host: h, username: \xe6\xf8\xe5}\n")
    with pytest.raises(InventoryError) as info:
        load_inventory(latin1)
    assert info.value.line == 2 and "not UTF-8" in info.value.reason


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes("\ufeffdevices:\n  r1: {host: h, username: Bjørn}\n".encode())
    assert load_inventory(path).devices["r1"].username == "Bjørn"


def test_many_problems_are_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        defaults:
          password: not-a-reference-at-all
          verify: ca:missing.pem
        groups:
          oslo: {tags: norway}
        devices:
          room-1:
            host: 10.0.0.1
            pasword: env:PW
          room-2: {groups: [bergen]}
          room-3: {host: h, port: 99999}
          room-4: {transport: cloud}
          room 5: {host: h}
          room-6: {host: h, certificate: {san_dns: ["{nme}"]}}
        """,
    )
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    error = info.value
    found = [(p.line, p.key) for p in error.problems]
    assert found == [
        (2, "defaults.password"),
        (3, "defaults.verify"),
        (5, "groups.oslo.tags"),
        (9, "devices.room-1.pasword"),
        (10, "devices.room-2.groups[0]"),
        (10, "devices.room-2"),
        (11, "devices.room-3.port"),
        (12, "devices.room-4"),
        (13, "devices.room 5"),
        (14, "devices.room-6.certificate.san_dns[0]"),
    ]
    assert str(error).startswith(f"{path}: 10 problems; the first: {path}:2: defaults.password")
    assert error.file == str(path)
    assert all(p.file == str(path) for p in error.problems)
    assert "not-a-reference-at-all" not in str(error)


# -------------------------------------------------------------------------- selection


@pytest.fixture
def fleet(tmp_path: Path) -> Inventory:
    path = write(
        tmp_path,
        """
        groups:
          oslo: {tags: [norway]}
          bergen: {tags: [norway, west]}
          spare: {}
        devices:
          room-001: {host: h1, groups: [oslo], tags: [board]}
          room-002: {host: h2, groups: [oslo], tags: [desk]}
          room-010: {host: h3, groups: [bergen], tags: [board]}
          Room-011: {host: h4, groups: [bergen]}
          lab-1: {host: h5, tags: [lab]}
        """,
    )
    return load_inventory(path)


def names(devices: list[Device]) -> list[str]:
    return [d.name for d in devices]


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        (None, ["room-001", "room-002", "room-010", "Room-011", "lab-1"]),
        ([], ["room-001", "room-002", "room-010", "Room-011", "lab-1"]),
        (["lab-1"], ["lab-1"]),
        (["lab-1", "room-001"], ["room-001", "lab-1"]),  # inventory order, not --limit order
        (["lab-1,room-001"], ["room-001", "lab-1"]),
        ([" lab-1 , room-001 "], ["room-001", "lab-1"]),
        (["room-0*"], ["room-001", "room-002", "room-010"]),  # globs are case-sensitive
        (["?oom-01?"], ["room-010", "Room-011"]),
        (["room-00[12]"], ["room-001", "room-002"]),
        (["tag:board"], ["room-001", "room-010"]),
        (["tag:norway"], ["room-001", "room-002", "room-010", "Room-011"]),
        (["tag:nor*"], ["room-001", "room-002", "room-010", "Room-011"]),
        (["group:bergen"], ["room-010", "Room-011"]),
        (["group:[ob]*"], ["room-001", "room-002", "room-010", "Room-011"]),
        (["!tag:norway"], ["lab-1"]),
        (["group:oslo,!tag:desk"], ["room-001"]),
        (["tag:board", "!group:bergen"], ["room-001"]),
        (["room-*", "!room-00*"], ["room-010"]),
        (["tag:board,tag:lab", "!room-001"], ["room-010", "lab-1"]),
        (["room-001,room-001,tag:board"], ["room-001", "room-010"]),
    ],
)
def test_select(fleet: Inventory, limits: list[str] | None, expected: list[str]) -> None:
    assert names(fleet.select(limits)) == expected


def test_select_accepts_a_single_string(fleet: Inventory) -> None:
    assert names(fleet.select("tag:lab,room-001")) == ["room-001", "lab-1"]


def test_select_named_sets(fleet: Inventory) -> None:
    sets = {"failed": ["room-002", "lab-1", "gone-device"], "changed": []}
    assert names(fleet.select(["@failed"], named_sets=sets)) == ["room-002", "lab-1"]
    assert names(fleet.select(["@failed,!lab-1"], named_sets=sets)) == ["room-002"]
    assert names(fleet.select(["!@failed"], named_sets=sets)) == [
        "room-001",
        "room-010",
        "Room-011",
    ]
    with pytest.raises(SelectionError, match="the set is empty"):
        fleet.select(["@changed"], named_sets=sets)
    with pytest.raises(SelectionError) as info:
        fleet.select(["@faild"], named_sets=sets)
    assert "unknown set @faild; available: @changed, @failed" in str(info.value)
    with pytest.raises(SelectionError, match="no previous run"):
        fleet.select(["@failed"])
    with pytest.raises(SelectionError, match="no previous run"):
        fleet.select(["@failed"], named_sets={})
    with pytest.raises(SelectionError, match="none of its devices is in this inventory"):
        fleet.select(["@failed"], named_sets={"failed": {"gone-device"}})


@pytest.mark.parametrize(
    ("limits", "fragments"),
    [
        (["room-999"], ["'room-999'", "no device named 'room-999'", "did you mean"]),
        (["room-001,nope"], ["'nope'"]),
        (["!nope"], ["'!nope'", "no device named 'nope'"]),
        (["lab-*9"], ["'lab-*9' matches no device"]),
        (["ROOM-0*"], ["'ROOM-0*' matches no device"]),
        (
            ["tag:kiosk"],
            ["'tag:kiosk' matches no device", "known tags: board, desk, lab, norway, west"],
        ),
        (["group:trondheim"], ["unknown group 'trondheim'", "known groups: bergen, oslo, spare"]),
        (["group:spare"], ["'group:spare' matches no device", "known groups:"]),
        (["group:osloo"], ["did you mean 'oslo'?"]),
    ],
)
def test_select_terms_that_match_nothing(
    fleet: Inventory, limits: list[str], fragments: list[str]
) -> None:
    with pytest.raises(SelectionError) as info:
        fleet.select(limits)
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("limits", "fragment"),
    [
        ([""], "empty term"),
        (["   "], "empty term"),
        (["a,,b"], "empty term"),
        (["room-001,"], "empty term"),
        (["!"], "malformed"),
        (["! "], "malformed"),
        (["!!room-001"], "malformed"),
        (["tag:"], "needs a value after 'tag:'"),
        (["!group:"], "needs a value after 'group:'"),
        (["@"], "needs a set name"),
        (["host:h1"], "unknown prefix 'host:'"),
    ],
)
def test_select_malformed_terms(fleet: Inventory, limits: list[str], fragment: str) -> None:
    with pytest.raises(SelectionError) as info:
        fleet.select(limits)
    assert fragment in str(info.value)


def test_select_empty_result_is_an_error(fleet: Inventory) -> None:
    with pytest.raises(SelectionError) as info:
        fleet.select(["tag:board", "!room-0*"])
    assert str(info.value).startswith("--limit tag:board !room-0* selects no device")
    with pytest.raises(SelectionError, match="selects no device"):
        fleet.select(["!tag:norway,!lab-1"])


# ------------------------------------------------------------------------ big fleets


def test_ten_thousand_devices(tmp_path: Path) -> None:
    lines = [
        "defaults:",
        "  username: admin",
        "  password: env:CERTFLEET_PASSWORD",
        "  certificate: {subject: {O: Example, C: NO}, san_dns: ['{name}.rooms.example.com']}",
        "groups:",
        "  oslo: {tags: [norway], timezone: Europe/Oslo}",
        "  bergen: {tags: [norway, west]}",
        "devices:",
    ]
    for i in range(10_000):
        group = "oslo" if i % 2 else "bergen"
        lines.append(
            f"  room-{i:05d}: {{host: 10.{i // 65536}.{i // 256 % 256}.{i % 256}, "
            f"port: {40000 + i % 1000}, groups: [{group}], tags: [board]}}"
        )
    path = tmp_path / "big.yaml"
    path.write_text("\n".join(lines) + "\n")
    started = time.perf_counter()
    inventory = load_inventory(path)
    elapsed = time.perf_counter() - started
    print(f"\nloaded 10,000 devices in {elapsed:.3f} s")
    assert len(inventory.devices) == 10_000
    last = inventory.devices["room-09999"]
    assert (last.host, last.port, last.groups) == ("10.0.39.15", 40999, ("oslo",))
    assert last.tags == ("board", "norway")
    assert last.source == f"{path}:{len(lines)}"
    assert inventory.groups["bergen"].devices[:2] == ("room-00000", "room-00002")
    assert len(inventory.select(["tag:west", "!room-0000*"])) == 4995
    assert last.certificate.render(last).san_dns == ("room-09999.rooms.example.com",)


def test_ten_thousand_devices_with_problems_reports_them_all(tmp_path: Path) -> None:
    lines = ["devices:"] + [f"  room-{i:05d}: {{hots: h{i}}}" for i in range(10_000)]
    path = tmp_path / "big-bad.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    assert len(info.value.problems) == 10_000
    assert info.value.problems[-1].line == 10_001


# ------------------------------------------------------------------ property: loader


_ALL_KEYS = [
    "transport",
    "username",
    "password",
    "token",
    "verify",
    "certificate",
    "tags",
    "timezone",
    "port",
    "host",
    "device_id",
    "groups",
    "pasword",
    "hots",
    "key",
    "subject",
    "san_dns",
    "san_ip",
    "C",
    "CN",
    "<<",
    "",
]
_NASTY_TEXT = [
    "local",
    "cloud",
    "websocket",
    "env:CERTFLEET_PASSWORD",
    "env:",
    "keyring:certfleet/admin",
    "keyring:x",
    "file:/nonexistent/secret",
    "file:relative",
    "ca:/nonexistent/ca.pem",
    "ca:",
    "ca:\x00",
    "ca:~nouser/x",
    "pin:sha256:" + PIN,
    "pin:sha256:zz",
    "system",
    "insecure",
    "Europe/Oslo",
    "../../../etc/passwd",
    "/etc/passwd",
    "Europe/\x00",
    "{name}.example.com",
    "{nope}",
    "{",
    "}",
    "{name!r}",
    "10.0.0.1",
    "::1",
    "rsa-2048",
    "NO",
    "x" * 300,
    "hunter2",
    "oslo",
    "a b",
    "",
]

_scalars = st.one_of(
    st.sampled_from(_NASTY_TEXT),
    st.text(max_size=12),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
)
_keys = st.one_of(st.sampled_from(_ALL_KEYS), st.text(max_size=8), st.integers(0, 5))
_values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(_keys, children, max_size=5),
    ),
    max_leaves=12,
)
_settings = st.one_of(st.dictionaries(_keys, _values, max_size=6), _values)
_names = st.one_of(
    st.sampled_from(["room-1", "room-2", "oslo", "bergen", "bad name", ""]), st.text(max_size=6)
)
_documents = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "defaults": _settings,
            "groups": st.one_of(st.dictionaries(_names, _settings, max_size=3), _values),
            "devices": st.one_of(st.dictionaries(_names, _settings, max_size=4), _values),
            "extra": _values,
        },
    ),
    _values,
)


def _values_under_secret_keys(node: object) -> list[str]:
    """Every text found under a password: or token: key, at any depth."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("password", "token"):
                found += _texts(value)
            found += _values_under_secret_keys(value)
    elif isinstance(node, list):
        for item in node:
            found += _values_under_secret_keys(item)
    return found


def _texts_outside_secret_keys(node: object) -> set[str]:
    """Keys and texts anywhere else (a message may rightly quote those)."""
    found: set[str] = set()
    if isinstance(node, str):
        found.add(node)
    elif isinstance(node, dict):
        for key, value in node.items():
            found.add(str(key))
            if key not in ("password", "token"):
                found |= _texts_outside_secret_keys(value)
    elif isinstance(node, list):
        for item in node:
            found |= _texts_outside_secret_keys(item)
    return found


def _texts(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [t for v in node.values() for t in _texts(v)]
    if isinstance(node, list):
        return [t for item in node for t in _texts(item)]
    return []


#: words certfleet's inventory messages use themselves (transports, verify modes)
_OWN_WORDS = frozenset({"local", "cloud", "websocket", "system", "insecure"})


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(document=_documents)
def test_loader_raises_only_inventory_errors(
    tmp_path_factory: pytest.TempPathFactory, document: object
) -> None:
    path = tmp_path_factory.mktemp("prop") / "inventory.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    try:
        inventory = load_inventory(path)
    except InventoryError as error:
        assert error.problems
        elsewhere = _texts_outside_secret_keys(document)
        # (a value that is also one of certfleet's own words, e.g. `websocket` in "use local,
        # cloud or websocket", is in the message for that reason, not because it was echoed)
        secrets = [t for t in _values_under_secret_keys(document)
                   if len(t) >= 6 and t not in elsewhere and t not in _ALL_KEYS
                   and t not in _OWN_WORDS]
        for problem in error.problems:
            assert isinstance(problem, InventoryError)
            # what was written as a password or token is never echoed (values of other keys
            # are, to say what is wrong with them)
            assert not [s for s in secrets if s in str(problem)], (secrets, str(problem))
        return
    assert inventory.devices
    for device in inventory.devices.values():
        assert isinstance(device, Device)
        assert device.transport in ("local", "cloud", "websocket")
        assert 1 <= device.port <= 65535
        try:
            device.certificate.render(device)
        except InputError as error:
            assert device.name in str(error)


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list("{}[]:,-!&*#'\"\n ab1|>?%@`")), max_size=60))
def test_loader_survives_arbitrary_yaml_text(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    path = tmp_path_factory.mktemp("raw") / "inventory.yaml"
    path.write_text(text)
    with contextlib.suppress(InventoryError):
        load_inventory(path)


def test_api_rate_per_minute_is_inherited_and_checked(tmp_path: Path) -> None:
    path = write(tmp_path, """
        defaults: {transport: cloud, token: "env:T", api_rate_per_minute: 150}
        groups:
          eu: {api_rate_per_minute: 90.5}
        devices:
          a: {device_id: "id-a"}
          b: {device_id: "id-b", groups: [eu]}
          c: {device_id: "id-c"}
    """)
    devices = load_inventory(path).devices
    assert devices["a"].api_rate_per_minute == 150.0
    assert devices["b"].api_rate_per_minute == 90.5
    default = write(tmp_path, """
        devices:
          a: {transport: cloud, token: "env:T", device_id: "id-a"}
    """, "default.yaml")
    assert load_inventory(default).devices["a"].api_rate_per_minute is None


@pytest.mark.parametrize("value", ["0", "-5", "fast", "[300]", "1000000"])
def test_a_bad_api_rate_per_minute_names_file_line_and_key(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, f"""
        defaults:
          transport: cloud
          api_rate_per_minute: {value}
        devices:
          a: {{token: "env:T", device_id: "id-a"}}
    """)
    problem = only_problem(path)
    assert problem.line == 3 and problem.key == "defaults.api_rate_per_minute"
    assert "api_rate_per_minute must be a number" in problem.reason
