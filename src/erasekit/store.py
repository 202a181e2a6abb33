"""The results database (SQLite): runs, per-sample rows, metric values, per-sample metric values,
and attack runs (diffusion and language-model attacks alike) with their per-target rows and values.

Every write is one transaction, so a run killed at any moment leaves whole chunks of rows (and
no half-written metric set); primary keys make re-running idempotent. ``PRAGMA user_version``
holds the schema version; older databases are migrated when opened.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from erasekit.concepts import LEGACY_SPLITS
from erasekit.errors import UserError
from erasekit.metrics.base import Value
from erasekit.provenance import content_id

SCHEMA_VERSION = 6
#: Metric keys renamed with the splits in schema 4.
LEGACY_KEYS = {"efficacy_heldout_phrasings": "efficacy_unseen"}

#: The states of an evaluation run: ``running`` until every sample and metric is stored (a killed
#: run stays ``running`` and resumes), then ``complete``. A run that fails is removed, rows and images.
RUN_STATES = ("running", "complete")

ATTACK_RUNS = """
CREATE TABLE IF NOT EXISTS attack_runs (
    attack_id TEXT PRIMARY KEY,
    run_name TEXT NOT NULL,
    kind TEXT NOT NULL,               -- 'erasure' | 'baseline' | 'lm-erasure' | 'lm-base' | 'lm-oracle'
    method TEXT,
    concept TEXT NOT NULL,            -- concept, or the language model's task
    artifact TEXT,
    attack TEXT NOT NULL,
    threat_model TEXT NOT NULL,
    budget INTEGER NOT NULL,
    budget_unit TEXT NOT NULL,
    config TEXT NOT NULL,             -- resolved attack settings (JSON)
    n INTEGER NOT NULL,
    pre_asr REAL,                     -- diffusion attacks: attack success rates (UnlearnDiffAtk)
    asr REAL,
    unet_evals INTEGER,
    grad_steps INTEGER,
    wall_seconds REAL NOT NULL,
    versions TEXT NOT NULL,
    git_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    run_id TEXT                       -- the evaluation run attacked (language-model attacks)
);
"""

#: A reported value with its 95% interval (metric_values and attack_values).
VALUE_COLUMNS = """value REAL NOT NULL, ci_low REAL, ci_high REAL, higher_is_better INTEGER NOT NULL, n INTEGER NOT NULL,
    meta TEXT NOT NULL,"""

ATTACK_VALUES = f"""
CREATE TABLE IF NOT EXISTS attack_values (
    attack_id TEXT NOT NULL REFERENCES attack_runs(attack_id),
    key TEXT NOT NULL,                -- reported name (relearn_recovery, int4_forget_change, ...)
    {VALUE_COLUMNS}
    PRIMARY KEY (attack_id, key)
);
"""

BENCH_CELLS = """
CREATE TABLE IF NOT EXISTS bench_cells (
    cell_id TEXT PRIMARY KEY,         -- content hash of the cell's inputs (erasekit.bench.cells.Cell.key)
    bench TEXT NOT NULL,              -- the spec that computed it first
    label TEXT NOT NULL,              -- its method's label in that spec, or 'baseline'
    method TEXT,
    concept TEXT NOT NULL,
    seed INTEGER NOT NULL,
    run_id TEXT NOT NULL,             -- the cell's evaluation run
    attack_ids TEXT NOT NULL,         -- JSON list of its attack runs, in the spec's order
    config TEXT NOT NULL,             -- the cell's inputs (JSON)
    fit_seconds REAL,
    peak_memory_mb REAL,
    artifact_bytes INTEGER,
    wall_seconds REAL NOT NULL,
    worker_pid INTEGER,
    versions TEXT NOT NULL,
    git_hash TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS bench_members (  -- which cells each spec has, under which label (cells are shared)
    bench TEXT NOT NULL,
    cell_id TEXT NOT NULL,
    label TEXT NOT NULL,
    PRIMARY KEY (bench, cell_id)
);
CREATE TABLE IF NOT EXISTS bench_sessions (  -- each `erasekit bench` invocation: a run resumed N times has N rows
    session_id TEXT PRIMARY KEY,
    bench TEXT NOT NULL,
    workers INTEGER,                  -- local Ray slots (NULL when it joined a cluster)
    address TEXT,
    started_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,         -- when its last cell landed (a killed session's wall time ends there)
    wall_seconds REAL NOT NULL,       -- from its start to its last landed cell, or to its end
    computed INTEGER NOT NULL,        -- cells it stored
    finished INTEGER NOT NULL         -- 1 when it ended with every cell of the spec stored
);
"""

SCHEMA = ATTACK_RUNS + ATTACK_VALUES + BENCH_CELLS + f"""
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,               -- 'erasure' | 'baseline' | 'oracle' | 'oracle-floor'
    method TEXT,
    concept TEXT NOT NULL,
    artifact TEXT,                    -- artifact folder as given
    config TEXT NOT NULL,             -- resolved evaluation + artifact config (JSON)
    seeds TEXT NOT NULL,              -- JSON list
    versions TEXT NOT NULL,           -- JSON {{package: version}}
    git_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    completed_at TEXT,
    wall_seconds REAL,
    state TEXT NOT NULL DEFAULT 'running'  -- 'running' | 'complete'
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
    key TEXT NOT NULL,                -- reported name (efficacy, efficacy_unseen, ...)
    {VALUE_COLUMNS}
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
    spent INTEGER,                    -- budget spent on this target (its unit; NULL before schema 5)
    PRIMARY KEY (attack_id, target_index)
);
CREATE TABLE IF NOT EXISTS transfer_cells (  -- erasekit.transfer: a source run's inputs replayed on a model
    cell_id TEXT PRIMARY KEY,         -- content hash of (source attack run, target artifact digest, base model)
    attack_id TEXT NOT NULL REFERENCES attack_runs(attack_id),  -- the source run (where the inputs were found)
    target TEXT NOT NULL,             -- the model replayed on: its run name
    target_digest TEXT NOT NULL,      -- its artifact's digest
    target_artifact TEXT NOT NULL,    -- its artifact folder(s) as stored
    n INTEGER NOT NULL,               -- inputs replayed (those that broke the source)
    successes INTEGER NOT NULL,       -- of them, how many show the concept on the target
    outcomes TEXT NOT NULL,           -- JSON [[target_index, success], ...]
    wall_seconds REAL NOT NULL,
    versions TEXT NOT NULL,
    git_hash TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"""



class StoreError(UserError):
    """The database cannot be opened or written (one-line message for the CLI)."""


class Store:
    """A results database file; images live in ``<db folder>/<db stem>-images/``."""

    def __init__(self, path: str | Path, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        if self.path.is_dir():
            raise StoreError(f"database {self.path} is a folder; give a file name such as erasekit.db")
        self.image_root = self.path.parent / f"{self.path.stem}-images"
        if readonly:
            self._open_readonly()
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self._migrate()
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.conn.executescript(SCHEMA)
            self.conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except (sqlite3.DatabaseError, OSError) as exc:
            raise StoreError(f"cannot use database {self.path} ({exc}); pass a writable database file") from None

    def _open_readonly(self) -> None:
        """Open for reading only (a read-only file or folder: the report needs no writes)."""
        if not self.path.is_file():
            raise StoreError(f"database {self.path} does not exist; run `erasekit eval` first")
        last: Exception | None = None
        for mode in ("mode=ro", "immutable=1"):  # WAL databases in read-only folders need immutable
            try:
                self.conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?{mode}", uri=True, timeout=30,
                                            isolation_level=None)
                version = self.conn.execute("PRAGMA user_version").fetchone()[0]
                break
            except sqlite3.DatabaseError as exc:
                last = exc
        else:
            raise StoreError(f"cannot read database {self.path} ({last}); pass an erasekit database")
        if version != SCHEMA_VERSION:
            raise StoreError(f"database {self.path} has schema {version}, this erasekit reads {SCHEMA_VERSION}; open it "
                             "once where it is writable (any erasekit command) to migrate it")

    def _migrate(self) -> None:
        """Bring an older database to the current schema, one transaction per step: version 0 (attack
        columns NOT NULL, language-model attacks stored as ``attack:<name>`` metric rows) to 2, 2 to
        3 (the runs' ``state``), and 3 to 4 (testbed v2's split names: ``target`` is ``given``,
        ``target_heldout_phrasings`` is ``unseen``, ``target_heldout_pairs`` is ``heldout_pairs``,
        and ``efficacy_heldout_phrasings`` is ``efficacy_unseen``), and 4 to 5 (``attack_samples.spent``,
        the budget each target used, for ASR-against-budget curves; NULL in older rows); 5 to 6 adds
        the ``transfer_cells`` table (created with the schema)."""
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if version >= SCHEMA_VERSION or "runs" not in tables:
            return
        if version < 2:
            self._migrate_attacks(tables)
        with self.transaction() as c:
            if "state" not in [r[1] for r in c.execute("PRAGMA table_info(runs)")]:
                c.execute("ALTER TABLE runs ADD COLUMN state TEXT NOT NULL DEFAULT 'running'")
                c.execute("UPDATE runs SET state = 'complete' WHERE completed_at IS NOT NULL")
            if "attack_samples" in tables and "spent" not in [r[1] for r in c.execute(
                    "PRAGMA table_info(attack_samples)")]:
                c.execute("ALTER TABLE attack_samples ADD COLUMN spent INTEGER")
            if version < 4:
                if "samples" in tables:
                    for old, new in LEGACY_SPLITS.items():
                        c.execute("UPDATE samples SET split = ? WHERE split = ?", (new, old))
                for table in ("metric_values", "sample_values"):
                    if table in tables:
                        for old, new in LEGACY_KEYS.items():
                            c.execute(f"UPDATE {table} SET key = ? WHERE key = ?", (new, old))

    def _migrate_attacks(self, tables: set[str]) -> None:
        self.conn.execute("PRAGMA foreign_keys=OFF")  # attack_samples references the table rebuilt here
        with self.transaction() as c:
            if "attack_runs" in tables:  # SQLite's table rebuild: new table, copy, drop, rename
                old = ", ".join(r[1] for r in c.execute("PRAGMA table_info(attack_runs)"))
                c.execute(ATTACK_RUNS.replace("IF NOT EXISTS attack_runs", "attack_runs_new"))
                c.execute(f"INSERT INTO attack_runs_new ({old}) SELECT {old} FROM attack_runs")
                c.execute("DROP TABLE attack_runs")
                c.execute("ALTER TABLE attack_runs_new RENAME TO attack_runs")
            else:
                c.execute(ATTACK_RUNS)
            c.execute(ATTACK_VALUES)
            self._move_lm_attack_rows(c)
        self.conn.execute("PRAGMA foreign_keys=ON")

    def _move_lm_attack_rows(self, c: sqlite3.Connection) -> None:
        """Version 0 kept language-model attacks as metric rows ``attack:<name>`` of the run attacked."""
        rows = c.execute("SELECT m.run_id, m.metric, m.key, m.value, m.ci_low, m.ci_high, m.higher_is_better, m.n, "
                         "m.meta, r.name, r.kind, r.method, r.concept, r.artifact, r.versions, r.git_hash, "
                         "r.created_at FROM metric_values m JOIN runs r USING (run_id) "
                         "WHERE m.metric LIKE 'attack:%'").fetchall()
        runs: dict[tuple[str, str], list] = {}
        for row in rows:
            runs.setdefault((row[0], row[1]), []).append(row)
        for (run_id, metric), group in runs.items():
            meta = json.loads(group[0][8])
            attack_id = content_id({"run_id": run_id, "attack": metric[7:], "migrated": True})
            first = group[0]
            c.execute("INSERT OR REPLACE INTO attack_runs (attack_id, run_name, kind, method, concept, artifact, attack, "
                      "threat_model, budget, budget_unit, config, n, wall_seconds, versions, git_hash, created_at, "
                      "run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (attack_id, first[9], first[10], first[11], first[12], first[13], metric[7:],
                       "recorded before schema 2", int(meta.get("budget", 0)), str(meta.get("budget_unit", "")),
                       json.dumps({"migrated_from": metric}), max(r[7] for r in group),
                       float(meta.get("wall_seconds", 0.0)), first[14], first[15], first[16], run_id))
            for r in group:
                c.execute("INSERT OR REPLACE INTO attack_values VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                          (attack_id, r[2], r[3], r[4], r[5], r[6], r[7], r[8]))
                c.execute("DELETE FROM sample_values WHERE run_id = ? AND key = ?", (run_id, r[2]))
            c.execute("DELETE FROM metric_values WHERE run_id = ? AND metric = ?", (run_id, metric))

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot write database {self.path} ({exc}); pass a writable database file") from None
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

    def runs(self, state: str | None = None) -> list[dict[str, Any]]:
        """Every run (``state``: only runs in that state), oldest first."""
        if state is None:
            return self._rows("SELECT * FROM runs ORDER BY created_at, run_id")
        return self._rows("SELECT * FROM runs WHERE state = ? ORDER BY created_at, run_id", (state,))

    def add_run(self, row: dict[str, Any]) -> None:
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self.transaction() as c:
            c.execute(f"INSERT OR IGNORE INTO runs ({cols}) VALUES ({marks})", tuple(row.values()))

    def complete_run(self, run_id: str, completed_at: str, wall_seconds: float) -> None:
        with self.transaction() as c:
            c.execute("UPDATE runs SET completed_at = ?, wall_seconds = ?, state = 'complete' WHERE run_id = ?",
                      (completed_at, wall_seconds, run_id))

    def is_empty(self) -> bool:
        """No run and no attack stored."""
        return self.count("runs") == 0 and self.count("attack_runs") == 0

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """An exclusive lock on ``name`` among every process using this database (``flock`` on a
        file beside it; the OS releases it when a holder dies, so a killed run is taken over)."""
        import fcntl

        folder = self.path.parent / f".{self.path.name}.locks"
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / name, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

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
        return {key: {"metric": metric, **_value(*rest)} for metric, key, *rest in cur.fetchall()}

    # -- attacks ---------------------------------------------------------------------------------
    def attack_run(self, attack_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM attack_runs WHERE attack_id = ?", (attack_id,))
        return rows[0] if rows else None

    def attack_runs(self) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM attack_runs ORDER BY created_at, attack_id")

    def add_attack(self, row: dict[str, Any], samples: list[dict[str, Any]],
                   values: dict[str, Value] | None = None) -> None:
        """Store one attack run, its per-target rows and its values in one transaction (replacing an old copy)."""
        with self.transaction() as c:
            for table in ("attack_values", "attack_samples", "attack_runs"):
                c.execute(f"DELETE FROM {table} WHERE attack_id = ?", (row["attack_id"],))
            c.execute(f"INSERT INTO attack_runs ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
                      tuple(row.values()))
            for r in samples:
                c.execute(f"INSERT INTO attack_samples ({', '.join(r)}) VALUES ({', '.join('?' for _ in r)})",
                          tuple(r.values()))
            c.executemany("INSERT INTO attack_values VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                          [(row["attack_id"], key, v.value, v.low, v.high, int(v.higher_is_better), v.n,
                            json.dumps(v.meta)) for key, v in (values or {}).items()])

    def attack_values(self, attack_id: str) -> dict[str, dict[str, Any]]:
        """An attack run's values (language-model attacks), key -> value, interval, n, meta."""
        cur = self.conn.execute("SELECT key, value, ci_low, ci_high, higher_is_better, n, meta FROM attack_values "
                                "WHERE attack_id = ? ORDER BY key", (attack_id,))
        return {key: _value(*rest) for key, *rest in cur.fetchall()}

    def attacks_on(self, run_id: str) -> list[dict[str, Any]]:
        """The attack runs made on evaluation run ``run_id``, each with its ``values``."""
        rows = self._rows("SELECT * FROM attack_runs WHERE run_id = ? ORDER BY created_at, attack_id", (run_id,))
        return [{**r, "values": self.attack_values(r["attack_id"])} for r in rows]

    def attack_samples(self, attack_id: str) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM attack_samples WHERE attack_id = ? ORDER BY target_index", (attack_id,))

    def transfer_cell(self, cell_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM transfer_cells WHERE cell_id = ?", (cell_id,))
        return rows[0] if rows else None

    def transfer_cells(self) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM transfer_cells ORDER BY created_at, cell_id")

    def add_transfer(self, row: dict[str, Any]) -> None:
        with self.transaction() as c:
            c.execute(f"INSERT OR REPLACE INTO transfer_cells ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
                      tuple(row.values()))

    def count(self, table: str, run_id: str | None = None) -> int:
        if table in ("attack_runs", "attack_samples", "attack_values", "transfer_cells"):
            return int(self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
        if table not in ("runs", "samples", "metric_values", "sample_values"):
            raise UserError(f"unknown table {table!r}")
        if run_id is None:
            return int(self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
        return int(self.conn.execute(f"SELECT COUNT(*) FROM {table} WHERE run_id = ?", (run_id,)).fetchone()[0])


def _value(value: float, low: float | None, high: float | None, hib: int, n: int, meta: str) -> dict[str, Any]:
    """A stored value row as the dict every reader returns."""
    return {"value": value, "ci95": None if low is None else [low, high], "higher_is_better": bool(hib), "n": n,
            **({"meta": json.loads(meta)} if meta != "{}" else {})}
