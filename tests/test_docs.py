"""Meta-tests: the README documents every command, CI runs the README's test command, `__all__`
is exact, and the key never reaches output (sqlite-utils test_docs.py, httpx exported members)."""
from __future__ import annotations

import re

import bulkcrm
from bulkcrm.cli import cli
from tests.conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")


def test_every_command_has_help_and_is_in_the_readme(runner):
    for name, command in cli.commands.items():
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0 and command.help, name
        assert f"bulkcrm {name}" in README, f"README does not document `bulkcrm {name}`"


def test_readme_setup_is_two_commands_and_ci_runs_its_test_command():
    block = re.search(r"## Set-up \(two commands\)\n\n```sh\n(.*?)```", README, re.S).group(1)
    lines = [ln for ln in block.splitlines() if ln.strip()]
    assert len(lines) == 2
    assert "pip install -e '.[dev]'" in lines[0] and "bulkcrm import samples/organizations.csv" in lines[0]
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert lines[1] in ci and "python3 -m venv .venv" in ci and "pip install --quiet -e '.[dev]'" in ci


def test_public_api_is_exact():
    assert sorted(bulkcrm.__all__) == sorted(
        ["load_template", "read", "validate", "plan", "apply", "export", "Client", "Plan", "Report"])
    for name in bulkcrm.__all__:
        assert getattr(bulkcrm, name).__doc__, name


def test_every_template_in_the_repo_loads():
    from bulkcrm.template import load_template
    for path in sorted((REPO / "templates").glob("*.yaml")):
        assert load_template(path).mappings, path
