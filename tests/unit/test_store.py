"""The SQLite results store: a failed write leaves nothing behind; re-writes replace, not duplicate."""

import pytest

from erasekit.metrics.base import Value
from erasekit.store import Store, StoreError

RUN = {"run_id": "r1", "name": "uce/skull", "kind": "erasure", "method": "uce", "concept": "skull", "artifact": None,
       "config": "{}", "seeds": "[0]", "versions": "{}", "git_hash": "0" * 40, "created_at": "2026-11-29T00:00:00"}


def _sample(i):
    return {"prompt_index": i, "seed": 0, "prompt": f"p{i}", "split": "target", "attributes": None,
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
