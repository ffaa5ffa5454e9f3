"""`liaison`: Liaison from the command line, a client of the services' REST APIs (and of the broker
for dead letters). See docs/cli.md."""

import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

from cli import exits
from cli.client import CliError, Services, Unreachable
from cli.contacts_import import BULK_MAX, ContactImport, Progress
from cli.follow import campaign_view, erasure_view, follow_campaign, follow_erasure
from cli.identities_import import IdentityImport
from cli.ui import RateColumn, emit_json, err, key_values, note, out, reports_errors, table
from shared.settings import Settings, SettingsError

app = typer.Typer(
    help="Liaison from the command line: tenants and keys, CSV imports, campaigns, consents, audit, "
         "dead letters and erasure. Talks to the services' REST APIs with a tenant's API key "
         "(LIAISON_API_KEY) or, for tenants and keys, the admin key (LIAISON_ADMIN_KEY).",
    epilog=exits.EPILOG,
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
    add_completion=False,
)
tenants_app = typer.Typer(help="Tenants (admin key).", no_args_is_help=True)
keys_app = typer.Typer(help="API keys of a tenant (admin key).", no_args_is_help=True)
contacts_app = typer.Typer(help="Contacts: bulk import from CSV, erasure.", no_args_is_help=True)
identities_app = typer.Typer(help="Social identities: link handles from CSV.", no_args_is_help=True)
campaigns_app = typer.Typer(help="Campaigns: launch and follow live.", no_args_is_help=True)
consents_app = typer.Typer(help="The consent ledger (compliance scope).", no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail (compliance scope).", no_args_is_help=True)
deadletters_app = typer.Typer(help="Dead-lettered bus messages of a consumer (talks to the broker).",
                              no_args_is_help=True)
for sub, name in ((tenants_app, "tenants"), (keys_app, "keys"), (contacts_app, "contacts"),
                  (identities_app, "identities"), (campaigns_app, "campaigns"), (consents_app, "consents"),
                  (audit_app, "audit"), (deadletters_app, "deadletters")):
    sub.rich_markup_mode = "markdown"
    app.add_typer(sub, name=name, epilog=exits.EPILOG)

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout, nothing else.")]
TimeoutOption = Annotated[float, typer.Option(help="Give up after this many seconds (exit code 4).", min=0.1)]
IntervalOption = Annotated[float, typer.Option(help="Seconds between two polls.", min=0.05)]


@app.callback()
def connection(
    ctx: typer.Context,
    identity_url: Annotated[str, typer.Option(envvar="IDENTITY_URL", help="identity's base URL.")]
    = Settings.identity_url,
    enrichment_url: Annotated[str, typer.Option(envvar="ENRICHMENT_URL", help="enrichment's base URL.")]
    = Settings.enrichment_url,
    campaigns_url: Annotated[str, typer.Option(envvar="CAMPAIGNS_URL", help="campaigns' base URL.")]
    = Settings.campaigns_url,
    key: Annotated[str | None, typer.Option(envvar="LIAISON_API_KEY", show_envvar=True,
                                            help="A tenant's API key (its scopes decide what you may do).")] = None,
    admin_key: Annotated[str | None, typer.Option(envvar="LIAISON_ADMIN_KEY", show_envvar=True,
                                                  help="The admin key, for tenants and keys only.")] = None,
) -> None:
    """Where the services are and which key to use; every option also reads its environment variable."""
    services = Services(identity_url, enrichment_url, campaigns_url, key=key, admin_key=admin_key)
    ctx.obj = services
    ctx.call_on_close(services.close)


def services_of(ctx: typer.Context) -> Services:
    return ctx.find_root().obj


@app.command("status")
@reports_errors
def status(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Is each service up and ready (its database and broker reachable)? GET /readyz, no key needed.
    Exit code 3 when one is unreachable or not ready."""
    services = services_of(ctx)
    states = {}
    for name in ("identity", "enrichment", "campaigns"):
        try:
            services.send(name, "GET", "/readyz", auth=False)
            states[name] = {"url": services.base(name), "ready": True, "problem": None}
        except CliError as error:
            states[name] = {"url": services.base(name), "ready": False, "problem": error.message}
    if as_json:
        emit_json(states)
    else:
        out().print(table("Services", ("service", "url", "ready", "problem"),
                          ((n, s["url"], "yes" if s["ready"] else "NO", s["problem"]) for n, s in states.items())))
    if not all(s["ready"] for s in states.values()):
        raise typer.Exit(exits.UNREACHABLE)


# Tenants and keys ---------------------------------------------------------------------------


@tenants_app.command("create")
@reports_errors
def tenants_create(ctx: typer.Context, name: Annotated[str, typer.Argument(help="The tenant's name.")],
                   as_json: JsonOption = False) -> None:
    """Create a tenant; prints its id (pass it to `liaison keys create`)."""
    tenant = services_of(ctx).call("identity", "POST", "/v1/tenants", admin=True, json={"name": name})
    if as_json:
        emit_json(tenant)
    else:
        out().print(key_values("Tenant created", tenant))


@keys_app.command("create")
@reports_errors
def keys_create(
    ctx: typer.Context,
    tenant_id: Annotated[str, typer.Argument(help="The tenant's id.")],
    scope: Annotated[list[str], typer.Option("--scope", help="crm, marketing or compliance; repeat for several.")],
    name: Annotated[str, typer.Option("--name", help="What the key is for, e.g. the CRM connector's name.")],
    as_json: JsonOption = False,
) -> None:
    """Create an API key for a tenant. The key is shown once: store it now."""
    created = services_of(ctx).call("identity", "POST", f"/v1/tenants/{tenant_id}/api-keys", admin=True,
                                     json={"name": name, "scopes": scope})
    if as_json:
        emit_json(created)
    else:
        out().print(key_values("API key created", {"id": created["id"], "key": created["key"],
                                                   "scopes": ", ".join(created["scopes"])}))
        note("[yellow]The key is shown only this once; it is stored as a hash.[/]")


@keys_app.command("revoke")
@reports_errors
def keys_revoke(ctx: typer.Context, key_id: Annotated[str, typer.Argument(help="The key's id (not the key).")],
                as_json: JsonOption = False) -> None:
    """Revoke an API key: it stops working on every service within seconds."""
    services_of(ctx).call("identity", "DELETE", f"/v1/api-keys/{key_id}", admin=True)
    if as_json:
        emit_json({"id": key_id, "revoked": True})
    else:
        out().print(f"Key {key_id} revoked.")


# Contacts -----------------------------------------------------------------------------------


def _progress_bar() -> RichProgress:
    return RichProgress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
                        TextColumn("ETA"), TimeRemainingColumn(), TimeElapsedColumn(), console=err())


def _run_with_bar(label: str, run: Any) -> dict[str, Any]:
    """The bar appears once the file has been checked (a bad header is just an error)."""
    bar = _progress_bar()
    task = bar.add_task(label, total=None, start=False)

    def start(total: int, done: int) -> None:
        bar.update(task, total=total, completed=done)
        bar.start_task(task)
        bar.start()

    def advance(rows: int) -> None:
        bar.advance(task, rows)

    try:
        summary = run(Progress(start, advance))
        bar.update(task, total=summary["rows"], completed=summary["rows"])
    finally:
        bar.stop()
    return summary


@contacts_app.command("import")
@reports_errors
def contacts_import(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The CSV file (UTF-8, a header line first).", exists=True,
                                         dir_okay=False, readable=True)],
    chunk_size: Annotated[int, typer.Option(help=f"Contacts per bulk request (1..{BULK_MAX}).", min=1,
                                            max=BULK_MAX)] = 1000,
    errors: Annotated[Path | None, typer.Option(help="Where rejected rows go (default: FILE's name + .errors.csv,"
                                                     " next to it).", dir_okay=False)] = None,
    resume: Annotated[bool, typer.Option("--resume",
                                         help="Continue after the last chunk the checkpoint records.")] = False,
    checkpoint: Annotated[Path | None, typer.Option(help="The checkpoint file (default: FILE + .checkpoint.json).",
                                                    dir_okay=False)] = None,
    crm_system: Annotated[str | None, typer.Option(help="The CRM for rows without a crm_system cell.")] = None,
    retries: Annotated[int, typer.Option(help="Retries of a chunk when the service is unreachable or busy.",
                                         min=0, max=20)] = 3,
    as_json: JsonOption = False,
) -> None:
    """Upsert contacts from a CSV file through POST /v1/contacts/bulk, in chunks.

    Columns: crm_system and crm_id (or crm_ref.system and crm_ref.id) identify the contact;
    email, phone, first_name, last_name, locale, timezone are its fields; `attributes.KEY` or any
    other column becomes the attribute of that name. An empty cell changes nothing.

    Rejected rows go to the errors file (line in FILE, crm_system, crm_id, field, message). The
    import is resumable: `--resume` continues after the last chunk recorded in the checkpoint, and
    a chunk sent twice creates nothing twice (its Idempotency-Key comes from FILE's content).
    Exit code 6 when some rows were rejected."""
    job = ContactImport(services_of(ctx), file, chunk_size=chunk_size, errors_path=errors,
                        checkpoint_path=checkpoint, default_system=crm_system, retries=retries)
    summary = _run_with_bar("Importing contacts", lambda progress: job.run(resume, progress))
    _import_summary(summary, ("rows", "created", "updated", "rejected"), as_json)


def _import_summary(summary: dict[str, Any], figures: tuple[str, ...], as_json: bool) -> None:
    if as_json:
        emit_json(summary)
    else:
        out().print(key_values(f"Imported {summary['file']}", {name: f"{summary[name]:,}" for name in figures}))
        if summary["errors_file"]:
            note(f"[yellow]{summary['rejected']:,} rejected row(s): see {summary['errors_file']}[/]")
    if summary["rejected"]:
        raise typer.Exit(exits.ROWS_REJECTED)


@contacts_app.command("erase")
@reports_errors
def contacts_erase(
    ctx: typer.Context,
    contact_id: Annotated[str, typer.Argument(help="The contact's id.")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait until every service has erased the contact.")] = False,
    timeout: TimeoutOption = 300.0,
    interval: IntervalOption = 2.0,
    as_json: JsonOption = False,
) -> None:
    """Erase a contact everywhere (the right to erasure). With --wait, follow each service's
    progress until the erasure is completed (exit code 4 if --timeout comes first)."""
    services = services_of(ctx)
    accepted = services.call("identity", "DELETE", f"/v1/contacts/{contact_id}")
    if not wait:
        if as_json:
            emit_json(accepted)
        else:
            out().print(key_values("Erasure requested", accepted))
        return
    erasure, outcome = follow_erasure(services, accepted["erasure_id"], interval=interval, timeout=timeout)
    if as_json:
        emit_json(erasure)
    else:
        out().print(erasure_view(erasure))
    if outcome == "timed_out":
        note(f"[red]Still pending after {timeout:g}s;[/] follow it with GET /v1/erasures/{erasure['id']}.")
        raise typer.Exit(exits.TIMED_OUT)


# Identities ---------------------------------------------------------------------------------


@identities_app.command("import")
@reports_errors
def identities_import(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The CSV file (UTF-8, a header line first).", exists=True,
                                         dir_okay=False, readable=True)],
    errors: Annotated[Path | None, typer.Option(help="Where rejected rows go (default: FILE's name + .errors.csv,"
                                                     " next to it).", dir_okay=False)] = None,
    crm_system: Annotated[str | None, typer.Option(help="The CRM for rows without a crm_system cell.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Link social handles to contacts from a CSV file.

    Columns: contact_id, or crm_system and crm_id, find the contact; network (x, facebook,
    instagram, linkedin, tiktok) and handle (a handle or a profile URL) are linked; network_user_id,
    verified and source are optional. A handle already linked to another contact is a rejected
    row (the conflict names that contact). Importing a file again changes nothing already linked.
    Exit code 6 when some rows were rejected."""
    job = IdentityImport(services_of(ctx), file, errors_path=errors, default_system=crm_system)
    summary = _run_with_bar("Linking handles", job.run)
    _import_summary(summary, ("rows", "linked", "already_linked", "rejected"), as_json)


# Campaigns ----------------------------------------------------------------------------------


def _follow(ctx: typer.Context, campaign_id: str, timeout: float, interval: float, as_json: bool) -> None:
    state, outcome = follow_campaign(services_of(ctx), campaign_id, interval=interval, timeout=timeout)
    if as_json:
        emit_json({**state, "outcome": outcome})
    else:
        out().print(campaign_view(state, with_bars=False))
    if outcome == "cancelled":
        note("[red]The campaign was cancelled.[/]")
        raise typer.Exit(exits.CAMPAIGN_CANCELLED)
    if outcome == "timed_out":
        note(f"[red]The campaign is still {state['status']} after {timeout:g}s.[/]")
        raise typer.Exit(exits.TIMED_OUT)


@campaigns_app.command("launch")
@reports_errors
def campaigns_launch(
    ctx: typer.Context,
    campaign_id: Annotated[str, typer.Argument(help="The campaign's id.")],
    follow: Annotated[bool, typer.Option("--follow",
                                         help="Then follow it live until it is completed or cancelled.")] = False,
    timeout: TimeoutOption = 3600.0,
    interval: IntervalOption = 2.0,
    as_json: JsonOption = False,
) -> None:
    """Launch a draft (or scheduled) campaign. With --follow, as `liaison campaigns follow`."""
    launched = services_of(ctx).call("campaigns", "POST", f"/v1/campaigns/{campaign_id}/launch")
    if follow:
        note(f"Launched: {launched['status']}.")
        _follow(ctx, campaign_id, timeout, interval, as_json)
    elif as_json:
        emit_json(launched)
    else:
        out().print(f"Campaign {campaign_id} is {launched['status']}.")


@campaigns_app.command("follow")
@reports_errors
def campaigns_follow(
    ctx: typer.Context,
    campaign_id: Annotated[str, typer.Argument(help="The campaign's id.")],
    timeout: TimeoutOption = 3600.0,
    interval: IntervalOption = 2.0,
    as_json: JsonOption = False,
) -> None:
    """Follow a campaign live, channel by channel (queued, sent, delivered, failed, and why contacts
    were suppressed), until it is completed (exit 0) or cancelled (exit 7); exit 4 on --timeout.
    --json prints the final figures."""
    _follow(ctx, campaign_id, timeout, interval, as_json)


# Consents -----------------------------------------------------------------------------------


@consents_app.command("export")
@reports_errors
def consents_export(
    ctx: typer.Context,
    purpose: Annotated[str | None, typer.Option(help="Only this purpose, e.g. email_marketing.")] = None,
    status: Annotated[str | None, typer.Option(help="Only granted or withdrawn records.")] = None,
    since: Annotated[str | None, typer.Option("--from", help="Captured at or after (RFC 3339).")] = None,
    until: Annotated[str | None, typer.Option("--to", help="Captured before (RFC 3339).")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", dir_okay=False,
                                                help="The CSV file to write; stdout when absent or `-`.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Export the consent ledger as CSV, streamed (GET /v1/consents with Accept: text/csv).
    Written to a temporary file renamed at the end, so an interrupted export leaves no partial file."""
    params = {k: v for k, v in (("purpose", purpose), ("status", status), ("from", since), ("to", until)) if v}
    services = services_of(ctx)
    to_stdout = output is None or str(output) == "-"
    if to_stdout and as_json:
        raise CliError("--json describes the file written: give it with -o FILE.")
    with services.stream("identity", "/v1/consents", params=params, headers={"Accept": "text/csv"}) as response:
        if to_stdout:
            stdout = sys.stdout.buffer
            for block in response.iter_content(1 << 16):
                stdout.write(block)
            stdout.flush()
            return
        written = _write_atomically(output, response.iter_content(1 << 16))
    records = _count_csv_records(output)
    if as_json:
        emit_json({"file": str(output), "records": records, "bytes": written})
    else:
        note(f"Wrote {records:,} consent record(s) to {output}.")


def _write_atomically(path: Path, blocks: Any) -> int:
    written = 0
    try:
        descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or Path("."))
    except OSError as exc:
        raise CliError(f"Cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(descriptor, "wb") as handle:
            for block in blocks:
                handle.write(block)
                written += len(block)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return written


def _count_csv_records(path: Path) -> int:
    import csv

    with path.open(newline="", encoding="utf-8") as handle:
        return max(sum(1 for _ in csv.reader(handle)) - 1, 0)


# Audit --------------------------------------------------------------------------------------


@audit_app.command("verify")
@reports_errors
def audit_verify(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Recompute the audit chain of your tenant: exit 0 when intact, 5 when an entry was changed,
    removed or inserted (the first bad entry's seq is printed)."""
    result = services_of(ctx).call("identity", "GET", "/v1/audit/verify")
    if as_json:
        emit_json(result)
    else:
        out().print(key_values("Audit chain", {"valid": "yes" if result["valid"] else "NO",
                                               "entries": result["entries"],
                                               "first_invalid_seq": result["first_invalid_seq"]}))
    if not result["valid"]:
        note(f"[bold red]The audit chain is broken at entry {result['first_invalid_seq']}.[/]")
        raise typer.Exit(exits.AUDIT_INVALID)


# Dead letters -------------------------------------------------------------------------------

QueueArgument = Annotated[str, typer.Argument(help="The consumer's name, e.g. identity, enrichment, campaigns,"
                                                   " campaigns-email (BUS_PREFIX is added).")]
BrokerOption = Annotated[str | None, typer.Option(envvar="BROKER_URL", show_envvar=True,
                                                  help="The broker, e.g. amqp://guest:guest@127.0.0.1:5672//.")]


def _topology(queue: str, broker_url: str | None) -> tuple[str, Any]:
    from shared.deadletters import topology_of

    env = {**os.environ, "BROKER_URL": broker_url or ""}
    if not env["BROKER_URL"]:
        raise CliError("Set BROKER_URL (or --broker-url) to reach the broker.")
    try:
        return topology_of(queue, env)
    except SettingsError as exc:
        raise CliError(str(exc)) from None


def _on_broker(action: Any) -> Any:
    from amqp.exceptions import ChannelError
    from kombu.exceptions import KombuError, OperationalError

    try:
        return action()
    except (OperationalError, ConnectionError) as exc:
        raise Unreachable(f"Cannot reach the broker: {exc}") from None
    except (ChannelError, KombuError) as exc:
        raise CliError(f"The broker refused: {exc} (BUS_PREFIX and BUS_QUEUE_EXPIRES must match the"
                       " deployment's)") from None


@deadletters_app.command("list")
@reports_errors
def deadletters_list(
    queue: QueueArgument,
    broker_url: BrokerOption = None,
    limit: Annotated[int, typer.Option(help="At most this many messages.", min=1)] = 1000,
    as_json: JsonOption = False,
) -> None:
    """List a consumer's dead-lettered messages (they stay where they are)."""
    from shared.deadletters import list_dead

    url, topology = _topology(queue, broker_url)
    found = _on_broker(lambda: list_dead(url, topology, limit=limit))
    if as_json:
        emit_json({"queue": topology.queue_name, "items": found})
        return
    out().print(table(f"{len(found)} dead letter(s) in {topology.queue_name}.dead",
                      ("id", "type", "attempts", "error"),
                      ((e["id"], e["type"], e["attempts"], (e["error"] or "")[:120]) for e in found)))


@deadletters_app.command("replay")
@reports_errors
def deadletters_replay(
    queue: QueueArgument,
    event_id: Annotated[list[str] | None, typer.Option("--id", help="Replay this event id (repeatable).")] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="Replay every dead letter of the consumer.")] = False,
    broker_url: BrokerOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send dead letters back to the consumer's queue with their attempts reset: --all, or the
    given --id values (the others stay dead-lettered)."""
    from shared.deadletters import replay

    if replay_all == bool(event_id):
        raise typer.BadParameter("give either --all or one or more --id", param_hint="--all / --id")
    url, topology = _topology(queue, broker_url)
    count = _on_broker(lambda: replay(url, topology, None if replay_all else set(event_id or ())))
    if as_json:
        emit_json({"queue": topology.queue_name, "replayed": count})
    else:
        out().print(f"Replayed {count} message(s) to {topology.queue_name}.")


if __name__ == "__main__":
    app()
