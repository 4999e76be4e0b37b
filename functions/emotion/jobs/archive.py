"""Reading a collection archive (ZIP, or uncompressed tar) safely: every entry is checked before any is read.

Nothing is ever extracted by its own name: entries are read into memory one at a time, by position, with at
most their (checked) size. What makes the whole archive unusable fails the job with a reason; what is wrong
with one entry becomes that entry's error row, and the other entries go on.

Whole archive (:class:`ArchiveRefused`): not a ZIP or tar (``undecodable_archive``), more than
``collection_max_entries`` entries (``too_many_entries``), more than ``collection_max_uncompressed_bytes``
once unpacked (``archive_too_large``), no file at all (``empty_archive``).

One entry (an error row): a name that tries to leave the folder (``unsafe_name``: absolute, ``..``, drive
letters, control characters), a link or device (``not_a_file``), a name seen before (``duplicate_name``), a
nested archive (``nested_archive``), a compression ratio over ``collection_max_ratio`` (``compression_ratio``),
more bytes than ``job_image_max_bytes`` (``image_too_large``), an encrypted entry (``encrypted_entry``) or an
unknown compression method (``unsupported_compression``). Non-images are refused later by the image decoder,
which applies the same pixel guards as an upload (``unsupported_media_type``, ``image_too_large`` ...).

Skipped without a row: folders, macOS metadata (``__MACOSX/``, ``._*``, ``.DS_Store``) and ``Thumbs.db``.
"""

from __future__ import annotations

import re
import tarfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emotion.core.errors import EmotionError

ARCHIVE_TYPES = ("application/zip", "application/x-zip-compressed", "application/x-tar")
NESTED_SUFFIXES = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst")
_NESTED_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"7z\xbc\xaf\x27\x1c",
                 b"Rar!\x1a\x07", b"\x28\xb5\x2f\xfd")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
RATIO_FLOOR_BYTES = 1_000_000  # entries smaller than this are never refused for their compression ratio


class ArchiveRefused(EmotionError):
    """The archive as a whole cannot be processed (the collection job fails with this code)."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass(frozen=True)
class Limits:
    max_entries: int
    max_uncompressed_bytes: int
    max_ratio: float
    max_entry_bytes: int


@dataclass
class Entry:
    """One file of the archive: its display name, and either where to read it or why it is refused."""

    index: int
    name: str
    size: int
    error: dict[str, str] | None = None
    ref: Any = None  # ZipInfo / TarInfo


def sniff_archive(head: bytes) -> str | None:
    """'zip' or 'tar' from the first 512 bytes, else None."""
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    return None


def is_nested_archive(name: str, head: bytes) -> bool:
    return name.lower().endswith(NESTED_SUFFIXES) or head.startswith(_NESTED_MAGIC) or sniff_archive(head) == "tar"


def _skipped(name: str) -> bool:
    parts = name.split("/")
    base = parts[-1]
    return "__MACOSX" in parts[:-1] or base.startswith("._") or base in (".DS_Store", "Thumbs.db", "desktop.ini")


def clean_name(raw: str) -> tuple[str, str | None]:
    """(display name, reason it is unsafe or None). Backslashes count as separators (Windows tools)."""
    name = raw.replace("\\", "/")
    shown = _CONTROL.sub("?", name)[:500]
    if _CONTROL.search(name):
        return shown, "the name has control characters"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return shown, "the name is an absolute path"
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        return shown, "the name leaves the archive's folder (..)"
    return "/".join(parts), None


def _error(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


class Archive:
    """An opened archive: :attr:`entries` (checked, in archive order) and :meth:`read`."""

    def __init__(self, path: Path, limits: Limits):
        with path.open("rb") as fh:
            head = fh.read(512)
        kind = sniff_archive(head)
        if kind is None and head[:2] == b"\x1f\x8b":
            raise ArchiveRefused("unsupported_archive", "compressed tar files (.tar.gz) are not read: send a ZIP "
                                 "or an uncompressed .tar", 415)
        if kind is None:
            raise ArchiveRefused("undecodable_archive", "the upload is not a ZIP or tar archive")
        self.kind = kind
        self.limits = limits
        self.skipped = 0
        self._zip: zipfile.ZipFile | None = None
        self._tar: tarfile.TarFile | None = None
        try:
            raw: list[Any]
            if kind == "zip":
                self._zip = zipfile.ZipFile(path)
                raw = list(self._zip.infolist())
            else:
                self._tar = tarfile.open(path, mode="r:")  # noqa: SIM115 - closed by close()
                raw = self._tar_members()
        except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError, ValueError) as exc:
            self.close()
            raise ArchiveRefused("undecodable_archive", f"the {kind} archive cannot be read ({type(exc).__name__}); "
                                 "it is corrupt or truncated") from exc
        try:
            self.entries = self._check(raw)
        except ArchiveRefused:
            self.close()
            raise

    def _tar_members(self) -> list[tarfile.TarInfo]:
        """Headers only, stopping as soon as a limit is passed (a huge tar is not walked to its end)."""
        assert self._tar is not None
        members, total = [], 0
        for member in self._tar:
            members.append(member)
            total += member.size if member.isfile() else 0
            if len(members) > self.limits.max_entries * 2 or total > self.limits.max_uncompressed_bytes:
                break
        return members

    def _check(self, raw: list[Any]) -> list[Entry]:
        limits = self.limits
        files = []
        for item in raw:
            if isinstance(item, zipfile.ZipInfo):
                is_dir, is_file, name = item.is_dir(), True, item.filename
            else:
                is_dir, is_file, name = item.isdir(), item.isfile(), item.name
            if is_dir or _skipped(name.replace("\\", "/")):
                self.skipped += 1
                continue
            files.append((item, is_file, name))
        if not files:
            raise ArchiveRefused("empty_archive", "the archive holds no files")
        if len(files) > limits.max_entries:
            raise ArchiveRefused("too_many_entries", f"the archive holds more than {limits.max_entries:,} files; "
                                 "split it into several collections", 413)
        total = sum(_size(item) for item, is_file, _ in files if is_file)
        if total > limits.max_uncompressed_bytes:
            raise ArchiveRefused("archive_too_large", f"the archive unpacks to more than "
                                 f"{limits.max_uncompressed_bytes:,} bytes; split it into several collections", 413)
        entries: list[Entry] = []
        seen: set[str] = set()
        for index, (item, is_file, raw_name) in enumerate(files):
            name, unsafe = clean_name(raw_name)
            entry = Entry(index, name, _size(item), ref=item)
            entry.error = self._entry_error(item, is_file, name, unsafe, seen)
            seen.add(name)
            entries.append(entry)
        return entries

    def _entry_error(self, item: Any, is_file: bool, name: str, unsafe: str | None,
                     seen: set[str]) -> dict[str, str] | None:
        limits = self.limits
        size = _size(item)
        if unsafe:
            return _error("unsafe_name", f"{unsafe}; entries are never unpacked by their own names")
        if not is_file:
            return _error("not_a_file", "a link or device, not a file")
        if name in seen:
            return _error("duplicate_name", "another entry has the same name; the first one is analysed")
        if name.lower().endswith(NESTED_SUFFIXES):
            return _error("nested_archive", "archives inside the archive are not opened; add their images directly")
        if isinstance(item, zipfile.ZipInfo):
            if item.flag_bits & 0x1:
                return _error("encrypted_entry", "the entry is encrypted")
            if item.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2,
                                          zipfile.ZIP_LZMA):
                return _error("unsupported_compression", f"compression method {item.compress_type} is not read")
            if size > RATIO_FLOOR_BYTES and size > limits.max_ratio * max(item.compress_size, 1):
                return _error("compression_ratio", f"the entry unpacks to {size / max(item.compress_size, 1):,.0f} "
                              f"times its compressed size (limit {limits.max_ratio:g}): a zip bomb, not a photo")
        if size > limits.max_entry_bytes:
            return _error("image_too_large", f"the file has {size:,} bytes; images are limited to "
                          f"{limits.max_entry_bytes:,} bytes")
        if size == 0:
            return _error("empty_input", "the file is empty")
        return None

    def read(self, entry: Entry) -> bytes:
        """The entry's bytes (never more than its checked size). Raises :class:`EntryError` when unreadable."""
        try:
            if self._zip is not None:
                with self._zip.open(entry.ref) as fh:
                    data = fh.read(entry.size + 1)
            else:
                assert self._tar is not None
                handle = self._tar.extractfile(entry.ref)
                if handle is None:
                    raise EntryError("not_a_file", "a link or device, not a file")
                data = handle.read(entry.size + 1)
        except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError, ValueError, NotImplementedError) as exc:
            raise EntryError("undecodable_entry", f"the entry cannot be unpacked ({type(exc).__name__}); the archive "
                             "is corrupt here") from exc
        if len(data) != entry.size:
            raise EntryError("undecodable_entry", "the entry's size does not match its header")
        if is_nested_archive(entry.name, data[:512]):
            raise EntryError("nested_archive", "archives inside the archive are not opened; add their images directly")
        return data

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
        if self._tar is not None:
            self._tar.close()


class EntryError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.error = _error(code, message)


def _size(item: Any) -> int:
    return int(item.file_size if isinstance(item, zipfile.ZipInfo) else item.size)


@contextmanager
def open_archive(path: Path, limits: Limits) -> Iterator[Archive]:
    archive = Archive(path, limits)
    try:
        yield archive
    finally:
        archive.close()
