"""The run journal: runs and devices recorded, keys stored before use and found again, the
file private to its owner."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sqlite3
from pathlib import Path

import pytest

from certfleet.fleet.errors import InputError
from certfleet.fleet.journal import BATCH_ROWS, BATCH_SECONDS, Journal
from certfleet.fleet.results import DeviceResult, ErrorInfo, Outcome, RunResult


def _run(run_id: str, verb: str = "rotate", dry_run: bool = False) -> RunResult:
    return RunResult(run_id=run_id, command=f"certfleet {verb}", verb=verb,
                     started=dt.datetime.now(dt.UTC), dry_run=dry_run)


def test_journal_file_is_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "j.sqlite"
    with Journal.open(path):
        pass
    assert (os.stat(path).st_mode & 0o077) == 0


def test_runs_devices_and_failed_set(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j.sqlite") as journal:
        run = _run("r1", "push-ca")
        journal.start_run(run, inventory="/inv.yaml", args={"limit": ["room-*"]})
        ok = DeviceResult("room-1", "h", "local", Outcome.CHANGED,
                          fingerprints_before=["a"], fingerprints_after=["a", "b"])
        bad = DeviceResult("room-2", "h", "local", Outcome.UNREACHABLE,
                           error=ErrorInfo("unreachable", "refused"))
        journal.record_device("r1", ok)
        journal.record_device("r1", bad)
        assert journal.run("r1").status == "running"
        run.devices = [ok, bad]
        journal.finish_run(run)
        record = journal.run("last")
        assert record.status == "finished" and record.exit_code == 1
        assert record.counts["changed"] == 1 and record.counts["unreachable"] == 1
        assert record.args == {"limit": ["room-*"]}
        assert journal.failed_in_last_run() == {"room-2"}
        assert journal.unfinished_devices("r1", ["room-1", "room-2", "room-3"]) == [
            "room-2", "room-3"]
        # a dry run afterwards does not hide the last real run's failures
        journal.start_run(_run("r2", "push-ca", dry_run=True), inventory=None, args={})
        assert journal.failed_in_last_run() == {"room-2"}
        with pytest.raises(InputError, match="no run"):
            journal.run("nope")


def test_keys_are_found_until_done(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j.sqlite") as journal:
        key_id = journal.store_key(run_id="r1", device="room-1", purposes=("HTTPS",),
                                   key_kind="ec-p256", key_pem_encrypted=b"ENCRYPTED",
                                   public_sha256="ab" * 32, csr_pem="CSR")
        found = journal.open_key("room-1", ("HTTPS",))
        assert found is not None and found.id == key_id and found.state == "generated"
        assert journal.open_key("room-1", ("SIP",)) is None
        journal.update_key(key_id, "signed", cert_pem="CERT")
        found = journal.open_key("room-1", ("HTTPS",))
        assert found is not None and found.cert_pem == "CERT"
        journal.update_key(key_id, "done")
        assert journal.open_key("room-1", ("HTTPS",)) is None
        with pytest.raises(ValueError):
            journal.update_key(key_id, "bogus")


def test_key_steps_are_journaled_in_the_key_transactions(tmp_path: Path) -> None:
    # the steps that go with a key's row land in the same transaction, with its run and
    # device, after those journaled before it; a failed update writes neither
    with Journal.open(tmp_path / "j.sqlite") as journal:
        journal.step("r1", "room-1", "earlier", "x")
        key_id = journal.store_key(run_id="r1", device="room-1", purposes=("HTTPS",),
                                   key_kind="ec-p256", key_pem_encrypted=b"ENCRYPTED",
                                   public_sha256="ab" * 32, csr_pem="CSR",
                                   steps=lambda key: [("key generated", f"journal key {key}"),
                                                      ("supersedes", "aa,bb")])
        journal.update_key(key_id, "signed", cert_pem="CERT", step=("signed", "by lab"))
        journal.update_key(key_id, "uploaded")
        with pytest.raises(ValueError):
            journal.update_key(key_id, "bogus", step=("bogus", ""))
        assert [(s["step"], s["detail"]) for s in journal.steps_of("r1", "room-1")] == [
            ("earlier", "x"), ("key generated", f"journal key {key_id}"),
            ("supersedes", "aa,bb"), ("signed", "by lab")]
        assert journal.key(key_id).state == "uploaded"
        assert journal.steps_of("r1", "room-2") == []


def test_not_a_journal(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite"
    path.write_text("this is not sqlite" * 100)
    with pytest.raises(InputError, match="not a certfleet journal"):
        Journal.open(path)


# ------------------------------------------------------------------ one lock per file


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_run_lock_holds_through_another_name_for_the_same_file(tmp_path: Path, link: str) -> None:
    real = tmp_path / "a" / "journal.sqlite"
    with Journal.open(real):
        pass
    other = tmp_path / "b" / "other-name.sqlite"  # another folder: no sidecar file in common
    other.parent.mkdir()
    if link == "symlink":
        other.symlink_to(real)
    else:
        os.link(real, other)
    with Journal.open(real) as first, first.lock("certfleet rotate --purpose HTTPS"):
        with Journal.open(other) as second, pytest.raises(InputError) as info, \
                second.lock("certfleet push-ca corp.pem"):
            pytest.fail("a second run got the lock through another name")
        assert "another certfleet run" in str(info.value)
    # and once the first run is over, the other name can lock it
    with Journal.open(other) as second, second.lock("certfleet push-ca corp.pem"):
        pass


def test_run_lock_is_released_and_taken_again(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal.open(path) as journal:
        for _ in range(3):
            with journal.lock("certfleet rotate"):
                journal.start_run(_run(f"r{_}"), inventory=None, args={})
        assert len(journal.runs()) == 3


# ------------------------------------------------------------- a journal that is not private


def test_journal_readable_by_others_is_made_private_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal.open(path) as journal:
        journal.start_run(_run("r1"), inventory=None, args={})
    path.chmod(0o644)
    wal = path.with_name(path.name + "-wal")
    wal.write_bytes(b"")
    wal.chmod(0o644)
    with Journal.open(path) as journal:
        assert journal.run("r1").run_id == "r1"
        assert any(str(path) in w and "0644" in w and "0600" in w for w in journal.warnings)
        assert (os.stat(path).st_mode & 0o777) == 0o600
        assert (os.stat(wal).st_mode & 0o077) == 0
    with Journal.open(path) as journal:
        assert journal.warnings == []


@pytest.mark.skipif(os.geteuid() != 0, reason="making a file another user owns needs root")
def test_journal_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal.open(path):
        pass
    os.chown(path, 4242, 4242)
    with pytest.raises(InputError) as info:
        Journal.open(path)
    assert str(path) in str(info.value) and "4242" in str(info.value)
    assert os.stat(path).st_uid == 4242  # left as it was


def test_command_line_is_stored_with_secrets_masked(tmp_path: Path) -> None:
    command = ("certfleet enroll --scep 'http://scep-user:url-pass-771@127.0.0.1:8080/scep' "
               "--ca-fingerprint ab --challenge literal-challenge-5521 "
               "--journal-passphrase=file:/secret/jp --scep-challenge env:SCEP_CH -i inv.yaml")
    run = RunResult(run_id="r1", command=command, verb="enroll",
                    started=dt.datetime.now(dt.UTC))
    with Journal.open(tmp_path / "j.sqlite") as journal:
        journal.start_run(run, inventory=None, args={})
        stored = journal.run("r1").command
    for secret in ("url-pass-771", "scep-user", "literal-challenge-5521", "/secret/jp",
                   "SCEP_CH"):
        assert secret not in stored
    assert stored.startswith("certfleet enroll --scep")
    assert "127.0.0.1:8080/scep" in stored and "-i inv.yaml" in stored
    raw = (tmp_path / "j.sqlite").read_bytes()  # closed: the WAL is checkpointed into it
    assert b"literal-challenge-5521" not in raw and b"url-pass-771" not in raw


def _on_disk(path: Path, table: str = "devices") -> int:
    """Rows of ``table`` another process would see now (its own connection)."""
    with sqlite3.connect(path) as db:
        (count,) = db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
    return int(count)


def _device(n: int, outcome: Outcome = Outcome.OK) -> DeviceResult:
    return DeviceResult(f"room-{n}", "h", "local", outcome)


async def test_device_records_in_a_run_are_written_in_batches_soon(tmp_path: Path) -> None:
    """On the runner's event loop a device's outcome and firmware wait a moment and go to
    disk together, within BATCH_SECONDS even when nothing else happens; this process's
    own reads see them at once."""
    path = tmp_path / "j.sqlite"
    with Journal.open(path) as journal:
        journal.start_run(_run("r1", "status"), inventory=None, args={})
        for n in range(5):
            journal.record_device("r1", _device(n, Outcome.FAILED if n == 3 else Outcome.OK))
            journal.record_firmware("r1", f"room-{n}", {"version": "26.4.1.0"})
        assert _on_disk(path) == 0 and _on_disk(path, "firmware") == 0  # waiting
        assert journal.unfinished_devices("r1", ["room-3", "room-4"]) == ["room-3"]
        assert _on_disk(path) == 5  # a read writes them first

        journal.record_device("r1", _device(5))
        assert _on_disk(path) == 5
        await asyncio.sleep(BATCH_SECONDS * 5)  # nothing else happens: the timer writes it
        assert _on_disk(path) == 6

        for n in range(6, 6 + BATCH_ROWS):  # a full batch is written at once
            journal.record_device("r1", _device(n))
        assert _on_disk(path) == 6 + BATCH_ROWS


async def test_waiting_records_go_with_the_next_transaction_and_the_run_end(
        tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal.open(path) as journal:
        run = _run("r1", "push-ca")
        journal.start_run(run, inventory=None, args={})
        journal.record_device("r1", _device(1, Outcome.CHANGED))
        journal.step("r1", "room-2", "uploaded", "ab12")  # a step: written with the outcome
        assert _on_disk(path) == 1 and _on_disk(path, "steps") == 1
        journal.record_device("r1", _device(2, Outcome.CHANGED))
        run.devices = [_device(1, Outcome.CHANGED), _device(2, Outcome.CHANGED)]
        journal.finish_run(run)
        assert _on_disk(path) == 2
        journal.record_device("r1", _device(3))
    assert _on_disk(path) == 3  # closing writes what waits


def test_off_an_event_loop_a_record_is_written_at_once(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal.open(path) as journal:
        journal.start_run(_run("r1", "status"), inventory=None, args={})
        journal.record_device("r1", _device(1))
        journal.record_firmware("r1", "room-1", {"version": "26.4.1.0"})
        assert _on_disk(path) == 1 and _on_disk(path, "firmware") == 1


async def test_a_batch_of_mixed_rows_keeps_each_devices_last_word(tmp_path: Path) -> None:
    """Device and firmware rows that wait together are written together, and where a
    device's outcome or release was recorded twice in one batch the later record stands."""
    path = tmp_path / "j.sqlite"
    with Journal.open(path) as journal:
        journal.start_run(_run("r1", "status"), inventory=None, args={})
        journal.record_device("r1", _device(1, Outcome.FAILED))
        journal.record_firmware("r1", "room-1", {"version": "11.1.0.0"})
        journal.record_device("r1", _device(2))
        journal.record_device("r1", _device(1, Outcome.OK))
        journal.record_firmware("r1", "room-1", {"version": "26.4.1.0"})
        assert _on_disk(path) == 0  # all five wait for one flush
        journal.flush()
        outcomes = {row["device"]: row["outcome"] for row in journal.device_rows("r1")}
        assert outcomes == {"room-1": "ok", "room-2": "ok"}
        assert journal.known_firmware()["room-1"].version == "26.4.1.0"
