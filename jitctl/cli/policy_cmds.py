"""policy validate | plan | apply | export | schema, and role show."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from jitctl.app import App
from jitctl.cli.completion import complete_group
from jitctl.cli.globalopts import CONTEXT
from jitctl.cli.output import emit, warn
from jitctl.errors import BadInput, ExitCode, suggest
from jitctl.textsafe import printable

if TYPE_CHECKING:
    from jitctl.services.approvalsplan import ApprovalsPlan
    from jitctl.services.plan import Plan

PATH = click.argument("path", required=False, default="policies", type=click.Path(path_type=Path))


def load(path: Path, prune: bool = False, allow_empty_prune: bool = False) -> list:
    """The policy files, or exit 2 before any call to Azure: bad files, no files (unless
    --prune, which then names what an empty set would delete), a flag without --prune."""
    from jitctl.policyfile import load_all, no_policy_files

    if allow_empty_prune and not prune:
        raise BadInput("--allow-empty-prune goes with --prune.", "Add --prune, or leave it out.")
    files, problems = load_all(path)
    if problems:
        for p in problems:
            click.echo(printable(p), err=True)
        lists = suggest("policy", "validate", printable(str(path)))
        raise BadInput(
            f"{len(problems)} problem(s) in the policy files.",
            f"Fix them; to list them: {lists}",
            [lists],
        )
    if not files and not prune:
        raise no_policy_files(path)
    return files


def planned(
    app: App,
    path: Path,
    prune: bool,
    allow_empty_prune: bool,
    broker_url: str | None = None,
    baseline: Path | None = None,
) -> Plan:
    import dataclasses

    from jitctl.services.plan import make_plan

    files = load(path, prune, allow_empty_prune)
    approvals = approvals_plan(app, files, broker_url, baseline)  # before Azure: fails fast
    result = make_plan(
        app.gateway(),
        files,
        app.subscription_ids(),
        prune,
        allow_empty_prune=allow_empty_prune,
        source=f"'{printable(str(path))}'",
    )
    return dataclasses.replace(result, approvals=approvals)


def approvals_plan(
    app: App, files: list, broker_url: str | None, baseline: Path | None
) -> ApprovalsPlan | None:
    """The files' `approvals:` against the broker's rules or another folder's; None, with a
    note when the files have some, when neither is given (Azure stores no approval rule)."""
    from jitctl.broker.rulesplan import compare_files, folder_rules

    if broker_url and baseline:
        raise BadInput(
            "--broker and --approvals-baseline both name the approvals to compare with.",
            "Give one.",
        )
    if baseline is not None:
        return compare_files(files, folder_rules(baseline), f"the files in {baseline}")
    if broker_url:
        from jitctl.cli.broker_calls import client

        running = client(app, broker_url).call("GET", "/rules")["rules"]
        return compare_files(files, running, f"the broker at {broker_url}")
    if any(f.model.approvals for f in files):
        warn(
            app,
            "approvals: not compared (Azure stores no approval rule): pass --broker URL for the "
            "running broker's rules, or --approvals-baseline DIR.",
        )
    return None


ALLOW_EMPTY_PRUNE = click.option(
    "--allow-empty-prune",
    is_flag=True,
    help="With --prune: go on when the files select no VM (or there are none), which empties "
    "and deletes every JIT policy in scope (without it: exit 2, naming them).",
)


@click.group(context_settings=CONTEXT)
def policy() -> None:
    """Policies as code: YAML files in policies/, validated, planned and applied safely."""


@policy.command(context_settings=CONTEXT)
@PATH
@click.pass_obj
def validate(app: App, path: Path) -> None:
    """Check policy files; every problem at once, as file:line: key: what is wrong.

    \b
    Example:
      jitctl policy validate policies/
    """
    from jitctl.policyfile import load_all, no_policy_files, policy_paths

    count = len(policy_paths(path))
    if not count:
        raise no_policy_files(path)
    _, problems = load_all(path)
    for p in problems:
        click.echo(printable(p), err=app.output != "table")
    if problems:
        raise BadInput(f"{len(problems)} problem(s) in {path}.")
    emit(app, {"valid": True, "files": count}, lambda: f"{count} policy file(s) valid.")


@policy.command(context_settings=CONTEXT)
@PATH
@click.option(
    "--prune",
    is_flag=True,
    help="Also plan removing the VMs no file matches, in the resource groups the files cover.",
)
@ALLOW_EMPTY_PRUNE
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 when nothing changes, 10 when something does (2 stays bad input).",
)
@click.option(
    "--broker",
    "broker_url",
    metavar="URL",
    help="Also compare the files' approvals: with the rules this broker runs (an admin's or "
    "auditor's token).",
)
@click.option(
    "--approvals-baseline",
    type=click.Path(path_type=Path),
    metavar="DIR",
    help="Also compare the files' approvals: with the policy files in DIR (e.g. the main "
    "branch's).",
)
@click.pass_context
def plan(
    ctx: click.Context,
    path: Path,
    prune: bool,
    allow_empty_prune: bool,
    detailed_exitcode: bool,
    broker_url: str | None,
    approvals_baseline: Path | None,
) -> None:
    """Show, per JIT policy, the VMs and ports to add, change and remove; with --broker or
    --approvals-baseline, the approval rules to add, change and remove too.

    \b
    Without subscriptions: in its file, a target selects VMs in each chosen subscription
    (-s repeated, --all-subscriptions; else the default one). Azure stores no approval rule:
    --broker compares the files' approvals: with what the running broker enforces.

    \b
    Examples:
      jitctl policy plan policies/ --detailed-exitcode
      jitctl policy plan policies/ --all-subscriptions --prune
    """
    app: App = ctx.obj
    result = planned(app, path, prune, allow_empty_prune, broker_url, approvals_baseline)
    emit(app, result)
    if detailed_exitcode and result.changed:
        ctx.exit(int(ExitCode.CHANGES_PENDING))


@policy.command(context_settings=CONTEXT)
@PATH
@click.option("--yes", is_flag=True, help="Apply without asking.")
@click.option(
    "--prune",
    is_flag=True,
    help="Remove from JIT policies the VMs no file matches, in the resource groups the files "
    "cover.",
)
@ALLOW_EMPTY_PRUNE
@click.pass_obj
def apply(app: App, path: Path, yes: bool, prune: bool, allow_empty_prune: bool) -> None:
    """Apply the plan with merge-safe writes: one read-merge-write per JIT policy that changes.

    VMs no file matches are left alone unless --prune, which reaches only the resource groups
    the files cover (their whole subscriptions for targets by tags alone); files that select
    no VM are refused unless --allow-empty-prune. Asks first on a terminal unless --yes.

    \b
    Examples:
      jitctl policy apply policies/ --yes
      jitctl policy apply policies/ --all-subscriptions --yes
    """
    from jitctl.cli.render import render
    from jitctl.services.plan import apply_plan

    result = planned(app, path, prune, allow_empty_prune)
    if result.changed and not yes:
        if not app.can_ask():
            raise BadInput("Not applying without a terminal to confirm on.", "Pass --yes.")
        click.echo(render(result, "table", app.clock.now()), err=True)
        click.confirm("Apply these changes?", abort=True, err=True)
    emit(app, apply_plan(app.gateway(), result, clock=app.clock))


@policy.command(context_settings=CONTEXT)
@click.option(
    "-g",
    "--resource-group",
    help="Only this resource group's policies.",
    shell_complete=complete_group,
)
@click.option("--all", "all_", is_flag=True, help="Every policy of the subscription.")
@click.option(
    "--file",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the YAML to this file instead of stdout.",
)
@click.pass_obj
def export(app: App, resource_group: str | None, all_: bool, out: Path | None) -> None:
    """Write today's JIT configuration as policy YAML (export, then plan, shows no change).

    \b
    Example:
      jitctl policy export -g rg-prod --file policies/rg-prod.yaml
    """
    from jitctl.services.export import check_output_file, export_yaml, fleet_document, yaml_text

    several = app.all_subscriptions or len(app.subscriptions) > 1
    if not resource_group and not all_ and not several:
        raise BadInput("Say what to export.", "Pass -g RG, or --all for the whole subscription.")
    if out is not None:
        check_output_file(out)
    if several:
        subs = app.subscription_ids()
        scope = f"resource group {resource_group} in " if resource_group else ""
        doc = fleet_document(app.fleet(), subs, resource_group)
        text = yaml_text(doc, f"{scope}{len(subs)} subscription(s)")
    else:
        text = export_yaml(app.gateway(), app.subscription_id, resource_group)
    if out is None:
        click.echo(text, nl=False)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        warn(app, f"Wrote {out}.")


@policy.command(context_settings=CONTEXT)
@click.pass_obj
def schema(app: App) -> None:
    """Print the JSON Schema of policy files (for editors).

    \b
    Example:
      jitctl policy schema > policies/jitctl-policy.schema.json
    """
    from jitctl.policyfile import json_schema

    data = json_schema()
    emit(app, data, lambda: json.dumps(data, indent=2))


@click.group(context_settings=CONTEXT)
def role() -> None:
    """Least-privilege custom role definitions for JIT requesters, policy admins and the broker."""


@role.command(context_settings=CONTEXT)
@click.argument("kind", type=click.Choice(["requester", "admin", "broker"]))
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    help="Assignable scope, repeatable: a landing zone's spokes and its hub, where Azure "
    "Firewall lives (default: the current subscription).",
)
@click.pass_obj
def show(app: App, kind: str, scopes: tuple[str, ...]) -> None:
    """Print a role definition ready for `az role definition create --role-definition @FILE`.

    \b
    Example:
      jitctl role show requester > requester.json && az role definition create --role-definition @requester.json
      jitctl role show broker --scope /subscriptions/00000000-0000-0000-0000-000000000000
    """
    from jitctl.roles import role_definition

    data = role_definition(kind, list(scopes) or [f"/subscriptions/{app.subscription_id}"])
    emit(app, data, lambda: json.dumps(data, indent=2))
