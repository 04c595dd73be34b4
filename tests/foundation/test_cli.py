"""The dmchain command line: every registered sub-command loads and is listed."""

from __future__ import annotations

import subprocess
import sys

from node.cli import SUBCOMMANDS, build_parser, main


def test_every_subcommand_is_listed_in_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "node.cli", "--help"], capture_output=True, text=True, check=True
    )
    for name, _module, _help in SUBCOMMANDS:
        assert name in result.stdout


def test_parser_builds_and_version_runs(capsys) -> None:
    build_parser()
    assert main(["version"]) == 0
    assert "dmchain" in capsys.readouterr().out


def test_no_command_prints_help_and_fails(capsys) -> None:
    assert main([]) == 2
    assert "usage" in capsys.readouterr().out
