"""The SQLite results store: a failed write leaves nothing behind; re-writes replace, not duplicate."""

import pytest

from erasekit.metrics.base import Value
from erasekit.store import Store, StoreError

RUN = {"run_id": "r1", "name": "uce/skull", "kind": "erasure", "method": "uce", "concept": "skull", "artifact": None,
       "config": "{}", "seeds": "[0]", "versions": "{}", "git_hash": "0" * 40, "created_at": "2026-11-29T00:00:00"}


def _sample(i):
    return {"prompt_index": i, "seed": 0, "prompt": f"p{i}", "split": "given", "attributes": None,
            "image_path": f"x/{i}.png", "verdict": {"shape": "circle"}}


def test_a_failed_chunk_writes_no_rows(tmp_path):
    store = Store(tmp_path / "e.db")
    store.add_run(RUN)
    store.add_samples("r1", [_sample(0), _sample(1)])
    with pytest.raises(Exception):
        store.add_samples("r1", [_sample(2), _sample(1)])  # sample 1 exists: the whole chunk rolls back
    assert sorted(store.sample_keys("r1")) == [(0, 0), (1, 0)]
    store.add_run(RUN)  # adding the same run again is a no-op
    assert store.count("runs") == 1


def test_metric_rewrite_replaces_values_and_samples(tmp_path):
    store = Store(tmp_path / "e.db")
    store.add_run(RUN)
    v = Value(0.5, 0.25, 0.75, True, 2, ((0, 0, 1.0), (1, 0, 0.0)))
    store.add_metric("r1", "efficacy", {"efficacy": v})
    store.add_metric("r1", "efficacy", {"efficacy": v})
    assert store.count("metric_values", "r1") == 1 and store.count("sample_values", "r1") == 2
    assert store.metrics("r1")["efficacy"] == {"metric": "efficacy", "value": 0.5, "ci95": [0.25, 0.75],
                                                "higher_is_better": True, "n": 2}
    store.add_metric("r1", "nudenet", {})
    assert store.metric_names_done("r1") == {"efficacy", "nudenet"} and "nudenet" not in str(store.metrics("r1"))


def test_bad_database_paths(tmp_path):
    (tmp_path / "junk.db").write_bytes(b"not sqlite at all" * 64)
    with pytest.raises(StoreError, match="cannot use database"):
        Store(tmp_path / "junk.db")
    with pytest.raises(StoreError, match="is a folder"):
        Store(tmp_path)


V0_ATTACKS = """
CREATE TABLE attack_runs (attack_id TEXT PRIMARY KEY, run_name TEXT NOT NULL, kind TEXT NOT NULL, method TEXT,
    concept TEXT NOT NULL, artifact TEXT, attack TEXT NOT NULL, threat_model TEXT NOT NULL, budget INTEGER NOT NULL,
    budget_unit TEXT NOT NULL, config TEXT NOT NULL, n INTEGER NOT NULL, pre_asr REAL NOT NULL, asr REAL NOT NULL,
    unet_evals INTEGER NOT NULL, grad_steps INTEGER NOT NULL, wall_seconds REAL NOT NULL, versions TEXT NOT NULL,
    git_hash TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE attack_samples (attack_id TEXT NOT NULL REFERENCES attack_runs(attack_id), target_index INTEGER NOT NULL,
    prompt TEXT NOT NULL, seed INTEGER NOT NULL, pre_success INTEGER NOT NULL, success INTEGER NOT NULL,
    adversarial_text TEXT, adversarial_path TEXT, image_path TEXT NOT NULL, verdict TEXT NOT NULL,
    unet_evals INTEGER NOT NULL, grad_steps INTEGER NOT NULL, wall_seconds REAL NOT NULL, note TEXT NOT NULL,
    PRIMARY KEY (attack_id, target_index));
"""


def test_a_version_0_database_is_migrated(tmp_path):
    """Schema 0 kept language-model attacks as ``attack:<name>`` metric rows and required ASR columns;
    opening it moves them into the attack tables, keeping diffusion attacks and their samples."""
    import json
    import sqlite3

    from erasekit.store import SCHEMA, SCHEMA_VERSION

    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    base = SCHEMA.split("CREATE TABLE IF NOT EXISTS runs")[1].split("CREATE TABLE IF NOT EXISTS attack_samples")[0]
    base = base.replace(",\n    state TEXT NOT NULL DEFAULT 'running'  -- 'running' | 'complete'", "")
    assert "state" not in base
    conn.executescript("CREATE TABLE IF NOT EXISTS runs" + base + V0_ATTACKS)
    conn.execute(f"INSERT INTO runs ({', '.join(RUN)}) VALUES ({', '.join('?' for _ in RUN)})",
                 tuple({**RUN, "kind": "lm-erasure", "concept": "tinytofu"}.values()))
    conn.execute("INSERT INTO metric_values VALUES ('r1', 'attack:relearn', 'relearn_recovery', 0.25, NULL, NULL, 0, "
                 "8, ?)", (json.dumps({"budget": 10, "budget_unit": "fine-tuning steps", "wall_seconds": 3.5}),))
    conn.execute("INSERT INTO metric_values VALUES ('r1', 'forget', 'forget_acc', 0.1, 0.0, 0.2, 0, 8, '{}')")
    conn.execute("INSERT INTO attack_runs VALUES ('a1', 'uce/skull', 'erasure', 'uce', 'skull', NULL, 'embedding', "
                 "'white-box', 60, 'gradient steps', '{}', 1, 0.0, 1.0, 50, 3, 1.5, '{}', 'abc', '2026-11-29')")
    conn.execute("INSERT INTO attack_samples VALUES ('a1', 0, 'a red skull', 0, 0, 1, NULL, NULL, 'x.png', '{}', 50, "
                 "3, 1.5, '')")
    conn.commit()
    conn.close()

    store = Store(db)
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
    assert store.run("r1")["state"] == "running"  # completed_at was NULL: a run to resume
    assert list(store.metrics("r1")) == ["forget_acc"]
    (lm,) = store.attacks_on("r1")
    assert lm["attack"] == "relearn" and lm["budget"] == 10 and lm["asr"] is None and lm["wall_seconds"] == 3.5
    assert lm["values"]["relearn_recovery"]["value"] == 0.25
    old = store.attack_run("a1")
    assert old is not None and old["asr"] == 1.0 and len(store.attack_samples("a1")) == 1
    assert store.attack_samples("a1")[0]["spent"] is None  # schema 5's column: unknown in old rows
    store.close()
    again = Store(db)  # opening a migrated database changes nothing
    assert len(again.attack_runs()) == 2 and again.count("attack_values") == 1
    assert again.conn.execute("PRAGMA foreign_key_check").fetchall() == []


def test_a_version_3_database_gets_the_testbed_v2_split_names(tmp_path):
    """Schema 3 wrote the v1 splits (target, target_heldout_phrasings, target_heldout_pairs) and the
    key efficacy_heldout_phrasings; opening it renames them (given, unseen, heldout_pairs; efficacy_unseen)."""
    import sqlite3

    db = tmp_path / "v3.db"
    store = Store(db)
    store.add_run(RUN)
    rows = [{**_sample(i), "split": split} for i, split in
            enumerate(("target", "target_heldout_phrasings", "target_heldout_pairs", "other"))]
    store.add_samples("r1", rows)
    store.add_metric("r1", "efficacy", {"efficacy_heldout_phrasings": Value(0.5, 0.0, 1.0, True, 4, ((0, 0, 0.5),)),
                                        "efficacy": Value(0.75, 0.5, 1.0, True, 4, ((0, 0, 0.75),))})
    store.close()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version=3")
    conn.commit()
    conn.close()
    store = Store(db)
    assert [s["split"] for s in store.samples("r1")] == ["given", "unseen", "heldout_pairs", "other"]
    assert set(store.metrics("r1")) == {"efficacy", "efficacy_unseen"}
    assert store.metrics("r1")["efficacy_unseen"]["value"] == 0.5
    keys = {k for (k,) in store.conn.execute("SELECT key FROM sample_values WHERE run_id = 'r1'")}
    assert keys == {"efficacy", "efficacy_unseen"}
