"""Topic destinations (channels, groups, forum topics) in the watchlist: parsed, and every bad
one reported at its file:line."""

from __future__ import annotations

import pytest

from bot.errors import WatchlistError
from bot.watchlist import load_watchlist

FEEDS = "feeds:\n  - url: https://news.example/rss\n    name: News\n"
TOPIC = """topics:
  - id: pos2
    title: Power of Siberia 2
    query: '"Power of Siberia 2"'
    preview: true
    destinations:
{entries}
"""


def write(tmp_path, entries: str):
    (tmp_path / "feeds.yaml").write_text(FEEDS, encoding="utf-8")
    (tmp_path / "topics.yaml").write_text(TOPIC.format(entries=entries), encoding="utf-8")
    return tmp_path


def test_channels_ids_and_forum_threads_are_read_and_deduplicated(tmp_path) -> None:
    wl = load_watchlist(write(tmp_path, "      - '@pipeline_watch'\n      - -1001234567890\n"
                                        "      - {chat: -1009876543210, thread: 42}\n"
                                        "      - '-1001234567890'\n"))
    (topic,) = wl.topics
    assert topic.destinations == (("@pipeline_watch", 0), ("-1001234567890", 0),
                                  ("-1009876543210", 42))
    assert topic.preview is True


@pytest.mark.parametrize("entry, line", [
    ("      - 'pipeline watch'", 7),
    ("      - '@ab'", 7),
    ("      - {chat: '@ok_channel', thread: -1}", 7),
    ("      - {chat: '@ok_channel', topic: 3}", 7),
])
def test_a_bad_destination_is_reported_at_its_line(tmp_path, entry, line) -> None:
    with pytest.raises(WatchlistError) as caught:
        load_watchlist(write(tmp_path, entry))
    (problem,) = caught.value.problems
    assert f"topics.yaml:{line}" in str(problem)
    assert "destinations" in str(problem) or "chat" in str(problem) or "thread" in str(problem)
