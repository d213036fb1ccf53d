"""Every command's --help renders (argparse formats help strings with %, so a bare "95%" breaks it)."""
from __future__ import annotations

import pytest

from unlearnlm.cli import build_parser, main


def _commands() -> list[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sorted(sub.choices)


def test_the_command_list_is_read_from_the_parser():
    assert {"run", "compare", "eval", "report"} <= set(_commands())


@pytest.mark.parametrize("argv", [[]] + [[c] for c in _commands()])
def test_help_renders_and_exits_zero(argv, capsys):
    with pytest.raises(SystemExit) as done:
        main([*argv, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: unlearnlm") and "--help" in out
