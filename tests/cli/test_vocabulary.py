"""One vocabulary: every option of every command means what ``s2f_cli.options.VOCABULARY`` says,
one name per meaning, the same limits everywhere, and README's option table is that table."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import typer

from s2f_cli.app import app
from s2f_cli.options import SHORT, VOCABULARY

README = Path(__file__).resolve().parents[2] / "README.md"
TABLE_ROW = re.compile(r"^\| `(--[a-z0-9-]+)`(?:, `(-[A-Za-z])`)? \| (.+) \| (.+) \|$")


def command_options() -> dict[str, list]:
    """Each sub-command's options (``--help`` left out)."""
    group = typer.main.get_command(app)
    return {
        name: [p for p in command.params if p.param_type_name == "option" and p.name != "help"]
        for name, command in group.commands.items()
    }


def long_flag(param) -> str:  # noqa: ANN001 - a Typer option
    return max((o for o in param.opts if o.startswith("--")), key=len)


def usage() -> dict[str, set[str]]:
    """Long flag -> the commands that take it."""
    used: dict[str, set[str]] = defaultdict(set)
    for command, params in command_options().items():
        for param in params:
            used[long_flag(param)].add(command)
    return used


def test_every_option_says_its_vocabulary_meaning() -> None:
    for command, params in command_options().items():
        for param in params:
            flag = long_flag(param)
            assert flag in VOCABULARY, f"s2f {command} {flag}: not in the vocabulary"
            assert (param.help or "").startswith(VOCABULARY[flag]), (command, flag, param.help)
            shorts = sorted(o for o in param.opts if not o.startswith("--"))
            assert shorts == ([SHORT[flag]] if flag in SHORT else []), (command, flag, shorts)
            assert not param.secondary_opts, f"s2f {command} {flag}: also {param.secondary_opts}"


def test_one_name_per_meaning_and_no_unused_words() -> None:
    meanings = list(VOCABULARY.values())
    assert len(meanings) == len(set(meanings))
    assert len(set(SHORT.values())) == len(SHORT)
    assert set(VOCABULARY) == set(usage()), set(VOCABULARY) ^ set(usage())


def test_an_option_has_the_same_kind_and_limits_everywhere() -> None:
    seen: dict[str, tuple] = {}
    for command, params in command_options().items():
        for param in params:
            flag = long_flag(param)
            shape = (param.is_flag, param.min, param.max)
            assert seen.setdefault(flag, shape) == shape, (command, flag, seen[flag], shape)


def test_readme_table_is_the_vocabulary() -> None:
    rows = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        match = TABLE_ROW.match(line)
        if match:
            flag, short, meaning, commands = match.groups()
            rows[flag] = (short, meaning.replace("\\|", "|"), commands)
    used = usage()
    assert set(rows) == set(VOCABULARY), set(rows) ^ set(VOCABULARY)
    for flag, (short, meaning, commands) in rows.items():
        assert short == SHORT.get(flag), flag
        assert meaning == VOCABULARY[flag].replace("`", ""), flag
        assert set(commands.split(", ")) == used[flag], (flag, commands)
