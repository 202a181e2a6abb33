"""The exceptions erasekit raises for input it cannot use. The CLI prints any of them as one line
and exits with code 2; any other exception is a bug (one line, exit 1, ``--debug`` for the traceback).

They subclass the built-in exception a caller would expect (``ValueError``, ``FileNotFoundError``,
``FileExistsError``), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class UserError(ValueError):
    """Input erasekit cannot use: a bad value, name, file or combination. The message names the
    value and how to fix it, in one line."""


class MissingPath(UserError, FileNotFoundError):
    """A file or folder that should be there is not (or cannot be read)."""


class PathExists(UserError, FileExistsError):
    """An output that must be new already exists."""


class InvalidResult(UserError):
    """A computation produced values that must not be stored (non-finite weights, broken images);
    nothing was written."""


@contextmanager
def unreadable_as_user_error(folder: str | Path, what: str) -> Iterator[None]:
    """Loading ``what`` from ``folder``: an unreadable or malformed file becomes one clear
    :class:`UserError` naming the folder (not "missing", not a traceback)."""
    try:
        yield
    except UserError:
        raise
    except PermissionError as exc:
        raise UserError(f"cannot read the {what} in {folder}: {exc.filename or folder} is not readable "
                        "(permission denied)") from None
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"cannot load the {what} in {folder} ({type(exc).__name__}: {first}); "
                        "check the folder or write it again") from None
