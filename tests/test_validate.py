"""`veille validate` never prints a traceback: whatever an operator types as a query, it is
accepted (exit 0) or every problem is reported at file:line:col (exit 1)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from bot.cli import app
from tests.test_cli_errors import COMMAND, env_for

runner = CliRunner()

FEEDS = "feeds:\n  - url: https://news.example/rss\n    name: Wire\n"
ALIASES = {"pos2": ["Power of Siberia 2", "Сила Сибири 2"]}

# pieces of the query language (and of its usual misspellings) to mix with random text
TOKENS = ['"', "'", "(", ")", "*", "AND", "OR", "NOT", "and", "or", "not", "NEAR/3", "NEAR5",
          "near/2", "NEAR", "/", "title:", "summary:", "@pos2", "@pos", "@", "«", "»", "“", "”",
          "„", "Сила", "西伯利亚", "gas", "Power of Siberia", "\\", ":", "-", "  "]
printable = st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"))
queries = st.one_of(
    st.text(printable, max_size=40),
    st.lists(st.one_of(st.sampled_from(TOKENS), st.text(printable, min_size=1, max_size=6)),
             max_size=12).map(" ".join),
)


def write_topics(directory: Path, query: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "feeds.yaml").write_text(FEEDS, encoding="utf-8")
    doc = {"aliases": ALIASES, "topics": [{"id": "t", "title": "T", "query": query}]}
    path = directory / "topics.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, width=60), encoding="utf-8")
    return path


def check_output(topics: Path, code: int, output: str) -> None:
    """Exit 0, or exit 1 with every problem at a real file:line:col (pointer lines indented)."""
    assert "Traceback" not in output
    assert code in (0, 1), output
    if code == 0:
        assert output.startswith("ok: ")
        return
    lines = output.splitlines()
    assert re.fullmatch(r"\d+ problems? in .*", lines[-1]), output
    n_lines = len(topics.read_text(encoding="utf-8").splitlines())
    problems = [x for x in lines[:-1] if not x.startswith("    ")]
    assert problems, output
    for line in problems:
        m = re.match(re.escape(str(topics)) + r":(\d+):(\d+): \S", line)
        assert m, line
        assert 1 <= int(m.group(1)) <= n_lines and int(m.group(2)) >= 1, line


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=queries)
def test_any_query_is_accepted_or_reported_at_a_position(tmp_path: Path, query: str) -> None:
    topics = write_topics(tmp_path / "wl", query)
    assert yaml.safe_load(topics.read_text(encoding="utf-8"))["topics"][0]["query"] == query
    result = runner.invoke(app, ["validate", str(tmp_path / "wl")])
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        query, result.exception)
    check_output(topics, result.exit_code, result.output)


@pytest.mark.parametrize("query", [
    "«Arctic LNG 2» AND sanctions", "NEAR5 gas", "(Power OR Siberia", "gas and Mongolia",
    ")))", '"unclosed phrase', "@nosuch OR gas", "title:", "NOT", "„Kraft Sibiriens 2“",
])
def test_validate_through_the_console_script(tmp_path: Path, query: str) -> None:
    topics = write_topics(tmp_path / "wl", query)
    result = subprocess.run([*COMMAND, "validate", str(tmp_path / "wl")], env=env_for(tmp_path),
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    check_output(topics, result.returncode, result.stdout + result.stderr)
