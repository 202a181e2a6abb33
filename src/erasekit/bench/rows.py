"""Moving a cell's rows between its own database and the results database.

Image and adversarial-input paths are stored relative to their database's folder; moving rows
rewrites them so that they still name the same files. Every insert is ``INSERT OR IGNORE`` on the
tables' primary keys, so rows that are already there (a baseline shared by many cells, a cell
whose result arrives twice) are never duplicated.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from erasekit.provenance import record, utc_now
from erasekit.store import Store

#: Tables keyed by an evaluation run, and by an attack run; with their path columns.
RUN_TABLES = ("runs", "samples", "metric_values", "sample_values")
ATTACK_TABLES = ("attack_runs", "attack_values", "attack_samples")
PATH_COLUMNS = {"samples": ("image_path",), "attack_samples": ("image_path", "adversarial_path")}

Rows = dict[str, list[dict[str, Any]]]


def _moved(path: str | None, src_root: Path, dst_root: Path) -> str | None:
    if path is None:
        return None
    return os.path.normpath(os.path.relpath(src_root / path, dst_root))


def _select(store: Store, table: str, column: str, ids: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in ids:
        out += store._rows(f"SELECT * FROM {table} WHERE {column} = ?", (i,))
    return out


def rows_of(store: Store, run_ids: list[str], attack_ids: list[str], dst_root: Path) -> Rows:
    """The rows of these runs and attack runs, paths made relative to ``dst_root``."""
    src_root = store.path.parent
    out: Rows = {}
    for tables, column, ids in ((RUN_TABLES, "run_id", run_ids), (ATTACK_TABLES, "attack_id", attack_ids)):
        for table in tables:
            rows = _select(store, table, column, ids)
            for r in rows:
                for col in PATH_COLUMNS.get(table, ()):
                    r[col] = _moved(r[col], src_root, dst_root)
            out[table] = rows
    return out


def insert(store: Store, rows: Rows, cell: dict[str, Any] | None = None) -> None:
    """Insert ``rows`` (and the bench cell row) in one transaction, skipping rows already there."""
    with store.transaction() as c:
        for table in (*RUN_TABLES, *ATTACK_TABLES):
            for r in rows.get(table, []):
                c.execute(f"INSERT OR IGNORE INTO {table} ({', '.join(r)}) VALUES ({', '.join('?' for _ in r)})",
                          tuple(r.values()))
        if cell is not None:
            row = {**cell, **record()}
            c.execute(f"INSERT OR IGNORE INTO bench_cells ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
                      tuple(row.values()))


def all_ids(store: Store) -> tuple[list[str], list[str]]:
    """Every complete evaluation run and every attack run of a database."""
    runs = [r["run_id"] for r in store.runs(state="complete")]
    return runs, [r["attack_id"] for r in store.attack_runs()]


def cell_rows(cell_store: Store, main_root: Path) -> Rows:
    """Everything a finished cell database holds, paths relative to the results database's folder."""
    runs, attacks = all_ids(cell_store)
    return rows_of(cell_store, runs, attacks, main_root)


def add_members(store: Store, bench: str, cells: list[Any]) -> None:
    """Record that ``bench`` has these cells, under their labels (a cell computed by another spec
    with the same inputs is reused, and shows in this spec's leaderboard under this spec's label)."""
    with store.transaction() as c:
        c.executemany("INSERT OR REPLACE INTO bench_members (bench, cell_id, label) VALUES (?, ?, ?)",
                      [(bench, cell.cell_id, cell.label) for cell in cells])


def bench_cells(store: Store, bench: str | None = None) -> list[dict[str, Any]]:
    """The computed cells (of one bench: its members, with the bench's labels), attack ids decoded."""
    if bench is None:
        rows = store._rows("SELECT * FROM bench_cells ORDER BY bench, label, concept, seed")
    else:
        rows = store._rows("SELECT c.*, m.label AS label, m.bench AS bench FROM bench_members m "
                           "JOIN bench_cells c ON c.cell_id = m.cell_id WHERE m.bench = ? "
                           "ORDER BY m.label, c.concept, c.seed", (bench,))
    return [{**r, "attack_ids": json.loads(r["attack_ids"])} for r in rows]


def benches(store: Store) -> list[str]:
    """The bench names a database holds cells of (none for a database without the table)."""
    if not _has_table(store, "bench_members"):
        return []
    return [r[0] for r in store.conn.execute("SELECT DISTINCT bench FROM bench_members ORDER BY bench")]


def _has_table(store: Store, name: str) -> bool:
    """Whether the database has table ``name`` (an older or read-only one may lack the bench tables)."""
    return store.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() \
        is not None


def start_session(store: Store, bench: str, workers: int | None, address: str | None) -> str:
    """Record that an invocation of ``bench`` started; returns its id for :func:`update_session`."""
    sid = uuid.uuid4().hex[:16]
    now = utc_now()
    with store.transaction() as c:
        c.execute("INSERT INTO bench_sessions (session_id, bench, workers, address, started_at, updated_at, "
                  "wall_seconds, computed, finished) VALUES (?, ?, ?, ?, ?, ?, 0, 0, 0)",
                  (sid, bench, workers, address, now, now))
    return sid


def update_session(store: Store, sid: str, wall_seconds: float, computed: int, finished: bool = False) -> None:
    with store.transaction() as c:
        c.execute("UPDATE bench_sessions SET updated_at = ?, wall_seconds = ?, computed = ?, finished = ? "
                  "WHERE session_id = ?", (utc_now(), round(wall_seconds, 1), computed, int(finished), sid))


def sessions(store: Store, bench: str) -> list[dict[str, Any]]:
    """The invocations of ``bench`` in this database, oldest first (none for a database without the table)."""
    if not _has_table(store, "bench_sessions"):
        return []
    return store._rows("SELECT * FROM bench_sessions WHERE bench = ? ORDER BY started_at", (bench,))
