"""The RoomOS release model (fleet/xapi/releases.py + the generated releases.json)."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from certfleet.fleet.xapi.releases import (
    SUPPORTED,
    ParamSpec,
    Version,
    model_for,
    product_code,
)

WIFI = "Network Wifi Configure"
PROFILES_SET = "Security Certificates Services Enrollment SCEP Profiles Set"
SCEP_REQUEST = "Security Certificates Services Enrollment SCEP Request"
SYNC = "Peripherals Security Certificates SyncToPeripherals Enabled"


def test_supported_releases_in_order() -> None:
    assert SUPPORTED == ("9.15.17.4", "10.19.4.2", "11.23.1", "11.24.1", "11.24.4.1",
                         "11.26.1", "11.27.2.0", "26.1.1", "26.2.1", "26.4.1")


@pytest.mark.parametrize(("text", "parts"), [
    ("ce11.24.1.5.1234abcd", (11, 24, 1, 5)),
    ("RoomOS 11.24.1.5 1234abcd", (11, 24, 1, 5)),
    ("11.24.1", (11, 24, 1)),
    ("ce9.15.17.4 ab12cd3", (9, 15, 17, 4)),
    ("26.4.1.3", (26, 4, 1, 3)),
    ("ce26.4.1.1234abcd", (26, 4, 1)),  # a build id that begins with digits is not a part
    ("ce10.19.4.2.12345678", (10, 19, 4, 2)),
])
def test_version_parse_forms(text: str, parts: tuple[int, ...]) -> None:
    version = Version.parse(text)
    assert version is not None and version.parts == parts
    assert str(version) == ".".join(map(str, parts))


@pytest.mark.parametrize("text", ["", "RoomOS", "Cisco Codec", "unknown 11.2"])
def test_version_parse_refuses_text_without_a_leading_number(text: str) -> None:
    assert Version.parse(text) is None


def test_versions_compare_numerically() -> None:
    def v(text: str) -> Version:
        parsed = Version.parse(text)
        assert parsed is not None
        return parsed

    assert v("9.15.17.4") < v("10.19.4.2") < v("11.24.1") < v("11.24.1.5") < v("11.24.4.1")
    assert v("26.1.1") > v("11.27.2.0")


@pytest.mark.parametrize(("device", "modelled"), [
    ("ce11.24.1.5.1234abcd", "11.24.1"),
    ("11.24.4.1", "11.24.4.1"),
    ("11.25.3", "11.24.4.1"),
    ("11.27.1", "11.26.1"),
    ("RoomOS 26.7.1.12 abcdef0", "26.4.1"),
    ("9.0.1", "9.15.17.4"),  # older than every modelled release: the oldest
    ("10.19.4.2", "10.19.4.2"),
])
def test_model_for_takes_the_newest_release_at_or_below(device: str, modelled: str) -> None:
    assert model_for(device).release == modelled


def test_model_for_refuses_what_is_not_a_version() -> None:
    with pytest.raises(ValueError, match="not a RoomOS version"):
        model_for("Cisco Codec")


def test_wifi_connect_and_profiles_challenge_only_from_26_1_1() -> None:
    old, new = model_for("11.24.1"), model_for("26.1.1")
    old_wifi, new_wifi = old.command(WIFI), new.command(WIFI)
    assert old_wifi is not None and new_wifi is not None
    assert "Connect" not in old_wifi.params
    assert new_wifi.params["Connect"].accepts("Auto")
    old_set, new_set = old.command(PROFILES_SET), new.command(PROFILES_SET)
    assert old_set is not None and set(old_set.params) == {"Fingerprint", "URL"}
    assert new_set is not None and set(new_set.params) == {"ChallengePassword", "Fingerprint",
                                                           "URL"}


def test_connect_values_differ_by_product_and_none_means_what_every_product_takes() -> None:
    model = model_for("26.1.1")
    mini = model.command(WIFI, "havella")
    desk = model.command(WIFI, "polaris")
    anyone = model.command(WIFI)
    assert mini is not None and desk is not None and anyone is not None
    assert mini.params["Connect"].values == ("Auto",)
    assert desk.params["Connect"].values == ("Auto", "Later")
    assert anyone.params["Connect"].values == ("Auto",)
    assert "havella" in anyone.products and "polaris" in anyone.products


def test_scep_enrollment_and_profiles_start_with_release_11() -> None:
    for release in ("9.15.17.4", "10.19.4.2"):
        model = model_for(release)
        assert model.command(SCEP_REQUEST) is None
        assert model.command(PROFILES_SET) is None
        assert model.command("Security Certificates Services Enrollment Profiles List") is None
    for release in SUPPORTED[2:]:
        assert model_for(release).command(SCEP_REQUEST) is not None


def test_scep_request_lengths_per_release() -> None:
    old = model_for("11.24.1").command(SCEP_REQUEST)
    new = model_for("26.4.1").command(SCEP_REQUEST)
    assert old is not None and new is not None
    assert old.params["CommonName"].max_length == 128
    assert new.params["CommonName"].max_length == 64
    assert new.params["CountryName"].max_length == 2
    assert not new.params["CountryName"].accepts("NOR")
    assert new.params["SanDns"].multiple == 5
    assert old.params["CommonName"].required and not old.params["ChallengePassword"].required


@pytest.mark.parametrize("release", SUPPORTED)
def test_wifi_type_value_space_per_release(release: str) -> None:
    spec = model_for(release).command(WIFI)
    assert spec is not None
    wifi_type = spec.params["Type"]
    version = Version.parse(release)
    assert version is not None
    assert wifi_type.accepts("Wpa2-eap-tls") == (version >= Version((10, 19)))
    assert wifi_type.accepts("Enterprise-Tls") == (version >= Version((11, 27, 2, 0)))
    assert wifi_type.accepts("Wpa-eap-tls") == (release == "9.15.17.4")


def test_products_without_wifi_or_sync() -> None:
    model = model_for("11.24.1")
    assert model.command(WIFI, "vecchio") is None
    assert model.status("Network[n] Wifi Status", "vecchio") is None
    assert model.configuration(SYNC, "vecchio") is None
    assert model.command(WIFI, "polaris") is not None
    assert model.configuration(SYNC, "polaris") is not None
    assert model_for("10.19.4.2").configuration(SYNC) is None  # no product before 11


def test_lookup_spellings() -> None:
    model = model_for("11.24.1")
    spec = model.configuration("Network[1] IEEE8021X Mode")
    assert spec is not None and spec.path == "Network[1] IEEE8021X Mode"
    assert spec.value is not None and spec.value.values == ("Off", "On")
    for alias in ("Network 1 IEEE8021X Mode", "Network[n] IEEE8021X Mode",
                  "Configuration/Network/1/IEEE8021X/Mode", "network ieee8021x mode",
                  ("Configuration", "Network", 1, "IEEE8021X", "Mode")):
        assert model.configuration(alias) == spec, alias
    assert model.configuration("Network 2 IEEE8021X Mode") is None  # only Network[1]
    status = model.status(("Status", "Network", 1, "IEEE8021X", "Status"))
    assert status is not None and status.path == "Network[n] IEEE8021X Status"
    assert model.status("SystemUnit Software Version") is not None
    assert model.status("SystemUnit No Such Thing") is None
    boot = model.command("xCommand SystemUnit Boot")
    assert boot is not None and boot.params["Action"].accepts("Restart")


def test_subtrees() -> None:
    model = model_for("26.4.1")
    assert model.has_subtree("Status", "Network/1/Wifi", "polaris")
    assert not model.has_subtree("Status", "Network/1/Wifi", "vecchio")
    assert model.has_subtree("Status", "Network/1", "vecchio")
    assert model.has_subtree("Configuration", "Peripherals", "polaris")
    assert not model.has_subtree("Configuration", "Peripherals", "vecchio")


def test_param_spec_accepts() -> None:
    literal = ParamSpec("Type", True, "Literal", ("Auto", "Later"), None, None, None, None)
    assert literal.accepts("Auto") and literal.accepts("auto") and not literal.accepts("Now")
    assert literal.canonical("later") == "Later"
    text = ParamSpec("CN", True, "String", None, 1, 3, None, None)
    assert text.accepts("abc") and not text.accepts("") and not text.accepts("abcd")
    number = ParamSpec("N", False, "Integer", None, None, None, 0, 100, step=10)
    assert number.accepts("20") and not number.accepts("25") and not number.accepts("110")
    assert not number.accepts("x")


@pytest.mark.parametrize(("product_id", "platform", "code"), [
    ("Cisco Room Kit Mini", None, "havella"),
    ("Cisco Webex Room Kit Mini", None, "havella"),
    ("Cisco Codec Pro", "Codec Pro", "barents"),
    ("Cisco Room Navigator", "Room Navigator", "vecchio"),
    ("Cisco Codec EQ", None, "millennium"),
    ("Cisco Room Bar", "Room Bar", "davinci"),
    ("Cisco Webex Board 55", None, "darling_10_55"),
    ("Cisco Board Pro", "Board Pro", "helix_55"),
    ("Cisco Something New", "Something New", None),
    ("", None, None),
])
def test_product_code(product_id: str, platform: str | None, code: str | None) -> None:
    assert product_code(product_id, platform) == code


def test_product_codes_exist_in_the_schema() -> None:
    from certfleet.fleet.xapi.releases import _PRODUCT_TABLE

    known = set().union(*(model_for(r).products for r in SUPPORTED))
    assert {code for _, code in _PRODUCT_TABLE} <= known


def test_data_file_shape() -> None:
    """Regenerating needs Cisco's schemas (not in CI): check the packaged file's shape."""
    text = resources.files("certfleet.fleet.xapi").joinpath("releases.json").read_text(encoding="utf-8")
    data = json.loads(text)
    assert data["format"] == 1
    assert text == json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n"
    sets = data["product_sets"]
    assert all(s == sorted(set(s)) for s in sets)
    assert set(data["releases"]) == set(SUPPORTED)
    for release, body in data["releases"].items():
        assert body["source"] and release in body["source"]
        for table in ("commands", "configurations", "statuses"):
            assert body[table], (release, table)
            for path, variants in body[table].items():
                assert variants, path
                for variant in variants:
                    assert 0 <= variant["products"] < len(sets)
                    specs = (variant["params"] if table == "commands"
                             else [variant["value"]] if variant["value"] else [])
                    for spec in specs:
                        assert spec["kind"] in ("Literal", "String", "Integer")
                        assert (spec["kind"] == "Literal") == ("values" in spec)
        for path in ("Security Certificates CA Add", "Security Certificates Services Activate",
                     "Network Wifi Configure", "SystemUnit Boot"):
            assert path in body["commands"], (release, path)
        for path in ("SystemUnit Software Version", "SystemUnit ProductId",
                     "SystemUnit ProductPlatform", "Network[n] Wifi Status"):
            assert path in body["statuses"], (release, path)
        assert "Network[1] IEEE8021X Mode" in body["configurations"]
    assert len(text) < 200_000


def test_answers_are_kept_and_are_the_same_as_asked_afresh() -> None:
    # every command of every device is checked against its release: the model answers each
    # question once per run, and a kept answer is what a fresh lookup says
    model = model_for("11.24.1")
    path = ("Security", "Certificates", "CA", "Show")
    first = model.command(path, "barents")
    assert first is not None
    assert model.command(list(path), "barents") is first
    assert model.command(" ".join(path), "barents") == first
    assert model._command(path, "barents") == first
    assert model.command(path, None) == model._command(path, None)
    network = ("Network", 1, "IEEE8021X", "Mode")
    assert model.configuration(network) is model.configuration(list(network))
    assert model.configuration(network) == model._node_spec("configurations", network, None)
    assert model.configuration(("Network", "1", "IEEE8021X", "Mode")) == \
        model.configuration(network)
    assert model.command(("Security", "Nothing", "Here")) is None
    assert model.command(("Security", "Nothing", "Here")) is None
