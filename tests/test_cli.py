"""The operator CLI, in process: validate, test (over the real corpus), once, alerts, settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from tests.conftest import REPO, corpus_files
from tests.pipeline_helpers import EN_ITEMS, FR_ITEMS, RU_ITEMS, rss, write_watchlist

runner = CliRunner()
SHIPPED = REPO / "watchlists"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("VEILLE_WATCHLISTS", "VEILLE_DATABASE_URL", "VEILLE_TELEGRAM_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("VEILLE_DATABASE_URL", f"sqlite:///{tmp_path}/cli.db")


def test_validate_accepts_the_shipped_watchlists() -> None:
    result = runner.invoke(app, ["validate", str(SHIPPED)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"ok: {SHIPPED}: ")
    for topic in ("power-of-siberia-2", "secondary-sanctions", "joint-declaration"):
        assert f"  {topic} " in result.output


def test_validate_lists_every_problem_and_exits_1(tmp_path: Path) -> None:
    wl = write_watchlist(tmp_path / "wl", [("A", "https://a.example/rss")],
                         topics="topics:\n  - id: x\n    title: X\n    query: 'a OR'\n"
                                "  - id: y\n    title: Y\n    qery: b\n")
    result = runner.invoke(app, ["validate", str(wl)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert f"{wl}/topics.yaml:4:17: topic 'x': query: query ends too early " \
           "(missing term or ')')" in lines
    assert f"{wl}/topics.yaml:5:5: missing required key 'query'" in lines
    assert f"{wl}/topics.yaml:7:5: unknown key 'qery' (did you mean 'query'?)" in lines
    assert lines[-1] == f"3 problems in {wl}"


def test_an_invalid_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEILLE_CONCURRENCY", "lots")
    result = runner.invoke(app, ["validate", str(SHIPPED)])
    assert result.exit_code == 2
    assert "VEILLE_CONCURRENCY='lots'" in result.output


def test_a_token_never_appears_in_setting_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEILLE_TELEGRAM_API_URL", "ftp://nope")
    monkeypatch.setenv("VEILLE_TELEGRAM_TOKEN", "123:SECRET-TEST-TOKEN")
    result = runner.invoke(app, ["once", "-w", str(SHIPPED)])
    assert result.exit_code == 2 and "VEILLE_TELEGRAM_API_URL" in result.output
    assert "SECRET-TEST-TOKEN" not in result.output


# ------------------------------------------------------------ veille test


def test_json_output_for_a_feed_file(tmp_path: Path) -> None:
    feed = tmp_path / "feed.xml"
    feed.write_bytes(rss(EN_ITEMS + FR_ITEMS + RU_ITEMS))
    wl = write_watchlist(tmp_path / "wl", [("A", "https://a.example/rss")])
    result = runner.invoke(app, ["test", "-w", str(wl), str(feed), "--json", "--all"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["link"] for r in rows] == [i["link"] for i in EN_ITEMS + FR_ITEMS + RU_ITEMS]
    by_link = {r["link"]: r for r in rows}
    assert by_link["https://presse.example/fr/fds2"] == {
        "link": "https://presse.example/fr/fds2",
        "title": "Le financement de Force de Sibérie 2 reste en suspens",
        "topics": ["power-of-siberia-2"], "terms": {"power-of-siberia-2": ["Force de Sibérie 2"]}}
    assert by_link["https://presse.example/fr/taxis"]["topics"] == []


def test_plain_output_highlights_terms_and_summarises(tmp_path: Path) -> None:
    feed = tmp_path / "feed.xml"
    feed.write_bytes(rss(FR_ITEMS))
    wl = write_watchlist(tmp_path / "wl", [("A", "https://a.example/rss")])
    result = runner.invoke(app, ["test", "-w", str(wl), str(feed)])
    assert result.exit_code == 0
    assert "  Le financement de Force de Sibérie 2 reste en suspens" in result.output  # piped
    assert "  power-of-siberia-2: Force de Sibérie 2" in result.output
    assert "Grève des taxis" not in result.output  # non-matching items need --all
    assert result.output.splitlines()[-1] == (
        "2 items, 1 matched (power-of-siberia-2 1, joint-declaration 0); "
        "1 unmatched not shown (--all lists them)")


def test_unreadable_inputs_are_reported_per_file_and_the_rest_processed(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.xml", tmp_path / "bad.xml"
    good.write_bytes(rss(EN_ITEMS))
    bad.write_bytes(b"<html><body>not a feed</body></html>")
    wl = write_watchlist(tmp_path / "wl", [("A", "https://a.example/rss")])
    result = runner.invoke(app, ["test", "-w", str(wl), str(bad), str(tmp_path / "missing.xml"),
                                 str(good), "--json", "--all"])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert sum(line.startswith("{") for line in lines) == len(EN_ITEMS)
    assert any(line.startswith(f"{bad}: ") for line in lines)
    assert any(line.startswith(f"{tmp_path / 'missing.xml'}: ") for line in lines)


@pytest.mark.corpus
def test_every_corpus_file_runs_through_veille_test(corpus: Path) -> None:
    from bot.errors import ParseError
    from bot.parse import parse_feed

    files = corpus_files()
    expected = 0
    failing = []
    for f in files:
        try:
            expected += len(parse_feed(f.read_bytes(), url=f.as_uri()).items)
        except ParseError:
            failing.append(f)
    result = runner.invoke(app, ["test", "-w", str(SHIPPED), "--json", "--all", *map(str, files)])
    assert result.exit_code == (1 if failing else 0)
    rows = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert len(rows) == expected > 2000
    for f in failing:
        assert f"{f}: " in result.output
    # the corpus holds no article on the seed topics; its other joint statements are negatives
    assert [r["title"] for r in rows if r["topics"]] == []


def test_seed_items_are_labelled_with_high_precision_and_recall() -> None:
    data = REPO / "tests" / "data" / "seed_items.jsonl"
    expect = {}
    with data.open(encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            expect[d["link"]] = set(d["expect"])
    result = runner.invoke(app, ["test", "-w", str(SHIPPED), "--json", "--all", str(data)])
    assert result.exit_code == 0, result.output
    got = {r["link"]: set(r["topics"]) for r in map(json.loads, result.output.splitlines())}
    assert got.keys() == expect.keys()
    for topic in ("power-of-siberia-2", "secondary-sanctions", "joint-declaration"):
        tp = sum(topic in got[k] and topic in expect[k] for k in expect)
        fp = [k for k in expect if topic in got[k] and topic not in expect[k]]
        fn = [k for k in expect if topic not in got[k] and topic in expect[k]]
        assert fp == [], f"{topic}: false positives {fp}"
        assert tp / (tp + len(fn)) >= 0.9, f"{topic}: missed {fn}"
        assert tp >= 20


# ------------------------------------------------------------ once / alerts


def test_once_json_prints_each_alert_object(feed_server, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    feed_server.set_feed("/fr.xml", rss(FR_ITEMS, "Presse Exemple"))
    wl = write_watchlist(tmp_path / "wl", [("Presse Exemple", feed_server.url("/fr.xml"))])
    monkeypatch.setenv("VEILLE_ALLOW_PRIVATE_URLS", "1")
    result = runner.invoke(app, ["once", "-w", str(wl), "--json"])
    assert result.exit_code == 0, result.output
    [line] = [x for x in result.output.splitlines() if x.startswith("{")]
    alert = json.loads(line)
    assert alert.pop("published").endswith("+00:00")
    assert alert == {
        "topic": "power-of-siberia-2",
        "title": "Le financement de Force de Sibérie 2 reste en suspens",
        "url": "https://presse.example/fr/fds2", "source": "Presse Exemple",
        "terms": ["Force de Sibérie 2"], "summary": "Pékin hésite sur le prix du gaz.",
        "context": "A proposed Russia–China gas pipeline through Mongolia.",
        "previously": None, "story": "1", "also": []}
    again = runner.invoke(app, ["once", "-w", str(wl), "--json"])
    assert [x for x in again.output.splitlines() if x.startswith("{")] == []
    listed = runner.invoke(app, ["alerts", "--json", "--topic", "power-of-siberia-2"])
    [row] = [json.loads(x) for x in listed.output.splitlines()]
    assert (row["status"], row["url"]) == ("sent", "https://presse.example/fr/fds2")
    feeds = runner.invoke(app, ["feeds", "--json"])
    [feed] = [json.loads(x) for x in feeds.output.splitlines()]
    assert (feed["name"], feed["status"], feed["items"], feed["error_streak"]) == (
        "Presse Exemple", 304, 2, 0)


def test_alerts_rejects_a_bad_duration() -> None:
    result = runner.invoke(app, ["alerts", "--since", "yesterday"])
    assert result.exit_code == 2
    assert "--since: 'yesterday' is not a duration like 30m, 24h, 7d" in result.output


@pytest.mark.parametrize("command", ["validate", "test", "once", "run", "feeds", "alerts"])
def test_every_command_has_help(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output


def test_a_feed_url_is_fetched_for_backtesting(feed_server, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    feed_server.set_feed("/en.xml", rss(EN_ITEMS))
    wl = write_watchlist(tmp_path / "wl", [("A", "https://a.example/rss")])
    refused = runner.invoke(app, ["test", "-w", str(wl), feed_server.url("/en.xml"), "--json"])
    assert refused.exit_code == 1 and "VEILLE_ALLOW_PRIVATE_URLS" in refused.output
    monkeypatch.setenv("VEILLE_ALLOW_PRIVATE_URLS", "1")
    result = runner.invoke(app, ["test", "-w", str(wl), feed_server.url("/en.xml"), "--json",
                                 "--all"])
    assert result.exit_code == 0, result.output
    topics = [json.loads(x)["topics"] for x in result.output.splitlines()]
    assert topics == [["power-of-siberia-2"], [], ["joint-declaration"]]
    assert not (tmp_path / "cli.db").exists()  # veille test writes no state


def test_bad_jsonl_lines_are_reported_and_skipped(tmp_path: Path) -> None:
    data = tmp_path / "items.jsonl"
    data.write_text('{"title": "x", "published": "yesterday"}\n[1]\n'
                    '{"title": "Xi and Putin adopt a joint statement", "link": "https://x.example/1"}\n',
                    encoding="utf-8")
    result = runner.invoke(app, ["test", "-w", str(SHIPPED), "--json", str(data)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert f"{data}:1: field 'published' is not a date (\"yesterday\"); ignored, the item is " \
        "still tested" in lines
    assert f"{data}:2: not a JSON item object (not an object); skipped" in lines
    [row] = [json.loads(x) for x in lines if x.startswith("{")]
    assert row["topics"] == ["joint-declaration"]
