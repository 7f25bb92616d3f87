"""A command's output files, published together: each is written to a temporary file in the output
folder, and only once all are written (and none of their names is taken by a folder) is each renamed
over its name (os.replace, atomic on one file system). A run that fails leaves the previous outputs as
they were, never half of a new set; outputs of an earlier run that this one does not write are removed
in the same step, so an old report never sits next to new records."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO

Writer = Callable[[IO[str]], None]


class OutputError(Exception):
    """An output cannot be written: the message names the file."""


def prepare_folder(out: Path) -> None:
    """Creates the output folder (after the inputs were checked) and makes sure files can be made in it."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        raise OutputError(f"{out}: cannot write the output folder: {error.strerror}") from None


def publish(out: Path, files: Mapping[str, Writer], *, stale: Iterable[str] = ()) -> None:
    prepare_folder(out)
    for name in [*files, *stale]:
        if (out / name).is_dir():
            raise OutputError(f"{out / name}: cannot write the output: it is a folder")
    written: dict[str, Path] = {}
    try:
        for name, write in files.items():
            written[name] = _temporary(out, name, write)
        for name in stale:
            if name not in files:
                (out / name).unlink(missing_ok=True)
        for name, temporary in written.items():
            temporary.replace(out / name)
    except OSError as error:
        raise OutputError(f"{error.filename or out}: cannot write the output: {error.strerror}") from None
    finally:
        for temporary in written.values():
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()


def _temporary(out: Path, name: str, write: Writer) -> Path:
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 (renamed, not deleted, once complete)
        "w", encoding="utf-8", dir=out, prefix=f".{name}.", suffix=".tmp", delete=False
    )
    path = Path(handle.name)
    try:
        with handle:
            write(handle)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def text(content: str) -> Writer:
    def write(handle: IO[str]) -> None:
        handle.write(content)

    return write
