"""fleet.journal — the run journal: SQLite, crash-safe, secrets only encrypted.

What it keeps:

* ``runs``: one row per run — command, verb, the arguments needed to resume it, start/finish,
  exit code, status (``running`` until it finishes, so a killed run is visibly unfinished);
* ``devices``: per run and device, the outcome, error and fingerprints before/after;
* ``steps``: per run and device, each step of a change as it happens (for ``runs show`` and
  for resuming at the right place);
* ``keys``: every private key certfleet generates, **encrypted** (PKCS#8 with a passphrase from
  the keyring or environment), written and committed *before* its CSR leaves the machine,
  with the CSR and, once signed, the certificate. A key row is what lets ``runs resume``
  finish a rotation without generating a new key (:mod:`fleet.journal_keys`);
* ``firmware``: per device, the release and product the newest run that read them recorded
  (``--limit firmware:`` / ``product:`` select by it).

The database runs in WAL mode with ``synchronous=FULL``: a committed key survives SIGKILL
and power loss. All access is from the runner's one event-loop thread.

A run's ``devices`` and ``firmware`` rows are written in batches (:meth:`Journal.record_device`):
with the next transaction of any other kind, or within :data:`BATCH_SECONDS`, or once
:data:`BATCH_ROWS` wait, and always before the run is marked finished and before the journal is
read or closed. A transaction per device was a twentieth of a large read-only run's CPU. What a
process killed mid-run loses of them is the last fraction of a second of outcomes: those devices
show as not finished, and ``runs resume`` / the next run reads them again from the devices (as
after a power cut). Keys and steps are not batched.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from .errors import InputError
from .journal_file import make_private, run_lock
from .journal_keys import KEY_ABANDONED_STEP, KEY_STATES, KeyRecord, KeyTable, _now
from .masking import mask_command_line
from .results import DeviceResult, Outcome, RunResult

__all__ = [
    "KEY_ABANDONED_STEP",
    "KEY_STATES",
    "Journal",
    "KeyRecord",
    "KnownFirmware",
    "RunRecord",
    "default_journal_path",
]

#: how long a run's device and firmware records may wait to be written together (seconds),
#: and how many may wait (see the module's docstring)
BATCH_SECONDS = 0.1
BATCH_ROWS = 64

_INSERT_DEVICE = (
    "INSERT OR REPLACE INTO devices (run_id, device, outcome, error_kind, error,"
    " fingerprints_before, fingerprints_after, updated) VALUES (?,?,?,?,?,?,?,?)"
)
_INSERT_FIRMWARE = (
    "INSERT OR REPLACE INTO firmware (device, version, product, platform, run_id,"
    " updated) VALUES (?,?,?,?,?,?)"
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id     TEXT PRIMARY KEY,
    command    TEXT NOT NULL,
    verb       TEXT NOT NULL,
    inventory  TEXT,
    args       TEXT NOT NULL DEFAULT '{}',
    dry_run    INTEGER NOT NULL DEFAULT 0,
    started    TEXT NOT NULL,
    finished   TEXT,
    status     TEXT NOT NULL DEFAULT 'running',
    exit_code  INTEGER,
    resumed_from TEXT
);
CREATE TABLE IF NOT EXISTS devices (
    run_id     TEXT NOT NULL REFERENCES runs(run_id),
    device     TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    error_kind TEXT,
    error      TEXT,
    fingerprints_before TEXT,
    fingerprints_after  TEXT,
    updated    TEXT NOT NULL,
    PRIMARY KEY (run_id, device)
);
CREATE TABLE IF NOT EXISTS steps (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id   TEXT NOT NULL,
    device   TEXT NOT NULL,
    step     TEXT NOT NULL,
    detail   TEXT NOT NULL DEFAULT '',
    at       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS keys (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      TEXT NOT NULL,
    device      TEXT NOT NULL,
    purposes    TEXT NOT NULL,
    created     TEXT NOT NULL,
    key_kind    TEXT NOT NULL,
    key_pem_encrypted BLOB NOT NULL,
    public_sha256 TEXT NOT NULL,
    csr_pem     TEXT NOT NULL,
    cert_pem    TEXT,
    state       TEXT NOT NULL,
    updated     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS firmware (
    device     TEXT PRIMARY KEY,
    version    TEXT,
    product    TEXT,
    platform   TEXT,
    run_id     TEXT NOT NULL,
    updated    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS keys_device ON keys(device, state);
CREATE INDEX IF NOT EXISTS steps_run ON steps(run_id, device);
"""

def default_journal_path() -> Path:
    env = os.environ.get("CERTFLEET_JOURNAL")
    if env:
        return Path(env)
    return Path(platformdirs.user_data_dir("certfleet")) / "journal.sqlite"


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    command: str
    verb: str
    inventory: str | None
    args: dict[str, Any]
    dry_run: bool
    started: str
    finished: str | None
    status: str
    exit_code: int | None
    resumed_from: str | None
    counts: dict[str, int]


@dataclass(frozen=True)
class KnownFirmware:
    """A device's release and product as the last run that read them recorded them."""

    version: str | None  # "11.24.1.5"
    product: str | None  # "Cisco Room Bar"
    platform: str | None  # "Room Bar"
    run_id: str
    updated: str


class Journal(KeyTable):
    """One SQLite file. Open with :meth:`open`; close with :meth:`close` (or ``with``)."""

    def __init__(self, path: Path, connection: sqlite3.Connection, lock_fd: int) -> None:
        self.path = path
        self._db = connection
        self._durable = True  # open() starts with synchronous=FULL
        #: the database file itself, open for the run lock (see :meth:`lock`); closed only
        #: after SQLite's connection, never while SQLite may hold its own locks on the file
        self._lock_fd = lock_fd
        #: what :meth:`open` corrected and the user should hear about
        self.warnings: list[str] = []
        #: device and firmware rows not written yet (see :meth:`record_device`), in order
        self._pending: list[tuple[str, tuple[Any, ...]]] = []
        self._flush_timer: asyncio.TimerHandle | None = None

    @classmethod
    def open(cls, path: str | Path | None = None) -> Journal:
        target = Path(path) if path else default_journal_path()
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fresh = not target.exists()
            if fresh:
                # the journal holds (encrypted) keys: owner-only from the first byte
                fd = os.open(target, os.O_CREAT | os.O_WRONLY, 0o600)
                os.close(fd)
            lock_fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise InputError(f"cannot open the journal {target}: {exc}") from exc
        try:
            warnings = make_private(target, lock_fd)
        except InputError:
            os.close(lock_fd)
            raise
        try:
            db = sqlite3.connect(target, isolation_level=None, timeout=30.0)
        except sqlite3.Error as exc:
            os.close(lock_fd)
            raise InputError(f"cannot open the journal {target}: {exc}") from exc
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # per transaction: see _tx
            db.execute("PRAGMA foreign_keys=ON")
            db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            db.close()
            os.close(lock_fd)
            raise InputError(f"{target} is not a certfleet journal: {exc}") from exc
        journal = cls(target, db, lock_fd)
        journal.warnings = warnings
        return journal

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._close()

    def _close(self) -> None:
        try:
            self._db.close()
        finally:
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
                self._lock_fd = -1

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _tx(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction. Every commit survives the process being killed (WAL). Only a
        ``durable`` one is also on disk before this returns, surviving power loss: keys, whose
        loss would strand a certificate already out for signing. Run and device records are
        not (an fsync per device was most of a large read-only run's time; what a power cut
        loses there, the next run reads again from the devices). A key's later states are
        not durable either: a power cut can set one back (say, to "submitted"), and resuming
        from an earlier state is what resume does anyway — it reads the device first."""
        if durable is not self._durable:
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._durable = durable
        self._db.execute("BEGIN IMMEDIATE")
        try:
            # the waiting device and firmware rows go with any transaction but a key's
            # durable one (which stays as small as it was)
            written = 0 if durable else self._write_pending()
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        if written:
            del self._pending[:written]
            if not self._pending and self._flush_timer is not None:
                self._flush_timer.cancel()
                self._flush_timer = None

    # -- batched device and firmware rows ----------------------------------------------

    def _write_pending(self) -> int:
        """Write the waiting rows into the open transaction; how many were written."""
        count = len(self._pending)
        # one executemany per statement (the tables are apart: only each one's order counts)
        by_statement: dict[str, list[tuple[Any, ...]]] = {}
        for statement, row in self._pending:
            by_statement.setdefault(statement, []).append(row)
        for statement, rows in by_statement.items():
            self._db.executemany(statement, rows)
        return count

    def _queue(self, statement: str, row: tuple[Any, ...]) -> None:
        """Write ``row`` with the next transaction, or within :data:`BATCH_SECONDS` on the
        running event loop, or now: off an event loop, or once :data:`BATCH_ROWS` wait."""
        self._pending.append((statement, row))
        if len(self._pending) >= BATCH_ROWS:
            self.flush()
            return
        if self._flush_timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # a caller without an event loop: as before, at once
                self.flush()
                return
            self._flush_timer = loop.call_later(BATCH_SECONDS, self._timed_flush)

    def _timed_flush(self) -> None:
        self._flush_timer = None
        with suppress(sqlite3.Error):  # the rows still wait: the next flush (finish_run or
            self.flush()  # close at the latest) says what is wrong

    def flush(self) -> None:
        """Write the device and firmware rows that wait, now."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if self._pending:
            with self._tx():
                pass

    # -- the run lock ----------------------------------------------------------------

    @contextmanager
    def lock(self, command: str) -> Iterator[None]:
        """Held by every run that changes devices: two such runs from one journal would
        change the same devices at once. The lock dies with its process (flock), so a
        killed run never leaves it stale.

        It is an flock on the database file itself, so every name of that file (a symlink,
        a hard link in another folder) shares it. flock and SQLite's own fcntl locks do not
        interact on local file systems. Who holds it is written, for the message only, to
        ``<resolved database path>.lock``."""
        with run_lock(self._lock_fd, self.path, command):
            yield

    # -- runs ------------------------------------------------------------------------

    def start_run(
        self,
        run: RunResult,
        *,
        inventory: str | None,
        args: dict[str, Any],
        resumed_from: str | None = None,
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO runs (run_id, command, verb, inventory, args, dry_run, started,"
                " resumed_from) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run.run_id, mask_command_line(run.command), run.verb, inventory,
                 json.dumps(args),
                 int(run.dry_run), run.started.isoformat(), resumed_from),
            )

    def record_device(self, run_id: str, result: DeviceResult) -> None:
        """Record a device's outcome in the run; written in a batch (see the module's
        docstring), stamped now."""
        self._queue(_INSERT_DEVICE, (
            run_id,
            result.device,
            result.outcome.value,
            result.error.kind if result.error else None,
            result.error.message if result.error else None,
            json.dumps(result.fingerprints_before),
            json.dumps(result.fingerprints_after),
            _now(),
        ))

    def finish_run(self, run: RunResult) -> None:
        status = "interrupted" if run.interrupted else "finished"
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET finished = ?, status = ?, exit_code = ? WHERE run_id = ?",
                (_now(), status, run.exit_code(), run.run_id),
            )

    def step(self, run_id: str, device: str, step: str, detail: str = "") -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO steps (run_id, device, step, detail, at) VALUES (?,?,?,?,?)",
                (run_id, device, step, detail, _now()),
            )

    def _run_record(self, row: sqlite3.Row | tuple[Any, ...]) -> RunRecord:
        (run_id, command, verb, inventory, args, dry_run, started, finished, status, exit_code,
         resumed_from) = row
        counts = {o.value: 0 for o in Outcome}
        for outcome, count in self._db.execute(
            "SELECT outcome, COUNT(*) FROM devices WHERE run_id = ? GROUP BY outcome", (run_id,)
        ):
            counts[outcome] = count
        return RunRecord(run_id, command, verb, inventory, json.loads(args), bool(dry_run),
                         started, finished, status, exit_code, resumed_from, counts)

    _RUN_COLUMNS = ("run_id, command, verb, inventory, args, dry_run, started, finished, status,"
                    " exit_code, resumed_from")

    def runs(self, limit: int = 20) -> list[RunRecord]:
        self.flush()
        rows = self._db.execute(
            f"SELECT {self._RUN_COLUMNS} FROM runs ORDER BY started DESC, rowid DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [self._run_record(row) for row in rows]

    def run(self, run_id: str, *, verbs: Sequence[str] | None = None) -> RunRecord:
        """A run by id (or a unique start of one), or ``last``: the newest run (of ``verbs``,
        if given)."""
        self.flush()
        if run_id == "last":
            where = ""
            params: tuple[str, ...] = ()
            if verbs:
                where = f"WHERE verb IN ({','.join('?' for _ in verbs)}) "
                params = tuple(verbs)
            rows = self._db.execute(
                f"SELECT {self._RUN_COLUMNS} FROM runs {where}"
                "ORDER BY started DESC, rowid DESC LIMIT 1",
                params,
            ).fetchall()
        else:
            rows = self._db.execute(
                f"SELECT {self._RUN_COLUMNS} FROM runs WHERE run_id = ? OR run_id LIKE ?",
                (run_id, f"{run_id}%"),
            ).fetchall()
        if not rows:
            raise InputError(f"no run {run_id!r} in the journal {self.path}")
        if len(rows) > 1:
            raise InputError(f"{run_id!r} matches {len(rows)} runs; give more of the id")
        return self._run_record(rows[0])

    def device_rows(self, run_id: str) -> list[dict[str, Any]]:
        self.flush()
        rows = self._db.execute(
            "SELECT device, outcome, error_kind, error, fingerprints_before, fingerprints_after"
            " FROM devices WHERE run_id = ? ORDER BY rowid",
            (run_id,),
        ).fetchall()
        return [
            {
                "device": device,
                "outcome": outcome,
                "error_kind": kind,
                "error": error,
                "fingerprints_before": json.loads(before) if before else None,
                "fingerprints_after": json.loads(after) if after else None,
            }
            for device, outcome, kind, error, before, after in rows
        ]

    def steps_of(self, run_id: str, device: str | None = None) -> list[dict[str, str]]:
        self.flush()
        query = "SELECT device, step, detail, at FROM steps WHERE run_id = ?"
        params: tuple[str, ...] = (run_id,)
        if device:
            query += " AND device = ?"
            params = (run_id, device)
        return [
            {"device": d, "step": s, "detail": det, "at": at}
            for d, s, det, at in self._db.execute(query + " ORDER BY id", params)
        ]

    def failed_in_last_run(self) -> set[str]:
        """Devices that failed or were unreachable in the newest run that is not a dry run."""
        self.flush()
        row = self._db.execute(
            "SELECT run_id FROM runs WHERE dry_run = 0 ORDER BY started DESC, rowid DESC LIMIT 1"
        ).fetchone()
        if row is None:
            raise InputError(f"@failed: the journal {self.path} has no previous run")
        return {
            device
            for (device,) in self._db.execute(
                "SELECT device FROM devices WHERE run_id = ? AND outcome IN (?, ?)",
                (row[0], Outcome.FAILED.value, Outcome.UNREACHABLE.value),
            )
        }

    # -- what each device last said about its release --------------------------------

    def record_firmware(self, run_id: str, device: str, firmware: Mapping[str, Any]) -> None:
        """Keep the release and product a run read from a device (the newest read wins):
        ``--limit firmware:`` / ``product:`` select by it before any device is contacted.
        Written in a batch, like :meth:`record_device`."""
        self._queue(_INSERT_FIRMWARE, (
            device, firmware.get("version") or firmware.get("reported") or None,
            firmware.get("product") or None, firmware.get("platform") or None, run_id, _now(),
        ))

    def known_firmware(self) -> dict[str, KnownFirmware]:
        """Device name → the release and product last read from it."""
        self.flush()
        return {
            device: KnownFirmware(version, product, platform, run_id, updated)
            for device, version, product, platform, run_id, updated in self._db.execute(
                "SELECT device, version, product, platform, run_id, updated FROM firmware")
        }

    def unfinished_devices(self, run_id: str, selected: Sequence[str]) -> list[str]:
        """Of ``selected``, the devices that did not end ok/changed/skipped in ``run_id``."""
        self.flush()
        done = {
            device
            for (device,) in self._db.execute(
                "SELECT device FROM devices WHERE run_id = ? AND outcome IN (?, ?)",
                (run_id, Outcome.OK.value, Outcome.CHANGED.value),
            )
        }
        return [name for name in selected if name not in done]
