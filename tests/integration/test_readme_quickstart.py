"""The README's Python quickstart runs as written (in a fresh process, in an empty folder)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_python_quickstart_runs(tmp_path):
    (code,) = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    efficacy, asr = done.stdout.strip().splitlines()[-2:]
    assert "'value'" in efficacy and "'ci95'" in efficacy
    assert 0.0 <= float(asr) <= 1.0
    assert (tmp_path / "runs" / "skull-uce" / "config.json").exists() and (tmp_path / "erasekit.db").exists()
