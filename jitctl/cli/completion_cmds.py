"""`jitctl completion SHELL`: print the script that makes SHELL complete jitctl's words.

The scripts are click's: each calls jitctl back with `_JITCTL_COMPLETE=<shell>_complete` and the
words typed so far (COMP_WORDS, COMP_CWORD), and jitctl answers with commands, options, and VM
and resource group names (jitctl.cli.completion). click older than 8.5 has no PowerShell script:
a small one is registered here for it, speaking the same protocol.
"""

from __future__ import annotations

import os

import click

from jitctl.cli import CONTEXT

SHELLS = ["bash", "zsh", "fish", "powershell"]
COMPLETE_VAR = "_JITCTL_COMPLETE"

# For click < 8.5: the words go in COMP_WORDS, the index of the word under the cursor in
# COMP_CWORD; jitctl answers "type<newline>value<newline>help" per candidate.
POWERSHELL_SOURCE = """\
Register-ArgumentCompleter -Native -CommandName %(prog_name)s -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)
    $saved = @($env:%(complete_var)s, $env:COMP_WORDS, $env:COMP_CWORD)
    $env:%(complete_var)s = 'powershell_complete'
    $env:COMP_WORDS = $commandAst.ToString()
    $env:COMP_CWORD = $commandAst.CommandElements.Count - [int][bool]$wordToComplete
    try { $lines = (& %(prog_name)s 2>$null) -split "`n" }
    finally { $env:%(complete_var)s, $env:COMP_WORDS, $env:COMP_CWORD = $saved }
    for ($i = 0; $i + 2 -lt $lines.Count; $i += 3) {
        if ($lines[$i] -eq 'plain') {
            [System.Management.Automation.CompletionResult]::new(
                $lines[$i + 1], $lines[$i + 1], 'ParameterValue', $lines[$i + 1])
        }
    }
}
"""


def completion_class(shell: str) -> type[click.shell_completion.ShellComplete]:
    from click import shell_completion as sc

    found = sc.get_completion_class(shell)
    if found is not None:
        return found

    class PowerShellComplete(sc.ShellComplete):
        name = "powershell"
        source_template = POWERSHELL_SOURCE

        def get_completion_args(self) -> tuple[list[str], str]:
            words = sc.split_arg_string(os.environ["COMP_WORDS"])
            cword = int(os.environ["COMP_CWORD"])
            return words[1:cword], words[cword] if cword < len(words) else ""

        def format_completion(self, item: sc.CompletionItem) -> str:
            return f"{item.type}\n{item.value}\n_"

    return sc.add_completion_class(PowerShellComplete)


if os.environ.get(COMPLETE_VAR, "").startswith("powershell"):
    completion_class("powershell")  # before click answers PowerShell (click < 8.5 has none)


@click.command(context_settings=CONTEXT)
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the shell completion script for bash, zsh, fish or PowerShell.

    Completes commands, options, and VM and resource group names (listed from Azure with a 2 s
    timeout, cached for 5 minutes). Add the line for your shell to its profile:

    \b
      bash:        eval "$(jitctl completion bash)"
      zsh:         eval "$(jitctl completion zsh)"
      fish:        jitctl completion fish | source
      PowerShell:  jitctl completion powershell | Out-String | Invoke-Expression

    \b
    Example:
      jitctl completion bash > jitctl-completion.bash
    """
    from jitctl.cli.commands import cli

    script = completion_class(shell)(cli, {}, "jitctl", COMPLETE_VAR).source()
    click.echo(script, nl=False)
