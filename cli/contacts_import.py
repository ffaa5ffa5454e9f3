"""`liaison contacts import`: a CSV file streamed to POST /v1/contacts/bulk in chunks.

Resumable: after each chunk a checkpoint file records how many chunks are done, with the running
totals and the size of the errors file at that point. Each chunk carries an Idempotency-Key made
of the file's content hash, the options that shape the request bodies and the chunk's index, so a
chunk sent again after a crash (its answer lost, its checkpoint not written) is answered from the
first attempt by the service and creates nothing twice (for the 24 hours the service keeps keys)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from rich.markup import escape

from cli.client import UNAVAILABLE_STATUSES, ApiError, CliError, Services, Unreachable
from cli.csvfiles import ErrorsFile, numbered_rows, open_rows, scan
from cli.ui import flatten_errors, note

BULK_MAX = 10_000  # CONTRACT §2: up to 10000 contacts per bulk request
FIELDS = ("email", "phone", "first_name", "last_name", "locale", "timezone")
SYSTEM_COLUMNS = ("crm_system", "crm_ref.system")
ID_COLUMNS = ("crm_id", "crm_ref.id")
ATTRIBUTE_PREFIX = "attributes."
# The bulk endpoint names a later row with the same crm_ref by its index in the request;
# the user knows lines of their file.
_SUPERSEDED = re.compile(r"\brow (\d+)\b")


class ContactColumns:
    """Which column feeds which contact field: crm_system/crm_id (or crm_ref.system/crm_ref.id),
    the contact's own fields by name, `attributes.<key>` or any other column as an attribute."""

    def __init__(self, header: list[str], default_system: str | None):
        self.width = len(header)
        self.system: int | None = None
        self.id: int | None = None
        self.fields: dict[str, int] = {}
        self.attributes: dict[str, int] = {}
        seen: set[str] = set()
        for index, name in enumerate(header):
            lowered = name.lower()
            if not name:
                raise CliError(f"Column {index + 1} of the header has no name.")
            if lowered in seen:
                raise CliError(f"The column {name!r} appears twice in the header.")
            seen.add(lowered)
            if lowered in SYSTEM_COLUMNS:
                self.system = index
            elif lowered in ID_COLUMNS:
                self.id = index
            elif lowered in FIELDS:
                self.fields[lowered] = index
            elif lowered.startswith(ATTRIBUTE_PREFIX):
                self.attributes[name[len(ATTRIBUTE_PREFIX):]] = index
            else:
                self.attributes[name] = index
        if self.id is None:
            raise CliError("The file has no crm_id (or crm_ref.id) column: contacts are upserted by CRM reference.")
        if self.system is None and not default_system:
            raise CliError("The file has no crm_system (or crm_ref.system) column: name the CRM with --crm-system.")
        self.default_system = default_system

    def contact(self, cells: list[str]) -> dict[str, Any] | list[tuple[str, str]]:
        """The contact for the bulk request, or the row's errors when it cannot make one.
        An empty cell is left out: it changes nothing on an existing contact."""
        if len(cells) > self.width:
            return [("_", f"The row has {len(cells)} cells; the header names {self.width} columns.")]

        def cell(index: int | None) -> str:
            return cells[index].strip() if index is not None and index < len(cells) else ""

        system = cell(self.system) or self.default_system or ""
        crm_id = cell(self.id)
        contact: dict[str, Any] = {"crm_ref": {k: v for k, v in (("system", system), ("id", crm_id)) if v}}
        for name, index in self.fields.items():
            if value := cell(index):
                contact[name] = value
        attributes = {key: value for key, index in self.attributes.items() if (value := cell(index))}
        if attributes:
            contact["attributes"] = attributes
        return contact

    def reference(self, cells: list[str]) -> list[str]:
        system = cells[self.system].strip() if self.system is not None and self.system < len(cells) else ""
        crm_id = cells[self.id].strip() if self.id is not None and self.id < len(cells) else ""
        return [system or self.default_system or "", crm_id]


@dataclass
class Checkpoint:
    file_sha256: str
    chunk_size: int
    options: str
    chunks_done: int = 0
    rows_done: int = 0
    created: int = 0
    updated: int = 0
    rejected: int = 0
    errors_bytes: int = 0

    def save(self, path: Path) -> None:
        # Written aside then renamed: a crash leaves the old checkpoint or the new one, never half of one.
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(asdict(self)), encoding="utf-8")
        os.replace(temporary, path)

    @classmethod
    def load(cls, path: Path) -> Checkpoint | None:
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            raise CliError(f"The checkpoint {path} is not one this command wrote ({exc}); remove it.") from None


@dataclass
class Progress:
    """How the import tells its caller how far it got (the command draws a progress bar)."""

    start: Callable[[int, int], None] = lambda total, done: None
    advance: Callable[[int], None] = lambda rows: None


def default_errors_path(path: Path) -> Path:
    return path.with_name(path.stem + ".errors.csv")


def default_checkpoint_path(path: Path) -> Path:
    return path.with_name(path.name + ".checkpoint.json")


class ContactImport:
    def __init__(self, services: Services, path: Path, *, chunk_size: int = 1000, errors_path: Path | None = None,
                 checkpoint_path: Path | None = None, default_system: str | None = None, retries: int = 3,
                 sleep: Callable[[float], None] = time.sleep):
        if not 1 <= chunk_size <= BULK_MAX:
            raise CliError(f"--chunk-size must be between 1 and {BULK_MAX}.")
        self.services = services
        self.path = path
        self.chunk_size = chunk_size
        self.errors_path = errors_path or default_errors_path(path)
        self.checkpoint_path = checkpoint_path or default_checkpoint_path(path)
        self.default_system = default_system
        self.retries = retries
        self.sleep = sleep

    def run(self, resume: bool, progress: Progress | None = None) -> dict[str, Any]:
        progress = progress or Progress()
        facts = scan(self.path)
        # The options that change a request body are part of the key: the same key with another
        # body would be refused by the service.
        options = hashlib.sha256(json.dumps([self.chunk_size, self.default_system]).encode()).hexdigest()[:12]
        state = Checkpoint(facts.sha256, self.chunk_size, options)
        saved = Checkpoint.load(self.checkpoint_path)
        if resume and saved is not None:
            if (saved.file_sha256, saved.chunk_size, saved.options) != (state.file_sha256, state.chunk_size, options):
                raise CliError(f"The checkpoint {self.checkpoint_path} belongs to another file or other options"
                               " (--chunk-size, --crm-system): run without --resume to start over.")
            state = saved
            note(f"Resuming after chunk {state.chunks_done} ({state.rows_done:,} rows already imported).")
        elif resume:
            note("No checkpoint to resume from: starting at the beginning.")
        elif saved is not None:
            note(f"Starting over; the checkpoint {self.checkpoint_path} is replaced (--resume would continue it).")
        key_prefix = f"liaison-import-{facts.sha256[:40]}-{options}"

        with open_rows(self.path) as handle:
            header, rows = numbered_rows(handle)
            columns = ContactColumns(header, self.default_system)
            errors = ErrorsFile(self.errors_path, ["crm_system", "crm_id"], keep=state.errors_bytes)
            if not state.errors_bytes:
                state.errors_bytes = errors.position()
                state.save(self.checkpoint_path)
            progress.start(max(facts.lines - 1, state.rows_done), state.rows_done)
            finished = False
            try:
                chunks = self._chunks(rows)
                for _ in range(state.chunks_done):  # done before: read past them, send nothing
                    next(chunks, None)
                for index, chunk in enumerate(chunks, start=state.chunks_done):
                    created, updated, rejected = self._import_chunk(index, chunk, columns, errors, key_prefix)
                    state.chunks_done = index + 1
                    state.rows_done += len(chunk)
                    state.created += created
                    state.updated += updated
                    state.rejected += rejected
                    state.errors_bytes = errors.position()
                    state.save(self.checkpoint_path)
                    progress.advance(len(chunk))
                finished = True
            except CliError as error:
                error.message += f"\n{self._resume_hint(state)}"
                raise
            except KeyboardInterrupt:
                note(self._resume_hint(state))
                raise
            finally:
                errors.close(keep=not finished or state.rejected > 0)
        self.checkpoint_path.unlink(missing_ok=True)
        return {"file": str(self.path), "rows": state.rows_done, "created": state.created, "updated": state.updated,
                "rejected": state.rejected, "chunks": state.chunks_done,
                "errors_file": str(self.errors_path) if state.rejected else None}

    def _resume_hint(self, state: Checkpoint) -> str:
        return (f"Stopped after {state.rows_done:,} rows ({state.chunks_done} chunks);"
                f" continue with: liaison contacts import {self.path} --resume"
                + ("" if self.chunk_size == 1000 else f" --chunk-size {self.chunk_size}"))

    def _chunks(self, rows: Iterator[tuple[int, list[str]]]) -> Iterator[list[tuple[int, list[str]]]]:
        while chunk := list(islice(rows, self.chunk_size)):
            yield chunk

    def _import_chunk(self, index: int, chunk: list[tuple[int, list[str]]], columns: ContactColumns,
                      errors: ErrorsFile, key_prefix: str) -> tuple[int, int, int]:
        sent: list[tuple[int, list[str]]] = []  # (line, [crm_system, crm_id]) of each contact in the body
        contacts = []
        rejected = 0
        for line, cells in chunk:
            contact = columns.contact(cells)
            if isinstance(contact, list):
                errors.add(line, columns.reference(cells), contact)
                rejected += 1
                continue
            sent.append((line, columns.reference(cells)))
            contacts.append(contact)
        if not contacts:
            return 0, 0, rejected
        # Compact, ordered and stable: the same chunk always makes the same bytes, as a replayed
        # Idempotency-Key requires.
        body = json.dumps({"contacts": contacts}, separators=(",", ":"), ensure_ascii=False).encode()
        answer = self._send(body, f"{key_prefix}-{index}")
        lines = [line for line, _ in sent]
        for row_error in answer.get("errors", []):
            line, reference = sent[row_error["index"]]
            flat = [(name, _SUPERSEDED.sub(lambda m: _line_of(m, lines), message))
                    for name, message in flatten_errors(row_error.get("errors", {}))]
            errors.add(line, reference, flat)
            rejected += 1
        return int(answer.get("created", 0)), int(answer.get("updated", 0)), rejected

    def _send(self, body: bytes, key: str) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                return self.services.call("identity", "POST", "/v1/contacts/bulk", data=body,
                                          headers={"Idempotency-Key": key})
            except (Unreachable, ApiError) as error:
                passing = isinstance(error, Unreachable) or error.status == 429 or error.status in UNAVAILABLE_STATUSES
                if not passing or attempt >= self.retries:
                    raise
                attempt += 1
                wait = min(2.0 ** attempt, 30.0)
                note(f"[yellow]{escape(error.message)}[/]; retrying in {wait:.0f}s ({attempt}/{self.retries})")
                self.sleep(wait)


def _line_of(match: re.Match[str], lines: list[int]) -> str:
    index = int(match.group(1))
    return f"line {lines[index]}" if 0 <= index < len(lines) else match.group(0)
