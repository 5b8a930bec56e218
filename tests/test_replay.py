"""`veille replay`: an edited watchlist over the items a real cycle stored."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bot.scheduler import cycle
from tests.feedserver import FeedServer
from tests.pipeline_helpers import EN_ITEMS, FR_ITEMS, RU_ITEMS, TOPICS_YAML, make_env, rss
from tests.pipeline_helpers import write_watchlist
from tests.test_run import env_for

# Written for this test: matches nothing in force, and the edit's new branch.
ROUTE = {"guid": "en-4", "title": "Gazprom revives the Soyuz Vostok route across Mongolia",
         "link": "https://news.example/en/soyuz-vostok", "desc": "Engineers surveyed the steppe."}
ADDED_BRANCH = ('query: \'@pos2 OR ("Power of Siberia" NEAR/6 (financ* OR Mongolia))\'',
                'query: \'@pos2 OR ("Power of Siberia" NEAR/6 (financ* OR Mongolia)) '
                'OR "Soyuz Vostok"\'')
REMOVED_BRANCH = ('("joint declaration" OR "joint statement" OR', '("joint declaration" OR')
NEW_TOPIC = """  - id: steppe
    title: Steppe surveys
    query: 'steppe'
"""


@pytest.fixture
async def stored(feed_server: FeedServer, tmp_path: Path) -> Path:
    """A SQLite store filled by one real cycle over three local feeds; the watchlist in force."""
    feed_server.set_feed("/en.xml", rss(EN_ITEMS + [ROUTE]))
    feed_server.set_feed("/fr.xml", rss(FR_ITEMS))
    feed_server.set_feed("/ru.xml", rss(RU_ITEMS))
    in_force = write_watchlist(tmp_path / "wl", [(n, feed_server.url(f"/{n}.xml"))
                                                 for n in ("en", "fr", "ru")])
    app = make_env(tmp_path, in_force).app()
    try:
        outcomes = await cycle(app)
    finally:
        await app.aclose()
    assert {o.status for o in outcomes} == {"new"}
    return in_force


def edited(tmp_path: Path, in_force: Path, topics: str) -> Path:
    directory = tmp_path / "edited"
    directory.mkdir()
    (directory / "feeds.yaml").write_text((in_force / "feeds.yaml").read_text())
    (directory / "topics.yaml").write_text(topics)
    return directory


def replay_cli(tmp_path: Path, *args: str, command: str = "replay") -> subprocess.CompletedProcess:
    env = env_for(tmp_path)
    env["VEILLE_DATABASE_URL"] = f"sqlite:///{tmp_path}/state/veille.db"  # make_env's database
    return subprocess.run([sys.executable, "-m", "bot", command, *args], env=env,
                          capture_output=True, text=True, timeout=120)


def by_topic(stdout: str) -> dict[str, dict]:
    return {d["topic"]: d for d in map(json.loads, stdout.splitlines())}


def links(changes: list[dict]) -> list[str]:
    return [c["url"] for c in changes]


def test_an_added_branch_gains_and_a_removed_one_loses(stored: Path, tmp_path: Path) -> None:
    topics = TOPICS_YAML.replace(*ADDED_BRANCH).replace(*REMOVED_BRANCH)
    assert topics.count("Soyuz Vostok") == 1 and '"joint statement"' not in topics
    edit = edited(tmp_path, stored, topics)
    done = replay_cli(tmp_path, "--since", "7d", "--watchlists", str(edit), "--json")
    assert done.returncode == 0, done.stderr
    got = by_topic(done.stdout)
    pos2, joint = got["power-of-siberia-2"], got["joint-declaration"]
    assert (pos2["status"], pos2["before"], pos2["after"]) == ("kept", 3, 4)
    assert links(pos2["gained"]) == [ROUTE["link"]] and pos2["lost"] == []
    assert pos2["gained"][0]["terms"] == ["Soyuz Vostok"]
    assert (joint["before"], joint["after"]) == (2, 1)
    assert links(joint["lost"]) == ["https://news.example/en/summit"] and joint["gained"] == []
    assert joint["lost"][0]["terms"] == ["Putin", "joint statement"]


def test_a_new_topic_gains_everything_it_matches_and_the_text_names_it(
        stored: Path, tmp_path: Path) -> None:
    edit = edited(tmp_path, stored, TOPICS_YAML + NEW_TOPIC)
    done = replay_cli(tmp_path, "--since", "2d", "-w", str(edit))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "steppe (new topic): 0 → 1 items, +1 −0" in lines
    assert any(line.startswith("  + Gazprom revives the Soyuz Vostok route") for line in lines)
    assert "power-of-siberia-2: 3 → 3 items, +0 −0" in lines
    assert lines[-1].startswith("8 items stored since ") and lines[-1].endswith(
        "replayed: 1 gained, 0 lost over 3 topics")


def test_without_an_edit_nothing_changes(stored: Path, tmp_path: Path) -> None:
    done = replay_cli(tmp_path, "--json")
    assert done.returncode == 0, done.stderr
    got = by_topic(done.stdout)
    assert {t: (d["before"], d["after"], d["gained"], d["lost"]) for t, d in got.items()} == {
        "power-of-siberia-2": (3, 3, [], []), "joint-declaration": (2, 2, [], [])}


def test_a_bad_duration_is_refused(stored: Path, tmp_path: Path) -> None:
    done = replay_cli(tmp_path, "--since", "a week")
    assert done.returncode == 2
    assert "--since: 'a week' is not a duration like 30m, 24h, 7d" in done.stderr


def test_veille_test_replay_is_the_same_replay(stored: Path, tmp_path: Path) -> None:
    edit = edited(tmp_path, stored, TOPICS_YAML.replace(*ADDED_BRANCH))
    via_test = replay_cli(tmp_path, "--replay", "7d", "-w", str(edit), "--json", command="test")
    via_replay = replay_cli(tmp_path, "--since", "7d", "-w", str(edit), "--json")
    assert via_test.returncode == 0, via_test.stderr
    assert by_topic(via_test.stdout) == by_topic(via_replay.stdout)
    assert links(by_topic(via_test.stdout)["power-of-siberia-2"]["gained"]) == [ROUTE["link"]]
    mixed = replay_cli(tmp_path, "--replay", "7d", "feed.xml", command="test")
    assert mixed.returncode == 2 and "give no INPUT" in mixed.stderr
    bad = replay_cli(tmp_path, "--replay", "soon", command="test")
    assert bad.returncode == 2 and "--replay: 'soon' is not a duration" in bad.stderr
