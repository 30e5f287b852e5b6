"""The study's ratings in SQLite (stdlib `sqlite3`): WAL mode, one transaction per answer, a versioned schema.

Every call opens its own short-lived connection: the web page calls from worker threads and sqlite3 objects must not
cross threads, and a connection per call leaves nothing open that a killed server could hold half-written. WAL lets
readers go on while one participant's answer is written; `busy_timeout` makes a second writer wait its turn instead of
failing; `synchronous=FULL` puts every commit on disk before `submit` returns.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from datetime import datetime, timezone
from pathlib import Path

from . import CRITERIA, SCALE, SYSTEMS

DATABASE_FILE = "ratings.sqlite"
CODE_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,40}")
BUSY_TIMEOUT_MS = 30_000

META_TABLE = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
TABLES = (
    "CREATE TABLE participants (code TEXT PRIMARY KEY, registered_at TEXT NOT NULL)",
    """CREATE TABLE responses (
        participant TEXT NOT NULL REFERENCES participants(code),
        item_id TEXT NOT NULL,
        skipped INTEGER NOT NULL,
        preferred TEXT,
        comment TEXT NOT NULL,
        submitted_at TEXT NOT NULL,
        PRIMARY KEY (participant, item_id))""",
    f"""CREATE TABLE ratings (
        participant TEXT NOT NULL,
        item_id TEXT NOT NULL,
        system TEXT NOT NULL,
        {", ".join(f"{name} INTEGER NOT NULL" for name in CRITERIA)},
        PRIMARY KEY (participant, item_id, system),
        FOREIGN KEY (participant, item_id) REFERENCES responses(participant, item_id))""",
)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class StudyDatabase:
    """The ratings of one study (`STUDY_DIR/ratings.sqlite`), safe to use from several threads and processes."""

    SCHEMA_VERSION = 1

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        self._closed = False
        if self.path.is_dir():
            raise IsADirectoryError(f"Study database {self.path} is a folder; name a file (e.g. {DATABASE_FILE}).")
        try:
            with self._connect() as connection:
                connection.execute("PRAGMA journal_mode=WAL")  # persistent: stored in the file
                with self._transaction(connection):
                    connection.execute(META_TABLE)  # read first: another version's tables stay untouched
                    version = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                    if version is None:
                        for statement in TABLES:
                            connection.execute(statement)
                        connection.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(self.SCHEMA_VERSION),))
                        version = (str(self.SCHEMA_VERSION),)
        except sqlite3.DatabaseError as err:
            raise ValueError(f"{self.path} is not a study database MixingBuddy can open: {err}") from None
        if version[0] != str(self.SCHEMA_VERSION):
            raise ValueError(f"{self.path} has schema version {version[0]}; this MixingBuddy reads version "
                             f"{self.SCHEMA_VERSION}: open it with the MixingBuddy that wrote it.")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        if self._closed:
            raise ValueError(f"Study database {self.path} is closed.")
        # autocommit mode (isolation_level=None): transactions are the explicit BEGIN IMMEDIATE ... COMMIT below
        with closing(sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)) as connection:
            connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute("PRAGMA foreign_keys=ON")
            connection.row_factory = sqlite3.Row
            yield connection

    @staticmethod
    @contextmanager
    def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
        """BEGIN IMMEDIATE takes the write lock at once, so two writers queue rather than deadlock on an upgrade."""
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def register(self, code: str) -> None:
        """Record participant `code` (1-40 letters, digits, "_" or "-"); registering again changes nothing."""
        check_code(code)
        with self._connect() as connection, self._transaction(connection):
            connection.execute("INSERT OR IGNORE INTO participants VALUES (?, ?)", (code, _now()))

    def submit(
        self,
        code: str,
        item_id: str,
        ratings: Mapping[str, Mapping[str, int]] | None,
        preferred: str | None = None,
        comment: str = "",
        skipped: bool = False,
    ) -> bool:
        """Store participant `code`'s answer to `item_id` in one transaction: the response (skipped or not, the
        preferred system of an A/B item, the comment) and, unless skipped, `ratings` {system: {criterion: 1..7}}.
        Returns False, changing nothing, when this participant has already answered this item."""
        check_code(code)
        rows = check_answer(item_id, ratings, preferred, comment, skipped)
        with self._connect() as connection, self._transaction(connection):
            connection.execute("INSERT OR IGNORE INTO participants VALUES (?, ?)", (code, _now()))
            inserted = connection.execute(
                "INSERT OR IGNORE INTO responses VALUES (?, ?, ?, ?, ?, ?)",
                (code, item_id, int(skipped), preferred, comment, _now()),
            ).rowcount
            if not inserted:
                return False
            connection.executemany(
                f"INSERT INTO ratings VALUES (?, ?, ?{', ?' * len(CRITERIA)})",
                [(code, item_id, system, *values) for system, values in rows],
            )
        return True

    def answered(self, code: str) -> set[str]:
        """The items participant `code` has answered (rated or skipped)."""
        with self._connect() as connection:
            rows = connection.execute("SELECT item_id FROM responses WHERE participant = ?", (code,))
            return {row[0] for row in rows}

    def ratings(self) -> list[dict]:
        """One dict per (participant, item, system): the three criteria, and the response's comment, preferred
        system and time."""
        criteria = ", ".join(f"r.{name}" for name in CRITERIA)
        query = (f"SELECT r.participant, r.item_id, r.system, {criteria}, s.comment, s.preferred, s.submitted_at "
                 "FROM ratings r JOIN responses s USING (participant, item_id) ORDER BY s.rowid, r.system")
        with self._connect() as connection:
            return [dict(row) for row in connection.execute(query)]

    def responses(self) -> list[dict]:
        """One dict per (participant, item): skipped (bool), preferred system or None, comment, time."""
        query = "SELECT participant, item_id, skipped, preferred, comment, submitted_at FROM responses ORDER BY rowid"
        with self._connect() as connection:
            return [{**row, "skipped": bool(row["skipped"])} for row in map(dict, connection.execute(query))]

    def close(self) -> None:
        """Refuse further calls (no connection stays open between calls)."""
        self._closed = True

    def __enter__(self) -> StudyDatabase:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_code(code: str) -> None:
    """Raise `ValueError` unless `code` is 1-40 letters, digits, "_" or "-" (a code, never a name or an e-mail)."""
    if not isinstance(code, str) or not CODE_PATTERN.fullmatch(code):
        raise ValueError(f"Participant code {code!r} must be 1-40 letters, digits, '_' or '-'.")


def check_answer(item_id: str, ratings, preferred: str | None, comment: str, skipped: bool) -> list[tuple]:
    """The rating rows [(system, (value per criterion))] of a valid answer; `ValueError` saying what is wrong."""
    if not isinstance(item_id, str) or not item_id:
        raise ValueError(f"Item id {item_id!r} must be a non-empty string.")
    if not isinstance(comment, str):
        raise ValueError("The comment must be text.")
    if skipped:
        if ratings or preferred is not None:
            raise ValueError(f"Item {item_id}: a skipped item takes no ratings and no preference.")
        return []
    if not isinstance(ratings, Mapping) or not ratings:
        raise ValueError(f"Item {item_id}: give ratings {{system: {{criterion: 1-7}}}} or skip it.")
    rows = []
    for system, values in ratings.items():
        if system not in SYSTEMS:
            raise ValueError(f"Item {item_id}: unknown system {system!r}; choose from {SYSTEMS}.")
        if not isinstance(values, Mapping) or set(values) != set(CRITERIA):
            raise ValueError(f"Item {item_id}: rate {system!r} on exactly {', '.join(CRITERIA)}.")
        for criterion, value in values.items():
            if isinstance(value, bool) or not isinstance(value, int) or value not in SCALE:
                raise ValueError(f"Item {item_id}: {criterion} of {system!r} must be an integer 1-7, got {value!r}.")
        rows.append((system, tuple(values[name] for name in CRITERIA)))
    if preferred is not None and (len(ratings) < 2 or preferred not in ratings):
        raise ValueError(f"Item {item_id}: the preference {preferred!r} must be one of the two rated systems.")
    return rows
