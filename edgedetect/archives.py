"""Reading a dataset source file by file: a folder (through :mod:`edgedetect.listing`), a ``.tar.gz``/``.tgz``/
``.tar`` or a ``.zip``, each member checked before it is read (size, links, encryption), with a progress bar."""

from __future__ import annotations

import tarfile
import time
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

from edgedetect.errors import EdgeDetectError, ImageError
from edgedetect.listing import IMAGE_SUFFIXES, FileEntry, list_folder
from edgedetect.listing import wanted as _wanted
from edgedetect.preprocess import MAX_IMAGE_BYTES, read_file, too_large


def archive_kind(path: Path) -> str:
    """``folder``, ``tar`` or ``zip``; raises EdgeDetectError for anything else."""
    name = path.name.lower()
    if path.is_dir():
        return "folder"
    if not path.exists():
        raise EdgeDetectError(f"{path}: dataset not found (expected a folder, a .tar.gz or a .zip)")
    if not path.is_file():  # reading a pipe would block, a device never end
        raise EdgeDetectError(f"{path}: not a regular file (a pipe, socket or device); expected a folder, a .tar.gz "
                              "or a .zip")
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        return "tar"
    if name.endswith(".zip"):
        return "zip"
    raise EdgeDetectError(f"{path}: not a dataset (expected a folder, a .tar.gz/.tgz/.tar or a .zip archive)")


def is_image_name(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES


class Scan:
    """One pass over a folder or archive, yielding ``(relpath, bytes or None, problem or None)`` per image file.

    ``position`` and ``total`` count bytes of the source (compressed bytes for archives) for a progress bar;
    ``files`` counts what was yielded.
    """

    def __init__(self, path: Path, listing: list[FileEntry] | None = None):
        self.path = path
        self.kind = archive_kind(path)
        if self.kind != "folder":
            self.kind = sniff_archive(path) or self.kind  # the content decides: a zip named .tar.gz is read as a zip
        if self.kind == "folder" and listing is None:
            listing = list_folder(path)
        self.listing = listing
        self.total = sum(f.size for f in listing) if listing is not None else path.stat().st_size
        self.position = 0
        self.files = 0

    def __iter__(self) -> Iterator[tuple[str, bytes | None, str | None]]:
        if self.kind == "folder":
            yield from self._folder()
        elif self.kind == "tar":
            yield from self._tar()
        else:
            yield from self._zip()

    def _folder(self):
        for relpath, problem in getattr(self.listing, "skipped", ()):
            self.files += 1
            yield relpath, None, problem
        for f in self.listing:
            try:
                data, problem = read_file(f.path), None
            except ImageError as e:
                data, problem = None, e.problem
            self.position += f.size
            self.files += 1
            yield f.relpath, data, problem

    def _tar(self):
        try:
            with open(self.path, "rb") as raw, tarfile.open(fileobj=raw, mode="r:*") as tar:
                for member in tar:
                    if not _wanted(member.name) or not (member.isfile() or member.islnk() or member.issym()):
                        continue
                    data, problem = None, None
                    try:
                        target = tar._find_link_target(member) if (member.islnk() or member.issym()) else member
                    except KeyError:
                        problem = f"link to {member.linkname}, which is not a file in the archive"
                    else:
                        if target.size > MAX_IMAGE_BYTES:  # refused from the header, before reading a byte of it
                            problem = too_large(target.size)
                        elif not target.isfile():
                            problem = f"link to {member.linkname}, which is not a file in the archive"
                        else:
                            data = tar.extractfile(target).read()
                    self.position = raw.tell()
                    self.files += 1
                    yield member.name, data, problem
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise EdgeDetectError(f"{self.path}: cannot read archive ({_first_line(e)}); check the file, or extract "
                                  "it and pass the folder") from None

    def _zip(self):
        try:
            with zipfile.ZipFile(self.path) as zf:
                for info in zf.infolist():
                    if info.is_dir() or not _wanted(info.filename):
                        continue
                    data, problem = None, None
                    if info.flag_bits & 0x1:
                        problem = "encrypted in the zip; extract it with its password and pass the folder"
                    elif info.file_size > MAX_IMAGE_BYTES:  # zipfile reads no more than the declared size
                        problem = too_large(info.file_size)
                    else:
                        try:
                            data = zf.read(info)
                        except (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, EOFError,
                                OSError) as e:
                            # one bad member, not a bad archive
                            problem = f"cannot extract from the zip ({_first_line(e)})"
                    self.position = info.header_offset + info.compress_size
                    self.files += 1
                    yield info.filename, data, problem
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise EdgeDetectError(f"{self.path}: cannot read archive ({_first_line(e)}); check the file, or extract "
                                  "it and pass the folder") from None


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0].rstrip(":") if lines else type(e).__name__


def sniff_archive(path: Path) -> str | None:
    """``tar`` or ``zip`` from the first bytes of ``path`` (gzip, bzip2, xz, plain tar; zip), or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return None
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")) or head[257:262] == b"ustar":
        return "tar"
    return None


def iter_files(path: Path) -> Iterator[tuple[str, bytes]]:
    """Yield ``(relative posix path, bytes)`` for every image-named file in a folder or archive.

    Files that cannot be read are yielded with ``b""`` bytes, so the caller reports them instead of losing them.
    """
    for relpath, data, _ in Scan(Path(path)):
        yield relpath, data or b""


@contextmanager
def progress_bar(verb: str, scan: Scan, enabled: bool = True) -> Iterator[Callable[[], None]]:
    """A transient rich bar on stderr following ``scan``; yields ``tick()`` to call after each file."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    columns = (TextColumn(f"{verb} {scan.path.name}"), BarColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[files]:,} files"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True, disable=not enabled) as bar:
        task = bar.add_task("", total=scan.total or None, files=0)
        last = [0.0]

        def tick() -> None:
            now = time.monotonic()
            if now - last[0] > 0.05:  # rich redraws at 10 Hz anyway; updating per file costs more than a header parse
                last[0] = now
                bar.update(task, completed=scan.position, files=scan.files)

        yield tick
        bar.update(task, completed=scan.position, files=scan.files)
