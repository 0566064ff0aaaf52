"""An example line for every verb's --help (shown as the command's epilog), in one place so
that a new verb without one is noticed (tests/cli/test_first_hour_cli.py checks every verb).

Each example is a whole command a user can adapt; secrets are references, never values."""

from __future__ import annotations

from typing import Any

import typer

#: the verb's words (as typed after `certfleet`) -> the example, without "certfleet "
EXAMPLES: dict[tuple[str, ...], str] = {
    ("status",): "status -i fleet.yaml --expiring-within 30d --limit tag:board",
    ("push-ca",): "push-ca corp-root.pem -i fleet.yaml --dry-run",
    ("push-cert",): "push-cert -i fleet.yaml --purpose HTTPS --dir ./issued --limit room-001",
    ("rotate",): "rotate -i fleet.yaml --purpose HTTPS --signer local-ca --ca-dir ./lab-ca "
                 "--ca-passphrase env:LAB_CA_PASS --renew-before 30d",
    ("csr",): "csr -i fleet.yaml --out ./csrs --limit 'room-0*'",
    ("enroll",): "enroll -i fleet.yaml --scep http://ca.example.com/scep --ca-fingerprint "
                 "<sha256> --challenge env:SCEP_CHALLENGE --purpose 802.1X --renewal-profile",
    ("dot1x",): "dot1x -i fleet.yaml --identity '{name}' --wave 1,10%,100%",
    ("wifi",): "wifi -i fleet.yaml --ssid corp-rooms --identity '{name}'",
    ("report",): "report -i fleet.yaml --html fleet-report.html",
    ("demo",): "demo --devices 6",
    ("inventory", "list"): "inventory list -i fleet.yaml --limit group:oslo",
    ("inventory", "check"): "inventory check -i fleet.yaml",
    ("inventory", "import-webex"): "inventory import-webex --token env:WEBEX_TOKEN "
                                   "--tag rooms --out webex.yaml",
    ("sim", "serve"): "sim serve --devices 20 --state /tmp/sim "
                      "--inventory-out /tmp/sim/inventory.yaml",
    ("runs", "list"): "runs list --journal ./journal.sqlite",
    ("runs", "show"): "runs show last -o json",
    ("runs", "resume"): "runs resume last",
    ("runs", "keys"): "runs keys --all --device room-001",
    ("runs", "drop-key"): "runs drop-key 42 --yes",
    ("ca", "init"): "ca init --dir ./lab-ca --cn 'Example Lab CA' --passphrase env:LAB_CA_PASS",
    ("ca", "sign"): "ca sign room-001.csr.pem --dir ./lab-ca --out room-001.pem",
    ("ca", "show"): "ca show --dir ./lab-ca -o json",
    ("renewal", "list"): "renewal list -i fleet.yaml",
    ("renewal", "set"): "renewal set -i fleet.yaml --url http://ca.example.com/scep "
                        "--ca-fingerprint <sha256> --challenge env:SCEP_CHALLENGE",
    ("renewal", "delete"): "renewal delete -i fleet.yaml --ca-fingerprint <sha256>",
}


def _commands(app: typer.Typer, prefix: tuple[str, ...]) -> list[tuple[tuple[str, ...], Any]]:
    found = []
    for info in app.registered_commands:
        name = info.name or (info.callback.__name__.replace("_", "-") if info.callback else "")
        found.append(((*prefix, name), info))
    for group in app.registered_groups:
        if group.typer_instance is not None and group.name:
            found.extend(_commands(group.typer_instance, (*prefix, group.name)))
    return found


def add_examples(app: typer.Typer, prefix: tuple[str, ...] = ()) -> None:
    """Set the epilog of every command of ``app`` (the verbs ``prefix`` + its command names)
    that has no epilog of its own, and of the root command (where to start)."""
    if not prefix and not app.info.epilog:
        app.info.epilog = ("Example: certfleet demo (the whole story on a simulated fleet, "
                           "every command printed as it runs)")
    for words, info in _commands(app, prefix):
        example = EXAMPLES.get(words)
        if example is not None and not info.epilog:
            info.epilog = f"Example: certfleet {example}"
