"""`harvester completion SHELL` and `harvester man`: shell completion and a man page,
both generated from the one argparse parser, so neither can drift from the commands.

Completion is argcomplete's: the script printed for bash, zsh or fish asks
`harvester` itself for the candidates (commands, flags, choices, file paths), so it
stays right across upgrades; install it once (see the README). The man page is
argparse-manpage's rendering of the same parser, with the examples, the exit codes and
the config search order each in a section of its own, once (the `--help` epilog that
holds them too is left out of the page). argcomplete and argparse-manpage are imported
when these commands run, not by every command that imports `SHELLS`.
"""

from __future__ import annotations

import argparse

from harvester import __version__
from harvester.commands.helptext import EXIT_CODES, FILES, OVERVIEW
from harvester.model import ExitCode

SHELLS = ("bash", "zsh", "fish")


def cmd_completion(shell: str) -> ExitCode:
    """Print the completion script for `shell` (one of SHELLS)."""
    import argcomplete

    print(argcomplete.shellcode(["harvester"], shell=shell), end="")
    return ExitCode.OK


def cmd_man(parser: argparse.ArgumentParser) -> ExitCode:
    """Print the man page (roff, section 1) of `parser`."""
    print(man_page(parser), end="")
    return ExitCode.OK


def man_page(parser: argparse.ArgumentParser) -> str:
    """The page: each command with its options, then EXAMPLES, EXIT STATUS and FILES,
    each once (argparse-manpage would print the parser's epilog, which holds all
    three for `--help`, as a section of its own too)."""
    from argparse_manpage.manpage import Manpage

    parser.epilog = None
    page = Manpage(
        parser,
        {
            "prog": "harvester",
            "version": __version__,
            "project_name": "altmetric-harvester",
            "manual_section": 1,
            "manual_title": "altmetric-harvester manual",
            "description": parser.description,
        },
    )
    page.add_section("examples", "=", OVERVIEW.partition("\n")[2].rstrip())
    page.add_section("exit status", "=", EXIT_CODES.partition("\n")[2])
    page.add_section("files", "=", FILES.partition("\n")[2])
    return str(page)
