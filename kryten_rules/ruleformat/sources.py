"""The files one load reads, each read exactly once.

A load (``validate``, start-up, a reload) reads rule files and the prompt files
they name. If each stage read the disk on its own, a file edited between two
stages would be checked in one version and compiled or hashed in another: a
prompt template could be installed that ``validate`` never saw. So every
stage asks a :class:`Sources` for a file: the first ask reads it, every later
ask gets the same bytes, and the rule set's digest is of exactly those bytes.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from kryten_rules.errors import KrytenRulesError

MAX_FILE_BYTES = 4 * 1024 * 1024  # a rule or prompt file this large is a mistake


class SourceTooLarge(KrytenRulesError, OSError):
    """The file is larger than :data:`MAX_FILE_BYTES`; ``size`` says how large."""

    def __init__(self, path: Path, size: int) -> None:
        super().__init__(f"file is {size} bytes (limit {MAX_FILE_BYTES})")
        self.path = path
        self.size = size


@dataclass(frozen=True, slots=True)
class Source:
    """One file as it was read: its name, its bytes and their SHA-256."""

    path: Path
    data: bytes
    digest: str

    def text(self) -> str:
        """The bytes as UTF-8 (a leading BOM dropped); ``UnicodeDecodeError`` if not."""
        data = self.data[3:] if self.data.startswith(b"\xef\xbb\xbf") else self.data
        return data.decode("utf-8")


def read_source(path: Path) -> Source:
    """Read one regular file whole; raises ``OSError`` (or :class:`SourceTooLarge`).

    The name is resolved first and the resolved name opened without following
    a symlink, so a file swapped for a symlink after the caller checked where
    it leads is refused rather than read. A FIFO or device is refused too
    (``O_NONBLOCK`` keeps a FIFO from blocking the open).
    """
    real = path.resolve()
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(real, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{str(path)!r} is not a regular file")
        if st.st_size > MAX_FILE_BYTES:
            raise SourceTooLarge(path, st.st_size)
        chunks: list[bytes] = []
        total = 0
        while chunk := os.read(fd, 1 << 20):
            total += len(chunk)
            if total > MAX_FILE_BYTES:  # it grew while being read
                raise SourceTooLarge(path, total)
            chunks.append(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    return Source(path, data, hashlib.sha256(data).hexdigest())


@dataclass(slots=True)
class Sources:
    """Every file of one load, read on first use and never again.

    A failed read is remembered too, so two stages cannot disagree about
    whether a file exists.
    """

    _read: dict[str, Source | OSError] = field(default_factory=dict)

    def read(self, path: Path) -> Source:
        """The file's one reading in this load; raises the ``OSError`` of that reading."""
        key = str(path)
        got = self._read.get(key)
        if got is None:
            try:
                got = read_source(path)
            except OSError as exc:
                got = exc
            self._read[key] = got
        if isinstance(got, OSError):
            raise got
        return got

    def loaded(self, path: Path) -> Source:
        """A file this load has already read (and so checked); ``KeyError`` otherwise.

        Compile uses this, so content that no check saw can never be compiled.
        """
        got = self._read[str(path)]
        if isinstance(got, OSError):
            raise KeyError(str(path))
        return got

    def contents(self) -> dict[str, bytes]:
        """Name -> bytes of every file read successfully: what the digest covers."""
        return {k: v.data for k, v in self._read.items() if isinstance(v, Source)}
