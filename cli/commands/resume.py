"""certfleet runs resume — the same verb and options, on the devices that did not finish."""

from __future__ import annotations

from pathlib import Path

from cli import render
from cli.options import Common, OutputFormat
from cli.runtime import open_journal_at
from fleet.durations import parse_duration
from fleet.errors import InputError
from fleet.pki.signers.factory import SignerSpec

RESUMABLE = ("rotate",)


def resume_run(run_id: str, journal_path: Path | None, output: OutputFormat) -> None:
    with open_journal_at(journal_path) as journal:
        record = journal.run(run_id, verbs=RESUMABLE)
        if record.verb not in RESUMABLE:
            raise InputError(
                f"run {record.run_id} is a {record.verb} run; only {', '.join(RESUMABLE)} runs "
                f"are resumed (re-run the command instead: {record.command})"
            )
        if record.inventory is None or not Path(record.inventory).exists():
            raise InputError(f"run {record.run_id}: its inventory {record.inventory} is gone")
        from fleet.inventory import load_inventory

        inventory = load_inventory(record.inventory)
        selected = [d.name for d in inventory.select(record.args.get("limit"),
                                                      known=journal.known_firmware())]
        todo = journal.unfinished_devices(record.run_id, selected)
    if not todo:
        render.stdout().print(f"run {record.run_id}: every device finished; nothing to resume")
        return
    render.note(f"resuming run {record.run_id} on {len(todo)} device(s)")
    common = Common(
        inventory=Path(record.inventory),
        limit=todo,
        output=output,
        journal=journal_path,
    )
    args = record.args
    from cli.commands.rotate import run_rotate

    run_rotate(
        common,
        purposes=tuple(args["purposes"]),
        spec=SignerSpec.from_json(args["signer"]),
        renew_before=parse_duration(args["renew_before"]),
        force=bool(args["force"]),
        passphrase_ref=args["journal_passphrase"],
        resumed_from=record.run_id,
        override_profile=bool(args.get("override_profile", False)),
    )
