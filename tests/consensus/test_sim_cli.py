"""The ``dmchain sim`` command: output format, exit status, exact replay."""

from __future__ import annotations

import shlex

import pytest

from consensus.sim.cmd import parse_faults, parse_seeds
from node.cli import main

SUMMARY = "sim: {s} seeds, "


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    rc = main(argv)
    return rc, capsys.readouterr().out.strip().splitlines()


def test_passing_run_prints_only_the_summary(capsys: pytest.CaptureFixture[str]) -> None:
    rc, lines = run_cli(["sim", "--seeds", "3:5", "--blocks", "15", "--faults", "all"], capsys)
    assert rc == 0
    assert len(lines) == 1
    assert lines[0].startswith("sim: 2 seeds, ")
    assert lines[0].endswith(" evidence, 0 violations")


def test_failing_seed_is_reported_and_replays_identically(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [
        "sim",
        "--seeds",
        "0:8",
        "--blocks",
        "20",
        "--weak-quorum-for-tests",
        "--all-to-all-votes",
        "--faults",
        "equivocate,doublevote",
    ]
    rc, lines = run_cli(argv, capsys)
    assert rc == 1
    failures = [ln for ln in lines if ln.startswith("seed ")]
    assert failures and "safety" in failures[0]
    assert lines[-1].startswith("sim: 8 seeds, ")
    assert lines[-1].endswith(f"{len(failures)} violations")
    replay = failures[0].split(" | replay: ", 1)[1]
    assert replay.startswith("dmchain sim ") and "--all-to-all-votes" in replay
    rc2, again = run_cli(shlex.split(replay)[1:], capsys)
    assert rc2 == 1
    assert again[0] == failures[0]


def test_argument_parsing() -> None:
    assert parse_seeds("0:200") == range(200)
    assert parse_seeds("7") == range(7, 8)
    with pytest.raises(ValueError):
        parse_seeds("5:5")
    assert "drop" in parse_faults("all")
    assert parse_faults("none") == ()
    with pytest.raises(ValueError):
        parse_faults("drop,meteor")


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--seeds", "9:1"]) == 2
    assert main(["sim", "--faults", "meteor"]) == 2


@pytest.mark.slow
def test_two_hundred_seeds_all_faults(capsys: pytest.CaptureFixture[str]) -> None:
    rc, lines = run_cli(
        [
            "sim",
            "--pbft",
            "10",
            "--pos",
            "8",
            "--seeds",
            "0:200",
            "--faults",
            "all",
            "--blocks",
            "50",
            "--jobs",
            "2",
        ],
        capsys,
    )
    assert lines[-1].endswith(" 0 violations"), lines[:5]
    assert rc == 0
