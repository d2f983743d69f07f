"""The README stays true: its configuration table is the schema's, and its quick start is what CI runs."""

import re
from pathlib import Path

from rhemo.train.config import markdown_table

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_configuration_table_matches_the_schema():
    block = re.search(r"<!-- config-table:start -->\n(.*)\n<!-- config-table:end -->", README, re.S)
    assert block, "README lost its configuration table markers"
    assert block.group(1) == markdown_table(), "regenerate with: python -m rhemo.train.config"


def test_quick_start_has_two_commands_and_ci_runs_the_test_one():
    quick = re.search(r"## Quick start\n+```bash\n(.*?)```", README, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in quick.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "\nmake test\n" in ci
