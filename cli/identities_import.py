"""`liaison identities import`: link social handles to contacts from a CSV file, row by row.

Linking is idempotent by nature (a handle already linked to the same contact answers 200), so a
file can simply be imported again after an interruption; no checkpoint is needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from cli.client import ApiError, CliError, Services
from cli.contacts_import import ID_COLUMNS, SYSTEM_COLUMNS, Progress
from cli.csvfiles import ErrorsFile, numbered_rows, open_rows, scan
from cli.ui import flatten_errors

OPTIONAL = ("network_user_id", "verified", "source")


def default_errors_path(path: Path) -> Path:
    return path.with_name(path.stem + ".errors.csv")


class HandleColumns:
    def __init__(self, header: list[str], default_system: str | None):
        index = {name.lower(): i for i, name in enumerate(header)}
        self.width = len(header)
        self.contact_id = index.get("contact_id")
        self.system = next((index[c] for c in SYSTEM_COLUMNS if c in index), None)
        self.crm_id = next((index[c] for c in ID_COLUMNS if c in index), None)
        self.network = index.get("network")
        self.handle = index.get("handle")
        self.optional = {name: index[name] for name in OPTIONAL if name in index}
        self.default_system = default_system
        if self.network is None or self.handle is None:
            raise CliError("The file needs a network column and a handle column.")
        if self.contact_id is None and self.crm_id is None:
            raise CliError("The file needs a contact_id column, or crm_system and crm_id columns, to find the contact.")
        if self.contact_id is None and self.system is None and not default_system:
            raise CliError("The file has no crm_system column: name the CRM with --crm-system.")

    def cell(self, cells: list[str], index: int | None) -> str:
        return cells[index].strip() if index is not None and index < len(cells) else ""


class IdentityImport:
    def __init__(self, services: Services, path: Path, *, errors_path: Path | None = None,
                 default_system: str | None = None):
        self.services = services
        self.path = path
        self.errors_path = errors_path or default_errors_path(path)
        self.default_system = default_system

    def run(self, progress: Progress | None = None) -> dict[str, Any]:
        progress = progress or Progress()
        facts = scan(self.path)
        counts = {"linked": 0, "already_linked": 0, "rejected": 0}
        rows_done = 0
        with open_rows(self.path) as handle:
            header, rows = numbered_rows(handle)
            columns = HandleColumns(header, self.default_system)
            errors = ErrorsFile(self.errors_path, ["network", "handle"])
            progress.start(max(facts.lines - 1, 0), 0)
            try:
                for line, cells in rows:
                    outcome = self._link(columns, cells)
                    if isinstance(outcome, str):
                        counts[outcome] += 1
                    else:
                        errors.add(line, [columns.cell(cells, columns.network), columns.cell(cells, columns.handle)],
                                   outcome)
                        counts["rejected"] += 1
                    rows_done += 1
                    progress.advance(1)
            except CliError as error:
                error.message += (f"\nStopped after {rows_done:,} rows; importing the file again is safe"
                                  " (handles already linked are left as they are).")
                raise
            finally:
                errors.close(keep=counts["rejected"] > 0)
        return {"file": str(self.path), "rows": rows_done, **counts,
                "errors_file": str(self.errors_path) if counts["rejected"] else None}

    def _link(self, columns: HandleColumns, cells: list[str]) -> str | list[tuple[str, str]]:
        """"linked" or "already_linked", or the row's errors."""
        if len(cells) > columns.width:
            return [("_", f"The row has {len(cells)} cells; the header names {columns.width} columns.")]
        contact_id = columns.cell(cells, columns.contact_id)
        if not contact_id:
            found = self._find_contact(columns, cells)
            if isinstance(found, list):
                return found
            contact_id = found
        body = {"network": columns.cell(cells, columns.network), "handle": columns.cell(cells, columns.handle)}
        body |= {name: value for name, index in columns.optional.items() if (value := columns.cell(cells, index))}
        try:
            response = self.services.send("identity", "POST", f"/v1/contacts/{quote(contact_id, safe='')}/identities",
                                          json=body)
        except ApiError as error:
            return _row_errors(error, on_missing="contact_id")
        return "linked" if response.status_code == 201 else "already_linked"

    def _find_contact(self, columns: HandleColumns, cells: list[str]) -> str | list[tuple[str, str]]:
        system = columns.cell(cells, columns.system) or self.default_system or ""
        crm_id = columns.cell(cells, columns.crm_id)
        if not system or not crm_id:
            return [("contact_id", "Give a contact_id, or a crm_system and a crm_id.")]
        try:
            page = self.services.call("identity", "GET", "/v1/contacts",
                                      params={"crm_system": system, "crm_id": crm_id, "limit": 1})
        except ApiError as error:
            return _row_errors(error, on_missing="crm_id")
        if not page["items"]:
            return [("crm_id", f"No contact with the CRM reference {system}/{crm_id}.")]
        return str(page["items"][0]["id"])


def _row_errors(error: ApiError, on_missing: str) -> list[tuple[str, str]]:
    """A refusal about this row becomes its errors; one about the key or the service stops the import."""
    if error.status == 409:
        return [("handle", error.problem.get("detail") or "Linked to another contact.")]
    if error.status == 404:
        return [(on_missing, error.problem.get("detail") or "Not found.")]
    if error.status in (400, 422):
        return flatten_errors(error.field_errors) or [("_", error.problem.get("detail") or error.message)]
    raise error


