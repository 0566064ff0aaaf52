"""fleet.journal_keys — the journal's ``keys`` table: every private key certfleet generates,
**encrypted**, with its CSR and, once signed, its certificate, and the state of its rotation.

A key row is committed (durably: it survives power loss) *before* its CSR leaves the machine, so
that ``runs resume`` can finish a rotation without generating a new key. :class:`Journal
<fleet.journal.Journal>` offers these methods through :class:`KeyTable`.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from .errors import InputError

__all__ = ["KEY_ABANDONED_STEP", "KEY_STATES", "KeyRecord", "KeyTable"]

#: key states, in order; "done" and "abandoned" are final
KEY_STATES: Final = (
    "generated", "submitted", "signed", "uploaded", "activated", "done", "abandoned"
)
_OPEN_KEY_STATES: Final = ("generated", "submitted", "signed", "uploaded", "activated")
_OPEN_MARKS: Final = ",".join("?" for _ in _OPEN_KEY_STATES)
_KEY_COLUMNS: Final = ("id, run_id, device, purposes, key_kind, key_pem_encrypted,"
                       " public_sha256, csr_pem, cert_pem, state, created, updated")

#: a key that will never be used: what abandoned it is a step of its run with this name
KEY_ABANDONED_STEP: Final = "key abandoned"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


@dataclass(frozen=True)
class KeyRecord:
    id: int
    run_id: str
    device: str
    purposes: tuple[str, ...]
    key_kind: str
    key_pem_encrypted: bytes
    public_sha256: str
    csr_pem: str
    cert_pem: str | None
    state: str
    created: str = ""
    updated: str = ""

    @property
    def open(self) -> bool:
        """Not done and not abandoned: a later rotate of its device would reuse it."""
        return self.state in _OPEN_KEY_STATES


def _key_record(row: Sequence[Any]) -> KeyRecord:
    """A row of ``SELECT {_KEY_COLUMNS}`` as a record."""
    (key_id, run_id, device, purposes, kind, blob, public, csr, cert, state, created,
     updated) = row
    return KeyRecord(key_id, run_id, device, tuple(purposes.split(",")), kind, bytes(blob),
                     public, csr, cert, state, created, updated)


class KeyTable:
    """The key methods of :class:`~fleet.journal.Journal` (which provides the connection, the
    path and the transactions)."""

    path: Path
    _db: sqlite3.Connection

    def _tx(self, *, durable: bool = False) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError  # Journal's

    def store_key(
        self,
        *,
        run_id: str,
        device: str,
        purposes: Sequence[str],
        key_kind: str,
        key_pem_encrypted: bytes,
        public_sha256: str,
        csr_pem: str,
        steps: Callable[[int], Sequence[tuple[str, str]]] | None = None,
    ) -> int:
        """Commit a new key (encrypted) and its CSR. Call before the CSR leaves the machine.

        ``steps(key_id)``: (step, detail) pairs of the key's run and device, journaled in the
        same transaction (one commit per new key instead of one per row)."""
        with self._tx(durable=True) as db:
            cursor = db.execute(
                "INSERT INTO keys (run_id, device, purposes, created, key_kind,"
                " key_pem_encrypted, public_sha256, csr_pem, state, updated)"
                " VALUES (?,?,?,?,?,?,?,?,?,?)",
                (run_id, device, ",".join(purposes), _now(), key_kind, key_pem_encrypted,
                 public_sha256, csr_pem, "generated", _now()),
            )
            key_id = cursor.lastrowid
            assert key_id is not None
            if steps is not None:
                db.executemany(
                    "INSERT INTO steps (run_id, device, step, detail, at) VALUES (?,?,?,?,?)",
                    [(run_id, device, step, detail, _now()) for step, detail in steps(key_id)],
                )
        return key_id

    def update_key(self, key_id: int, state: str, *, cert_pem: str | None = None,
                   step: tuple[str, str] | None = None) -> None:
        """Move a key to ``state``; ``step``: a (step, detail) of its run and device, journaled
        in the same transaction."""
        if state not in KEY_STATES:
            raise ValueError(f"unknown key state {state!r}")
        with self._tx() as db:
            if cert_pem is not None:
                db.execute("UPDATE keys SET state = ?, cert_pem = ?, updated = ? WHERE id = ?",
                           (state, cert_pem, _now(), key_id))
            else:
                db.execute("UPDATE keys SET state = ?, updated = ? WHERE id = ?",
                           (state, _now(), key_id))
            if step is not None:
                db.execute(
                    "INSERT INTO steps (run_id, device, step, detail, at)"
                    " SELECT run_id, device, ?, ?, ? FROM keys WHERE id = ?",
                    (*step, _now(), key_id),
                )

    def open_key(self, device: str, purposes: Sequence[str]) -> KeyRecord | None:
        """The newest key for this device and purposes whose rotation did not finish."""
        row = self._db.execute(
            f"SELECT {_KEY_COLUMNS} FROM keys WHERE device = ? AND purposes = ?"
            f" AND state IN ({_OPEN_MARKS}) ORDER BY id DESC LIMIT 1",
            (device, ",".join(purposes), *_OPEN_KEY_STATES),
        ).fetchone()
        return None if row is None else _key_record(row)

    def sample_key(
        self, devices: Sequence[str] = (), purposes: Sequence[str] = ()
    ) -> KeyRecord | None:
        """A key to check a passphrase against: the newest unfinished key of one of
        ``devices`` for ``purposes`` (the keys a run would reuse), else the newest key of all."""
        wanted = set(devices)
        row = None
        if wanted:
            for found in self._db.execute(
                f"SELECT {_KEY_COLUMNS} FROM keys WHERE purposes = ? AND state IN ({_OPEN_MARKS})"
                " ORDER BY id DESC",
                (",".join(purposes), *_OPEN_KEY_STATES),
            ):
                if found[2] in wanted:
                    row = found
                    break
        if row is None:
            row = self._db.execute(f"SELECT {_KEY_COLUMNS} FROM keys ORDER BY id DESC LIMIT 1"
                                   ).fetchone()
        return None if row is None else _key_record(row)

    def keys(self, run_id: str | None = None, *, open_only: bool = False) -> list[KeyRecord]:
        """Keys, oldest first: of one run, and/or only the open ones (not done/abandoned)."""
        where: list[str] = []
        params: list[str] = []
        if run_id:
            where.append("run_id = ?")
            params.append(run_id)
        if open_only:
            where.append(f"state IN ({_OPEN_MARKS})")
            params.extend(_OPEN_KEY_STATES)
        query = f"SELECT {_KEY_COLUMNS} FROM keys"
        if where:
            query += " WHERE " + " AND ".join(where)
        return [_key_record(row) for row in self._db.execute(query + " ORDER BY id", params)]

    def key(self, key_id: int) -> KeyRecord:
        row = self._db.execute(f"SELECT {_KEY_COLUMNS} FROM keys WHERE id = ?",
                               (key_id,)).fetchone()
        if row is None:
            raise InputError(f"no key {key_id} in the journal {self.path}")
        return _key_record(row)

    def abandon_key(self, key_id: int, reason: str) -> None:
        """Never use this key again (a later rotate of its device makes a new one); why is
        kept as a step of the run that made it."""
        record = self.key(key_id)
        with self._tx() as db:
            db.execute("UPDATE keys SET state = 'abandoned', updated = ? WHERE id = ?",
                       (_now(), key_id))
            db.execute(
                "INSERT INTO steps (run_id, device, step, detail, at) VALUES (?,?,?,?,?)",
                (record.run_id, record.device, KEY_ABANDONED_STEP, f"key {key_id}: {reason}",
                 _now()),
            )

    def abandon_reason(self, record: KeyRecord) -> str | None:
        prefix = f"key {record.id}: "
        for row in self._db.execute(
            "SELECT detail FROM steps WHERE run_id = ? AND device = ? AND step = ?"
            " ORDER BY id DESC", (record.run_id, record.device, KEY_ABANDONED_STEP)
        ):
            if row[0].startswith(prefix):
                return str(row[0][len(prefix):])
        return None
