"""audit: the fleet's JIT posture over one or more subscriptions, for people and CI gates."""

from __future__ import annotations

from pathlib import Path

import click

from jitctl.app import App
from jitctl.cli import ResultShown
from jitctl.cli.globalopts import CONTEXT
from jitctl.cli.output import emit, warn

FILE = click.Path(dir_okay=False, path_type=Path)


@click.command(context_settings=CONTEXT)
@click.option(
    "--fail-on",
    default="high",
    show_default=True,
    metavar="SEVERITIES",
    help="Exit 11 when a finding has one of these severities (high, medium, low, "
    "comma-separated; none: never).",
)
@click.option("--sarif", "sarif_file", type=FILE, help="Also write the findings as SARIF 2.1.0.")
@click.option("--csv", "csv_file", type=FILE, help="Also write the findings as CSV.")
@click.pass_obj
def audit(app: App, fail_on: str, sarif_file: Path | None, csv_file: Path | None) -> None:
    """Audit JIT over subscriptions: unprotected VMs, rules that bypass JIT, wide policies.

    For every VM: protected by JIT or not and why not (no NSG, in no policy); policy entries
    for VMs that no longer exist; management ports (22, 3389, 5985, 5986 and the policy's)
    open to the Internet by a rule that is not JIT's (verify's NSG evaluation); policy ports
    open to any source or for 24 hours; grants open now. Read from Azure Resource Graph,
    which can lag minutes behind.

    \b
    Example:
      jitctl audit --all-subscriptions --sarif jit.sarif --csv jit.csv
      jitctl audit --all-subscriptions --fail-on high,medium -o json  # exit 11
    """
    from jitctl.cli.reports import csv_text, sarif_text
    from jitctl.errors import FindingsFound
    from jitctl.services.audit import audit as run
    from jitctl.services.audit import parse_fail_on
    from jitctl.services.export import check_output_file

    severities = parse_fail_on(fail_on)
    for path in (sarif_file, csv_file):
        if path is not None:
            check_output_file(path)
    now = app.clock.now()
    result = run(app.fleet(), app.subscription_ids(), now)
    for path, write in ((sarif_file, sarif_text), (csv_file, csv_text)):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(write(result, now), encoding="utf-8")
            warn(app, f"Wrote {path}.")
    emit(app, result)
    failing = result.failing(severities)
    if failing:
        written = [str(p) for p in (sarif_file, csv_file) if p is not None]
        where = (
            "See the report"
            if (app.output or "table") != "none"
            else f"See {' and '.join(written)}"
            if written
            else "Run again without '-o none' to see them"  # no report was printed
        )
        raise ResultShown(
            FindingsFound(
                f"{len(failing)} finding(s) of severity {', '.join(severities)}.",
                f"{where}; --fail-on chooses the severities that fail.",
            )
        )
