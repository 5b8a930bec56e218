"""`veille test` for operators: --labels scoring, --explain, --query, lenient .jsonl input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from tests.conftest import REPO
from tests.pipeline_helpers import write_watchlist

runner = CliRunner()
SHIPPED = REPO / "watchlists"
LABELLED = REPO / "tests" / "data" / "labelled_items.jsonl"
SEED = REPO / "tests" / "data" / "seed_items.jsonl"
SHIPPED_TOPICS = ("power-of-siberia-2", "secondary-sanctions", "joint-declaration")

TOPICS = """\
aliases:
  pipe: ["pipeline*", "gazoduc*"]
topics:
  - id: gas
    title: Gas pipelines to China
    query: '(@pipe SENT China) AND NOT oil'
  - id: talks
    title: Talks in English only
    query: 'talks NEAR/3 (gas OR pipeline*)'
    languages: [en]
"""

# (title, summary, expected topics): gas is tp, fn, fp, tp, tn; talks tp
ITEMS = [
    ("New pipeline to China approved", "", ["gas"]),
    ("Pipeline news", "China reacts to the plan.", ["gas"]),  # a miss: two sentences
    ("Pipeline to China delayed", "Gas, not oil, would flow.", []),  # "oil" excludes it
    ("Gazoduc vers la China : accord", "", ["gas", "talks"]),  # talks missed: no talks word
    ("Weather today", "Sunny.", []),
    ("Pipeline to China: talks on gas resume", "", ["gas", "talks"]),
    ("Trade pipeline with China grows", "Exporters cheer.", []),  # a false positive
]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("VEILLE_WATCHLISTS", "VEILLE_DATABASE_URL", "VEILLE_TELEGRAM_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("VEILLE_DATABASE_URL", f"sqlite:///{tmp_path}/cli.db")


@pytest.fixture()
def small(tmp_path: Path) -> tuple[Path, Path]:
    wl = write_watchlist(tmp_path / "wl", [("A", "https://a.example/rss")], topics=TOPICS)
    data = tmp_path / "labelled.jsonl"
    data.write_text("".join(json.dumps({"title": t, "summary": s, "link": f"https://x.example/{i}",
                                        "lang": "en", "topics": topics}) + "\n"
                            for i, (t, s, topics) in enumerate(ITEMS)), encoding="utf-8")
    return wl, data


def test_scores_per_topic_with_every_miss(small) -> None:
    wl, data = small
    result = runner.invoke(app, ["test", "-w", str(wl), "--labels", str(data)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "gas: precision 0.75  recall 0.75  (tp 3, fp 1, fn 1)",
        "  FP Trade pipeline with China grows  [branch 1: pipeline, China]",
        "  FN Pipeline news  [no branch matched]",
        "talks: precision 1.00  recall 0.50  (tp 1, fp 0, fn 1)",
        "  FN Gazoduc vers la China : accord  [no branch matched]",
        "7 labelled items",
    ]


def test_scores_as_json_and_thresholds_set_the_exit_code(small) -> None:
    wl, data = small
    ok = runner.invoke(app, ["test", "-w", str(wl), "--labels", str(data), "--json",
                             "--min-precision", "0.75", "--topic", "gas"])
    assert ok.exit_code == 0, ok.output
    [row] = [json.loads(line) for line in ok.output.splitlines()]
    assert {k: row[k] for k in ("topic", "precision", "recall", "tp", "fp", "fn")} == {
        "topic": "gas", "precision": 0.75, "recall": 0.75, "tp": 3, "fp": 1, "fn": 1}
    assert [(m["kind"], m["title"], m["terms"], m["branches"], m["nearly"])
            for m in row["misses"]] == [
        ("FP", "Trade pipeline with China grows", ["pipeline", "China"], [1], []),
        ("FN", "Pipeline news", [], [], [])]
    low = runner.invoke(app, ["test", "-w", str(wl), "--labels", str(data),
                              "--min-recall", "0.76"])
    assert low.exit_code == 1
    assert "gas: precision 0.75  recall 0.75  (tp 3, fp 1, fn 1)  BELOW THRESHOLD" in low.output


def test_below_threshold_exits_1_through_the_console_script(small) -> None:
    wl, data = small
    env = {**os.environ, "VEILLE_DATABASE_URL": "sqlite:////nonexistent/never.db"}
    proc = subprocess.run([str(Path(sys.executable).parent / "veille"), "test", "-w", str(wl),
                           "--labels", str(data), "--min-precision", "0.9"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "BELOW THRESHOLD" in proc.stdout


@pytest.mark.parametrize("data", [LABELLED, SEED], ids=["labelled", "seed"])
def test_the_shipped_topics_meet_their_targets_on_the_labelled_items(data: Path) -> None:
    """A watchlist edit that loses recall or precision fails here."""
    result = runner.invoke(app, ["test", "-w", str(SHIPPED), "--labels", str(data), "--json",
                                 "--min-precision", "0.95", "--min-recall", "0.90"])
    rows = {r["topic"]: r for r in map(json.loads, result.output.splitlines())}
    assert set(rows) == set(SHIPPED_TOPICS)
    for topic, row in rows.items():
        assert row["precision"] >= 0.95 and row["recall"] >= 0.90, (topic, row["misses"])
        assert row["tp"] >= 50
    assert result.exit_code == 0


def test_the_labelled_items_are_many_varied_and_labelled() -> None:
    rows = [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 400
    assert {r["lang"] for r in rows} == {"en", "fr", "ru", "de", "zh", "es", "uk", "cs"}
    assert {r["split"] for r in rows} == {"dev", "held-out", "late", "held-out-2"}
    assert all(set(r["topics"]) <= set(SHIPPED_TOPICS) for r in rows)
    assert sum(not r["topics"] for r in rows) >= 120  # hard negatives
    assert len({r["title"] for r in rows}) == len(rows)


# ------------------------------------------------------------ lenient .jsonl


def test_an_unreadable_field_is_a_warning_and_the_item_is_still_tested(small, tmp_path) -> None:
    wl, _ = small
    data = tmp_path / "items.jsonl"
    data.write_text(
        '{"title": "New pipeline to China", "published": "sometime in July", "lang": 5}\n'
        '"just a string"\n'
        '{"link": "https://x.example/empty", "published": "2024-07-02"}\n'
        '{"title": "Pipeline to China", "summary": 12, "published": "2024-07-02T10:00:00+02:00",'
        ' "source": "Wire"}\n', encoding="utf-8")
    result = runner.invoke(app, ["test", "-w", str(wl), str(data)])
    lines = result.output.splitlines()
    assert f"{data}:1: field 'published' is not a date (\"sometime in July\"); ignored, the " \
           "item is still tested" in lines
    assert f"{data}:1: field 'lang' is not a string (5); ignored, the item is still tested" \
        in lines
    assert f"{data}:2: not a JSON item object (not an object); skipped" in lines
    assert f"{data}:3: an item needs a title or a summary; skipped" in lines
    assert f"{data}:4: field 'summary' is not a string (12); ignored, the item is still " \
           "tested" in lines
    assert "Wire · 2024-07-02 08:00 UTC" in result.output  # the feed parser's date reader
    assert lines[-1].startswith("2 items, 2 matched (gas 2, talks 0)")
    assert result.exit_code == 1  # two lines were skipped


# ------------------------------------------------------------ --query and --explain


def test_a_query_tried_on_a_sentence_without_yaml(tmp_path: Path) -> None:
    yes = runner.invoke(app, ["test", "-w", str(SHIPPED), "--query", "@pos2 SENT ~цена",
                              "Новости\nЦены на «Силу Сибири 2» обсудят. Другое."])
    assert yes.exit_code == 0, yes.output
    assert yes.output.splitlines() == [
        "✔ query  text · undated", "  Новости", "  Цены на «Силу Сибири 2» обсудят. Другое.",
        "  query: Цены, Силу Сибири 2", "1 items, 1 matched (query 1)"]
    no = runner.invoke(app, ["test", "-w", str(SHIPPED), "--query", "@pos2 SENT ~цена",
                             "Новости\nО «Силе Сибири 2». Цены растут.", "--all", "--json"])
    assert no.exit_code == 0
    assert json.loads(no.output)["topics"] == []


def test_a_query_error_is_shown_with_its_position(tmp_path: Path) -> None:
    result = runner.invoke(app, ["test", "-w", str(tmp_path / "none"), "--query",
                                 "gas NEAR5 China", "some text"])
    assert result.exit_code == 2
    assert result.output.splitlines()[:3] == [
        '--query: did you mean NEAR/5? (to search for the word, write it in quotes: "NEAR5")',
        "gas NEAR5 China", "    ^"]


def test_explain_shows_branches_missing_parts_and_scope(small, tmp_path: Path) -> None:
    wl, _ = small
    data = tmp_path / "items.jsonl"
    data.write_text(
        '{"title": "Pipeline to China", "summary": "Not oil this time.", "lang": "en"}\n'
        '{"title": "Talks on gas", "lang": "fr"}\n', encoding="utf-8")
    result = runner.invoke(app, ["test", "-w", str(wl), str(data), "--explain"])
    assert result.exit_code == 0, result.output
    assert "  gas: branch 1 nearly matched; excluded by NOT oil; found Pipeline, China" \
        in result.output
    assert "  talks: out of scope: language 'fr' is not in the topic's languages [en]" \
        in result.output
    as_json = runner.invoke(app, ["test", "-w", str(wl), str(data), "--explain", "--json"])
    rows = [json.loads(line) for line in as_json.output.splitlines()]
    assert rows[0]["explain"] == [{"topic": "gas", "branches": [{
        "branch": 1, "query": "(@pipe SENT China) AND (NOT oil)", "matched": False,
        "found": ["Pipeline", "China"], "missing": [], "excluded_by": ["NOT oil"]}]}]
    assert rows[1]["explain"] == [{"topic": "talks", "out_of_scope":
                                   "language 'fr' is not in the topic's languages [en]"}]


def test_an_unknown_topic_is_an_error(small) -> None:
    wl, data = small
    result = runner.invoke(app, ["test", "-w", str(wl), str(data), "--topic", "nosuch"])
    assert result.exit_code == 2
    assert "unknown topic 'nosuch'; known: gas, talks" in result.output


def test_a_false_negative_says_what_its_closest_branch_lacked(tmp_path: Path) -> None:
    topics = ("topics:\n  - id: t\n    title: T\n"
              "    query: '(pipeline SENT China) OR (Gazprom AND CNPC AND Mongolia)'\n")
    wl = write_watchlist(tmp_path / "wl", [("A", "https://a.example/rss")], topics=topics)
    data = tmp_path / "l.jsonl"
    data.write_text('{"title": "Gazprom and CNPC meet again", "topics": ["t"]}\n',
                    encoding="utf-8")
    result = runner.invoke(app, ["test", "-w", str(wl), "--labels", str(data), "--json"])
    [row] = [json.loads(line) for line in result.output.splitlines()]
    assert row["misses"] == [{"kind": "FN", "title": "Gazprom and CNPC meet again", "link": "",
                              "terms": [], "branches": [],
                              "nearly": [{"branch": 2, "missing": ["Mongolia"],
                                          "excluded_by": []}]}]
    text = runner.invoke(app, ["test", "-w", str(wl), "--labels", str(data)])
    assert "  FN Gazprom and CNPC meet again  [no branch matched; branch 2 lacked Mongolia]" \
        in text.output.splitlines()
