"""The results database (SQLite): runs, per-sample rows, metric values, per-sample metric values.

Every write is one transaction, so a run killed at any moment leaves whole chunks of rows (and
no half-written metric set); primary keys make re-running idempotent.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from erasekit.metrics.base import Value

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,               -- 'erasure' | 'baseline'
    method TEXT,
    concept TEXT NOT NULL,
    artifact TEXT,                    -- artifact folder as given
    config TEXT NOT NULL,             -- resolved evaluation + artifact config (JSON)
    seeds TEXT NOT NULL,              -- JSON list
    versions TEXT NOT NULL,           -- JSON {package: version}
    git_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    completed_at TEXT,
    wall_seconds REAL
);
CREATE TABLE IF NOT EXISTS samples (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    prompt_index INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    prompt TEXT NOT NULL,
    split TEXT NOT NULL,
    attributes TEXT,                  -- JSON or NULL
    image_path TEXT NOT NULL,         -- relative to the database's folder
    verdict TEXT,                     -- judge verdict (JSON) or NULL
    PRIMARY KEY (run_id, prompt_index, seed)
);
CREATE TABLE IF NOT EXISTS metric_values (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    metric TEXT NOT NULL,             -- registered metric that produced it
    key TEXT NOT NULL,                -- reported name (efficacy, efficacy_heldout_phrasings, ...)
    value REAL NOT NULL,
    ci_low REAL,
    ci_high REAL,
    higher_is_better INTEGER NOT NULL,
    n INTEGER NOT NULL,
    meta TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE TABLE IF NOT EXISTS sample_values (
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    prompt_index INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (run_id, key, prompt_index, seed)
);
CREATE TABLE IF NOT EXISTS attack_runs (
    attack_id TEXT PRIMARY KEY,
    run_name TEXT NOT NULL,
    kind TEXT NOT NULL,               -- 'erasure' | 'baseline'
    method TEXT,
    concept TEXT NOT NULL,
    artifact TEXT,
    attack TEXT NOT NULL,
    threat_model TEXT NOT NULL,
    budget INTEGER NOT NULL,
    budget_unit TEXT NOT NULL,
    config TEXT NOT NULL,             -- resolved attack settings (JSON)
    n INTEGER NOT NULL,
    pre_asr REAL NOT NULL,
    asr REAL NOT NULL,
    unet_evals INTEGER NOT NULL,
    grad_steps INTEGER NOT NULL,
    wall_seconds REAL NOT NULL,
    versions TEXT NOT NULL,
    git_hash TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS attack_samples (
    attack_id TEXT NOT NULL REFERENCES attack_runs(attack_id),
    target_index INTEGER NOT NULL,
    prompt TEXT NOT NULL,
    seed INTEGER NOT NULL,
    pre_success INTEGER NOT NULL,
    success INTEGER NOT NULL,
    adversarial_text TEXT,
    adversarial_path TEXT,            -- safetensors with the adversarial embedding / latents / LoRA
    image_path TEXT NOT NULL,
    verdict TEXT NOT NULL,
    unet_evals INTEGER NOT NULL,
    grad_steps INTEGER NOT NULL,
    wall_seconds REAL NOT NULL,
    note TEXT NOT NULL,
    PRIMARY KEY (attack_id, target_index)
);
"""


class StoreError(ValueError):
    """The database cannot be opened or written (one-line message for the CLI)."""


class Store:
    """A results database file; images live in ``<db folder>/<db stem>-images/``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise StoreError(f"--db {self.path} is a folder; give a file name such as erasekit.db")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.conn.executescript(SCHEMA)
        except (sqlite3.DatabaseError, OSError) as exc:
            raise StoreError(f"cannot use database {self.path} ({exc}); pass a writable --db file") from None
        self.image_root = self.path.parent / f"{self.path.stem}-images"

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot write database {self.path} ({exc}); pass a writable --db file") from None
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def _rows(self, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
        cur = self.conn.execute(sql, params)
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]

    # -- runs ------------------------------------------------------------------------------------
    def run(self, run_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        return rows[0] if rows else None

    def runs(self) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM runs ORDER BY created_at, run_id")

    def add_run(self, row: dict[str, Any]) -> None:
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self.transaction() as c:
            c.execute(f"INSERT OR IGNORE INTO runs ({cols}) VALUES ({marks})", tuple(row.values()))

    def complete_run(self, run_id: str, completed_at: str, wall_seconds: float) -> None:
        with self.transaction() as c:
            c.execute("UPDATE runs SET completed_at = ?, wall_seconds = ? WHERE run_id = ?",
                      (completed_at, wall_seconds, run_id))

    def delete_run(self, run_id: str) -> None:
        with self.transaction() as c:
            for table in ("sample_values", "metric_values", "samples", "runs"):
                c.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))

    # -- samples ---------------------------------------------------------------------------------
    def sample_keys(self, run_id: str) -> set[tuple[int, int]]:
        cur = self.conn.execute("SELECT prompt_index, seed FROM samples WHERE run_id = ?", (run_id,))
        return {(int(i), int(s)) for i, s in cur.fetchall()}

    def add_samples(self, run_id: str, rows: list[dict[str, Any]]) -> None:
        with self.transaction() as c:
            c.executemany(
                "INSERT INTO samples (run_id, prompt_index, seed, prompt, split, attributes, image_path, verdict) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, r["prompt_index"], r["seed"], r["prompt"], r["split"],
                  None if r.get("attributes") is None else json.dumps(r["attributes"]), r["image_path"],
                  None if r.get("verdict") is None else json.dumps(r["verdict"])) for r in rows],
            )

    def samples(self, run_id: str) -> list[dict[str, Any]]:
        cur = self.conn.execute(
            "SELECT prompt_index, seed, prompt, split, attributes, image_path, verdict FROM samples "
            "WHERE run_id = ? ORDER BY seed, prompt_index", (run_id,))
        out = []
        for i, s, prompt, split, attrs, path, verdict in cur.fetchall():
            out.append({"prompt_index": i, "seed": s, "prompt": prompt, "split": split,
                        "attributes": None if attrs is None else json.loads(attrs), "image_path": path,
                        "verdict": None if verdict is None else json.loads(verdict)})
        return out

    # -- metrics ---------------------------------------------------------------------------------
    def metric_names_done(self, run_id: str) -> set[str]:
        cur = self.conn.execute("SELECT DISTINCT metric FROM metric_values WHERE run_id = ?", (run_id,))
        return {r[0] for r in cur.fetchall()}

    def add_metric(self, run_id: str, metric: str, values: dict[str, Value]) -> None:
        """Write one metric's values and per-sample values in one transaction (replacing old ones)."""
        with self.transaction() as c:
            old = [r[0] for r in c.execute("SELECT key FROM metric_values WHERE run_id = ? AND metric = ?",
                                           (run_id, metric)).fetchall()]
            for key in old:
                c.execute("DELETE FROM sample_values WHERE run_id = ? AND key = ?", (run_id, key))
            c.execute("DELETE FROM metric_values WHERE run_id = ? AND metric = ?", (run_id, metric))
            for key, v in values.items():
                c.execute(
                    "INSERT INTO metric_values VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, metric, key, v.value, v.low, v.high, int(v.higher_is_better), v.n, json.dumps(v.meta)),
                )
                c.executemany("INSERT INTO sample_values VALUES (?, ?, ?, ?, ?)",
                              [(run_id, key, i, s, x) for i, s, x in v.samples])
            if not values:  # remember that the metric ran and had nothing to report
                c.execute("INSERT INTO metric_values VALUES (?, ?, ?, 0, NULL, NULL, 0, 0, ?)",
                          (run_id, metric, f"_{metric}_empty", json.dumps({"empty": True})))

    def metrics(self, run_id: str) -> dict[str, dict[str, Any]]:
        cur = self.conn.execute(
            "SELECT metric, key, value, ci_low, ci_high, higher_is_better, n, meta FROM metric_values "
            "WHERE run_id = ? AND key NOT LIKE '\\_%' ESCAPE '\\' ORDER BY metric, key", (run_id,))
        out = {}
        for metric, key, value, low, high, hib, n, meta in cur.fetchall():
            out[key] = {"metric": metric, "value": value, "ci95": None if low is None else [low, high],
                        "higher_is_better": bool(hib), "n": n, **({"meta": json.loads(meta)} if meta != "{}" else {})}
        return out

    # -- attacks ---------------------------------------------------------------------------------
    def attack_run(self, attack_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM attack_runs WHERE attack_id = ?", (attack_id,))
        return rows[0] if rows else None

    def attack_runs(self) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM attack_runs ORDER BY created_at, attack_id")

    def add_attack(self, row: dict[str, Any], samples: list[dict[str, Any]]) -> None:
        """Store one attack run and its per-target rows in one transaction (replacing an old copy)."""
        with self.transaction() as c:
            c.execute("DELETE FROM attack_samples WHERE attack_id = ?", (row["attack_id"],))
            c.execute("DELETE FROM attack_runs WHERE attack_id = ?", (row["attack_id"],))
            c.execute(f"INSERT INTO attack_runs ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
                      tuple(row.values()))
            for r in samples:
                c.execute(f"INSERT INTO attack_samples ({', '.join(r)}) VALUES ({', '.join('?' for _ in r)})",
                          tuple(r.values()))

    def attack_samples(self, attack_id: str) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM attack_samples WHERE attack_id = ? ORDER BY target_index", (attack_id,))

    def count(self, table: str, run_id: str | None = None) -> int:
        if table in ("attack_runs", "attack_samples"):
            return int(self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
        if table not in ("runs", "samples", "metric_values", "sample_values"):
            raise ValueError(f"unknown table {table!r}")
        if run_id is None:
            return int(self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
        return int(self.conn.execute(f"SELECT COUNT(*) FROM {table} WHERE run_id = ?", (run_id,)).fetchone()[0])
