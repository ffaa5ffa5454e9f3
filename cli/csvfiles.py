"""Reading an import file as a stream of numbered rows, and writing the rows it rejected."""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cli.client import CliError

BLOCK = 1 << 20
ENCODING = "utf-8-sig"  # spreadsheets often start a UTF-8 file with a byte-order mark


@dataclass(frozen=True)
class FileFacts:
    sha256: str
    lines: int


def scan(path: Path) -> FileFacts:
    """The file's content hash and its line count (the progress bar's total), in one streaming pass."""
    digest = hashlib.sha256()
    lines = 0
    last = b"\n"
    try:
        with path.open("rb") as handle:
            while block := handle.read(BLOCK):
                digest.update(block)
                lines += block.count(b"\n")
                last = block[-1:]
    except OSError as exc:
        raise CliError(f"Cannot read {path}: {exc.strerror or exc}") from None
    return FileFacts(digest.hexdigest(), lines + (last != b"\n"))


def open_rows(path: Path) -> IO[str]:
    try:
        return path.open(newline="", encoding=ENCODING)
    except OSError as exc:
        raise CliError(f"Cannot read {path}: {exc.strerror or exc}") from None


def numbered_rows(handle: IO[str]) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The header, and each data row with the line of the file where it starts (the header is
    line 1), so that an error can point at the line a spreadsheet shows. Blank lines are skipped."""
    reader = csv.reader(handle)
    try:
        header = next(reader)
    except StopIteration:
        raise CliError("The file is empty: it needs a header line naming its columns.") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise CliError(f"Cannot read the header line: {exc}") from None

    def rows() -> Iterator[tuple[int, list[str]]]:
        last = reader.line_num
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as exc:
                raise CliError(f"The file is not valid CSV after line {last}: {exc}") from None
            start, last = last + 1, reader.line_num
            if cells:
                yield start, cells

    return [name.strip() for name in header], rows()


class ErrorsFile:
    """The rejected rows, one line per field error: `line` (in the input file), the row's
    identifying cells, `field` and `message`. Appends after `keep` bytes when resuming."""

    def __init__(self, path: Path, identifying: list[str], keep: int = 0):
        self.path = path
        self.header = ["line", *identifying, "field", "message"]
        try:
            if keep and path.exists():
                self._handle = path.open("r+", newline="", encoding="utf-8")
                self._handle.truncate(keep)  # drop what a chunk that was not checkpointed wrote
                self._handle.seek(keep)
            else:
                self._handle = path.open("w", newline="", encoding="utf-8")
                csv.writer(self._handle).writerow(self.header)
        except OSError as exc:
            raise CliError(f"Cannot write the errors file {path}: {exc.strerror or exc}") from None
        self._writer = csv.writer(self._handle)

    def add(self, line: int, identifying: list[Any], errors: list[tuple[str, str]]) -> None:
        for name, message in errors:
            self._writer.writerow([line, *identifying, name, message])

    def position(self) -> int:
        self._handle.flush()
        return self._handle.tell()

    def close(self, keep: bool) -> None:
        self._handle.close()
        if not keep:
            self.path.unlink(missing_ok=True)
