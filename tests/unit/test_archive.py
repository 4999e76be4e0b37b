"""Collection archives: every bad archive or entry gets its code, the good entries are read, nothing is unpacked
by its own name. Real ZIP and tar files built with the standard library."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from emotion.jobs.archive import Archive, ArchiveRefused, Limits, clean_name

LIMITS = Limits(max_entries=20, max_uncompressed_bytes=50_000_000, max_ratio=100, max_entry_bytes=6_000_000)
JPEG = b"\xff\xd8\xff\xe0" + b"fake jpeg bytes" * 10


def make_zip(path: Path, entries: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, data in entries:
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=method)
    return path


def make_tar(path: Path, entries: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def errors(archive: Archive) -> dict[str, str | None]:
    """name -> error code of the first entry of that name."""
    found: dict[str, str | None] = {}
    for entry in archive.entries:
        found.setdefault(entry.name, (entry.error or {}).get("code"))
    return found


@pytest.mark.filterwarnings("ignore:Duplicate name")
@pytest.mark.parametrize("maker", [make_zip, make_tar])
def test_entry_problems_are_rows(tmp_path: Path, maker) -> None:
    path = maker(tmp_path / "a", [
        ("photos/a.jpg", JPEG),
        ("../../etc/passwd.jpg", JPEG),
        ("/abs/b.jpg", JPEG),
        ("C:\\windows\\c.jpg", JPEG),
        ("photos\\..\\..\\d.jpg", JPEG),
        ("bad\x07name.jpg", JPEG),
        ("photos/a.jpg", JPEG + b"second"),
        ("inner.zip", b"PK\x03\x04" + bytes(40)),
        ("empty.jpg", b""),
        ("notes.txt", b"hello"),
        ("__MACOSX/photos/._a.jpg", b"resource fork"),
        (".DS_Store", b"junk"),
    ])
    archive = Archive(path, LIMITS)
    found = errors(archive)
    assert found["photos/a.jpg"] is None
    same = [(e.error or {}).get("code") for e in archive.entries if e.name == "photos/a.jpg"]
    assert same == [None, "duplicate_name"]
    unsafe = [e for e in archive.entries if e.error and e.error["code"] == "unsafe_name"]
    assert len(unsafe) == 5
    assert found["inner.zip"] == "nested_archive" and found["empty.jpg"] == "empty_input"
    assert found["notes.txt"] is None  # read, then refused by the image decoder (unsupported_media_type)
    assert archive.skipped == 2 and len(archive.entries) == 10
    assert archive.read(archive.entries[0]) == JPEG
    archive.close()


def test_nested_archive_by_content(tmp_path: Path) -> None:
    inner = make_tar(tmp_path / "inner.tar", [("x.jpg", JPEG)]).read_bytes()
    path = make_zip(tmp_path / "a.zip", [("looks_like.jpg", inner), ("gz.jpg", b"\x1f\x8b\x08" + bytes(30))])
    archive = Archive(path, LIMITS)
    for entry in archive.entries:
        with pytest.raises(Exception) as caught:
            archive.read(entry)
        assert caught.value.error["code"] == "nested_archive"  # type: ignore[attr-defined]


def test_zip_bomb_by_ratio_and_total(tmp_path: Path) -> None:
    zeros = b"\0" * 5_000_000  # deflates ~1000x
    archive = Archive(make_zip(tmp_path / "ratio.zip", [("bomb.bmp", zeros), ("ok.jpg", JPEG)]), LIMITS)
    assert errors(archive) == {"bomb.bmp": "compression_ratio", "ok.jpg": None}
    archive.close()
    stored = Archive(make_zip(tmp_path / "big.zip", [("big.bmp", b"\1" * 7_000_000)], zipfile.ZIP_STORED), LIMITS)
    assert errors(stored) == {"big.bmp": "image_too_large"}
    stored.close()
    many = [(f"b{i}.bmp", zeros) for i in range(11)]
    with pytest.raises(ArchiveRefused) as caught:
        Archive(make_zip(tmp_path / "total.zip", many), LIMITS)
    assert caught.value.code == "archive_too_large" and caught.value.status == 413


def test_lying_header_is_bounded(tmp_path: Path) -> None:
    """A ZIP whose entry header declares fewer bytes than its data inflates to is read only to its declared size."""
    path = make_zip(tmp_path / "lie.zip", [("a.jpg", b"\xff" * 100_000)])
    data = bytearray(path.read_bytes())
    # Patch the declared uncompressed size (local header offset 22, central directory) down to 1,000.
    data[22:26] = (1000).to_bytes(4, "little")
    central = data.rfind(b"PK\x01\x02")
    data[central + 24 : central + 28] = (1000).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    archive = Archive(path, LIMITS)
    with pytest.raises(Exception) as caught:
        archive.read(archive.entries[0])
    assert caught.value.error["code"] == "undecodable_entry"  # type: ignore[attr-defined]


@pytest.mark.parametrize(("content", "code"), [
    (b"", "undecodable_archive"),
    (b"not an archive at all" * 30, "undecodable_archive"),
    (b"PK\x03\x04" + bytes(100), "undecodable_archive"),
    (b"\x1f\x8b\x08\x00" + bytes(600), "unsupported_archive"),
])
def test_unreadable_archives(tmp_path: Path, content: bytes, code: str) -> None:
    path = tmp_path / "x"
    path.write_bytes(content)
    with pytest.raises(ArchiveRefused) as caught:
        Archive(path, LIMITS)
    assert caught.value.code == code


def test_empty_and_too_many(tmp_path: Path) -> None:
    with pytest.raises(ArchiveRefused) as caught:
        Archive(make_zip(tmp_path / "empty.zip", []), LIMITS)
    assert caught.value.code == "empty_archive"
    with pytest.raises(ArchiveRefused) as caught:
        Archive(make_zip(tmp_path / "dirs.zip", [("folder/", b""), ("__MACOSX/x", b"1")]), LIMITS)
    assert caught.value.code == "empty_archive"
    with pytest.raises(ArchiveRefused) as caught:
        Archive(make_tar(tmp_path / "many.tar", [(f"{i}.jpg", JPEG) for i in range(21)]), LIMITS)
    assert caught.value.code == "too_many_entries"


def test_tar_links_are_not_files(tmp_path: Path) -> None:
    path = tmp_path / "links.tar"
    with tarfile.open(path, "w") as tar:
        link = tarfile.TarInfo("escape.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
        info = tarfile.TarInfo("ok.jpg")
        info.size = len(JPEG)
        tar.addfile(info, io.BytesIO(JPEG))
    archive = Archive(path, LIMITS)
    assert errors(archive) == {"escape.jpg": "not_a_file", "ok.jpg": None}
    archive.close()


def test_clean_name() -> None:
    assert clean_name("./a//b/./c.jpg") == ("a/b/c.jpg", None)
    assert clean_name("a\\b.jpg") == ("a/b.jpg", None)
    assert clean_name("a/../../b.jpg")[1] is not None
