"""The emulator's state in an SQLite file that many processes share safely.

One write transaction per ARM request, as a real server behaves: BEGIN IMMEDIATE (waiting up to
BUSY_TIMEOUT for another writer), catch up on what other connections committed (nothing to read
when PRAGMA data_version says none did), dispatch, write only the rows that changed, COMMIT. A
request that changes nothing writes nothing. Used by `jitctl --emulator` and `jitctl emulator
serve --state FILE`; the in-process Backend of the tests and the demo has no store.

Rows: the settings, one per top-level state key, and one per resource and per JIT policy, so a
write touches a few rows rather than the whole world. Row order (rowid) keeps insertion order,
which is the order the emulator lists things in. Resource and policy rows stay JSON text until a
request reads them (jitctl.emulator.rows), and only the rows a request read can have changed, so
a request costs what it reads, not the size of the world. The file itself: jitctl.emulator.statefile.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict
from pathlib import Path
from typing import Any

from jitctl.emulator.backend import Backend
from jitctl.emulator.rows import Rows
from jitctl.emulator.settings import Settings
from jitctl.emulator.statefile import (
    StateFileError,
    bad_file,
    check_file,
    companions,
    legacy_backend,
    unreadable,
)
from jitctl.errors import Contended

APPLICATION_ID = 0x6A697463  # "jitc", in the SQLite header: tells our files from others'
FORMAT = 1  # PRAGMA user_version
BUSY_TIMEOUT = 30.0  # seconds a request waits for another process's transaction
SPLIT = ("resources", "jit")  # state keys stored one row per entry

_MISSING = object()


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class StateStore:
    """Keeps one Backend in step with the file; `request()` wraps each ARM request.

    Each commit numbers the rows it writes (item.version) and the keys it deletes (gone), so a
    process catches up on another's commits by reading only those rows; a reset starts a new
    generation, which every process reloads whole.
    """

    def __init__(self, path: Path, busy_timeout: float | None = None) -> None:
        self.path = path
        self.busy_timeout = BUSY_TIMEOUT if busy_timeout is None else busy_timeout
        self.backend: Backend | None = None
        self._seen: int | None = None  # data_version of the state held in memory; None: reload
        self._generation = 0
        self._version = 0
        self._snap: dict[tuple[str, str], Any] = {}  # the rows as stored, parsed apart from state
        self._texts: dict[str, dict[str, str]] = {k: {} for k in SPLIT}  # SPLIT rows as stored
        check_file(path)
        with self._errors():
            self._conn = sqlite3.connect(
                path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
        try:
            with self._errors():
                self._conn.execute("BEGIN")  # one snapshot: another process may be creating it
                self._check_schema(self._conn)  # before anything could change a foreign file
                self._conn.execute("COMMIT")
                if self._conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            self._conn.close()
            raise

    def close(self) -> None:
        with suppress(sqlite3.Error):
            self._conn.close()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as err:
            text = str(err).lower()
            if "locked" in text or "busy" in text:
                raise Contended(
                    f"The emulator state file stayed locked for {self.busy_timeout:g} s.",
                    "Another jitctl process holds it; try again.",
                ) from None
            raise bad_file(self.path, f"cannot be used ({err})") from None
        except sqlite3.DatabaseError as err:
            raise bad_file(self.path, f"is damaged or not an emulator state file ({err})") from None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._errors():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                with suppress(sqlite3.Error):  # SQLite may have rolled back already
                    self._conn.execute("ROLLBACK")
                self._seen = None  # memory may hold a half-made change: reload next time
                raise
            self._conn.execute("COMMIT")

    def _check_schema(self, conn: sqlite3.Connection) -> bool:
        """Whether the file holds our schema (False: a new, empty file)."""
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id == 0 and tables == 0:
            return False
        if app_id != APPLICATION_ID:
            raise bad_file(self.path, "is an SQLite database of another program")
        if conn.execute("PRAGMA user_version").fetchone()[0] != FORMAT:
            raise bad_file(self.path, "was written by another version of jitctl")
        return True

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {FORMAT}")
        conn.execute(
            "CREATE TABLE item (kind TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
            " version INTEGER NOT NULL, PRIMARY KEY (kind, key))"
        )
        conn.execute("CREATE INDEX item_version ON item (version)")
        conn.execute(
            "CREATE TABLE gone (kind TEXT NOT NULL, key TEXT NOT NULL, version INTEGER NOT NULL,"
            " PRIMARY KEY (kind, key))"
        )
        conn.execute("CREATE TABLE meta (generation INTEGER NOT NULL, version INTEGER NOT NULL)")
        conn.execute("INSERT INTO meta VALUES (0, 0)")

    def attach(
        self,
        backend: Backend,
        seed: Callable[[Backend], None] | None = None,
        legacy: bool = True,
    ) -> Backend:
        """Keep `backend` in step with the file: load the file's state into it, or, for a new
        file, write `backend`'s state: the former JSON file's beside it (when `legacy`), else
        what `seed(backend)` makes."""
        self.backend = backend
        with self._transaction() as conn:
            if self._check_schema(conn):
                self._refresh(conn, force=True)
                return backend
            self._create_schema(conn)
            old = legacy_backend(self.path) if legacy else None
            if old is not None:
                backend.settings, backend.state = old.settings, old.state
            elif seed is not None:
                seed(backend)
            self._start_generation(conn)
        return backend

    def replace(self, backend: Backend) -> None:
        """Replace the whole state with `backend`'s, in one transaction (`emulator reset`)."""
        self.backend = backend
        with self._transaction() as conn:
            if not self._check_schema(conn):
                self._create_schema(conn)
            conn.execute("DELETE FROM item")
            conn.execute("DELETE FROM gone")
            self._start_generation(conn)

    def _start_generation(self, conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE meta SET generation = generation + 1, version = 0")
        self._generation = conn.execute("SELECT generation FROM meta").fetchone()[0]
        self._version, self._snap = 0, {}
        self._texts = {k: {} for k in SPLIT}
        self._write(conn)
        self._seen = conn.execute("PRAGMA data_version").fetchone()[0]

    @contextmanager
    def request(self) -> Iterator[None]:
        """One ARM request: inside, the backend holds the file's current state; on the way out,
        what changed is written and committed (nothing is written when nothing changed)."""
        assert self.backend is not None, "attach a backend first"
        with self.backend.lock, self._transaction() as conn:
            self._refresh(conn)
            yield
            self._write(conn)

    # --- file -> memory --------------------------------------------------------------------

    def _refresh(self, conn: sqlite3.Connection, force: bool = False) -> None:
        seen = conn.execute("PRAGMA data_version").fetchone()[0]
        if seen == self._seen and not force:
            return  # no other connection committed since
        generation, version = conn.execute("SELECT generation, version FROM meta").fetchone()
        try:
            if force or self._seen is None or generation != self._generation:
                self._load_all(conn)
            elif version != self._version:
                for kind, key in conn.execute(
                    "SELECT kind, key FROM gone WHERE version > ?", (self._version,)
                ):
                    self._drop(kind, key)
                for kind, key, text in conn.execute(
                    "SELECT kind, key, value FROM item WHERE version > ? ORDER BY rowid",
                    (self._version,),
                ):
                    self._set(kind, key, text)
        except (ValueError, TypeError, KeyError):
            self._seen = None
            raise unreadable(self.path) from None
        self._seen, self._generation, self._version = seen, generation, version

    def _load_all(self, conn: sqlite3.Connection) -> None:
        assert self.backend is not None
        self.backend.state = {key: Rows() for key in SPLIT}
        self._snap = {}
        self._texts = {k: {} for k in SPLIT}
        for kind, key, text in conn.execute("SELECT kind, key, value FROM item ORDER BY rowid"):
            self._set(kind, key, text)
        if ("settings", "") not in self._snap or ("state", "subscriptions") not in self._snap:
            raise ValueError("incomplete state")

    def _set(self, kind: str, key: str, text: str) -> None:
        assert self.backend is not None
        if kind in SPLIT:
            self._rows(kind).set_text(key, text)  # decoded when a request reads it
            self._texts[kind][key] = text
            return
        value = json.loads(text)
        if kind == "settings":
            self.backend.settings = Settings(**value)
        elif kind == "state":
            self.backend.state[key] = value
        else:
            raise KeyError(kind)
        self._snap[(kind, key)] = json.loads(text)  # a copy that the backend cannot touch

    def _drop(self, kind: str, key: str) -> None:
        assert self.backend is not None
        if kind in SPLIT:
            with suppress(KeyError):
                del self._rows(kind)[key]
            self._texts[kind].pop(key, None)
            return
        self.backend.state.get(kind, {}).pop(key, None)
        self._snap.pop((kind, key), None)

    def _rows(self, kind: str) -> Rows:
        assert self.backend is not None
        rows = self.backend.state.get(kind)
        if not isinstance(rows, Rows):
            rows = self.backend.state[kind] = Rows(rows or {})
        return rows

    # --- memory -> file --------------------------------------------------------------------

    def _current(self) -> dict[tuple[str, str], Any]:
        assert self.backend is not None
        rows: dict[tuple[str, str], Any] = {("settings", ""): asdict(self.backend.settings)}
        for key, value in self.backend.state.items():
            if key not in SPLIT:
                rows[("state", key)] = value
        return rows

    def _changed_rows(self) -> tuple[dict[tuple[str, str], str], list[tuple[str, str]]]:
        """SPLIT rows that differ from the file: only the rows read since the last write (or
        new) can, and they are serialised to compare; the others are still the file's text."""
        changed: dict[tuple[str, str], str] = {}
        gone: list[tuple[str, str]] = []
        for kind in SPLIT:
            rows, texts = self._rows(kind), self._texts[kind]
            live = rows.key_set()
            new = live - texts.keys()
            # new rows in the backend's order (the rowid is the listing order); read ones after
            ordered = [k for k in live if k in new] if new else []
            for key in ordered + sorted(rows.take_touched() - new):
                if key in live:
                    value, text = rows.stored(key)
                    text = text if text is not None else _dumps(value)
                    if texts.get(key) != text:
                        changed[(kind, key)] = text
            gone.extend((kind, key) for key in texts.keys() - live)
        return changed, gone

    def _write(self, conn: sqlite3.Connection) -> None:
        """Write the rows that differ from the snapshot (a deep comparison is ~10 times
        cheaper than serialising the world to compare text)."""
        rows = self._current()
        changed = {k: _dumps(v) for k, v in rows.items() if self._snap.get(k, _MISSING) != v}
        gone = [k for k in self._snap if k not in rows]
        split_changed, split_gone = self._changed_rows()
        changed.update(split_changed)
        gone.extend(split_gone)
        if not changed and not gone:
            return
        version = self._version + 1
        conn.executemany("DELETE FROM item WHERE kind = ? AND key = ?", gone)
        conn.executemany(
            "INSERT INTO gone VALUES (?, ?, ?)"
            " ON CONFLICT (kind, key) DO UPDATE SET version = excluded.version",
            [(*k, version) for k in gone],
        )
        conn.executemany("DELETE FROM gone WHERE kind = ? AND key = ?", list(changed))
        conn.executemany(
            "INSERT INTO item VALUES (?, ?, ?, ?) ON CONFLICT (kind, key)"
            " DO UPDATE SET value = excluded.value, version = excluded.version",
            [(*k, text, version) for k, text in changed.items()],
        )
        conn.execute("UPDATE meta SET version = ?", (version,))
        self._version = version
        for k in gone:
            if k[0] in SPLIT:
                del self._texts[k[0]][k[1]]
            else:
                del self._snap[k]
        for k, text in changed.items():
            if k[0] in SPLIT:
                self._texts[k[0]][k[1]] = text
            else:
                self._snap[k] = json.loads(text)


class StoredRouter:
    """A Router whose every request is one transaction on the store."""

    def __init__(self, router: Any, store: StateStore) -> None:
        self.router = router
        self.store = store

    def handle(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        raw: bytes | None,
        peer: str | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        with self.store.request():
            result: tuple[int, dict[str, str], bytes] = self.router.handle(
                method, url, headers, raw, peer
            )
            return result


def open_store(
    path: Path,
    backend: Backend,
    seed: Callable[[Backend], None] | None = None,
    legacy: bool = True,
) -> StateStore:
    """A store on `path` attached to `backend` (closed again if the file cannot be used)."""
    store = StateStore(path)
    try:
        store.attach(backend, seed, legacy)
    except BaseException:
        store.close()
        raise
    return store


def read_file(path: Path) -> Backend:
    """A Backend holding the state in the file at `path`, read once (tests, tools)."""
    store = open_store(path, Backend())
    store.close()
    assert store.backend is not None
    return store.backend


def reset_file(path: Path, backend: Backend) -> None:
    """Replace the state at `path` with `backend`'s: in one transaction on a good file (other
    processes see the new world at their next request), as a new file over a bad one."""
    try:
        store = StateStore(path)
        try:
            store.replace(backend)
        finally:
            store.close()
        return
    except StateFileError:
        if path.is_dir():
            raise
    for p in companions(path):
        p.unlink(missing_ok=True)
    open_store(path, backend, legacy=False).close()
