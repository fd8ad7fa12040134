"""``ar-envs ... --help`` shows every option's default and no reStructuredText markup."""

from __future__ import annotations

import pytest

from ar_agents.cli import build_parser


def _help(command: str | None) -> str:
    parser = build_parser()
    if command is None:
        return parser.format_help()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices[command].format_help()


@pytest.mark.parametrize("command", [None, "list", "sweep", "report", "demo", "bench"])
def test_help_has_no_rst_markup(command):
    assert "``" not in _help(command)


def test_help_shows_defaults():
    text = " ".join(_help("sweep").split())  # argparse wraps lines
    for shown in ("(default: 3)", "(default: 1000)", "(default: 20000)", "(default: results.jsonl)", "(default: 1)"):
        assert shown in text
    assert "(default: None)" not in text and "(default: [])" not in text and "(default: False)" not in text
    assert "path-star: path_length" in text  # what --horizons sets per task
    demo = " ".join(_help("demo").split())
    assert "(default: 5)" in demo and "(default: results/demo.jsonl)" in demo and "(default: results)" in demo
    report = " ".join(_help("report").split())
    assert "(default: next to the results file)" in report and "(default: None)" not in report
    bench = " ".join(_help("bench").split())
    assert "(default 5)" in bench and "(default: 5)" not in bench  # said once
