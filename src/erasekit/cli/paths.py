"""The CLI's checks on the paths flags name, and the results database it opens (removed again if
the command fails before storing anything)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from erasekit.cli.args import UsageError


def check_writable_dir(path: Path, flag: str = "--out") -> None:
    """``path`` (a folder, existing or not) can be written: a file is actually created and removed in
    its nearest existing folder (permission bits lie for root and for /proc)."""
    import tempfile

    probe = Path(path)
    while not probe.exists():
        probe = probe.parent
    try:
        if not probe.is_dir():
            raise OSError("not a folder")
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=".erasekit-probe-")
        os.close(fd)
        os.unlink(tmp)
    except OSError:
        raise UsageError(f"cannot write to {path}: {probe} is not a writable folder; choose another {flag}") from None


def check_new_dir(path: Path, flag: str = "--out") -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UsageError(f"{flag} {path} already exists and is not empty; choose a new folder")
    check_writable_dir(path, flag)


def check_output_file(path: Path) -> None:
    if path.exists() and path.is_dir():
        raise UsageError(f"-o {path} is a folder; give a file name such as grid.png")
    check_writable_dir(path.parent if str(path.parent) else Path("."), flag="-o")


#: Databases this command created; removed again if the command fails before storing anything.
CREATED: list[Any] = []


def open_store(db: str, readonly: bool = False) -> Any:
    from erasekit.store import Store

    if readonly:
        return Store(db, readonly=True)
    check_writable_dir(Path(db).parent if str(Path(db).parent) else Path("."), flag="--db")
    new = not Path(db).exists()
    store = Store(db)  # StoreError (a UserError) -> one line, exit 2
    if new:
        CREATED.append(store)
    return store


def discard_empty_stores() -> None:
    """Remove the databases this command created and left empty (a command that failed early)."""
    while CREATED:
        store = CREATED.pop()
        try:
            if store.is_empty():
                store.close()
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{store.path}{suffix}").unlink(missing_ok=True)
                for folder in (store.image_root, store.path.parent / f".{store.path.name}.locks"):
                    if folder.is_dir():
                        shutil.rmtree(folder, ignore_errors=True)
        except Exception:  # cleaning up must never hide the error being reported
            pass
