"""The status page: its pieces as values, and the whole page served after a real cycle and
rendered by headless Chromium (DOM dump and screenshot)."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.app import App
from bot.config import Settings
from bot.scheduler import cycle
from bot.status import bar_chart, daily_counts, public_url, render_page, build_page
from bot.store import AlertRow
from tests.conftest import require_or_skip
from tests.feedserver import FeedServer
from tests.pipeline_helpers import EN_ITEMS, RU_ITEMS, RecordingSink, rss, write_watchlist
from tests.test_web import free_port, get

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
BAR_BLUE = (0x33, 0x67, 0xD6)  # .chart .bar in the template
FAILING_RED = (0xC6, 0x28, 0x28)  # .pill.failing


# ---------------------------------------------------------------- pieces


def test_daily_counts_span_14_days_ending_today() -> None:
    today = NOW.date()
    volume = {"a": {today: 2, today - timedelta(days=13): 1, today - timedelta(days=14): 5},
              "b": {today - timedelta(days=1): 1}}
    days = daily_counts(volume, now=NOW)
    assert days["a"] == (1,) + (0,) * 12 + (2,)  # 14 days ago is out of the chart
    assert days["b"] == (0,) * 12 + (1, 0)
    assert days["never-alerted"] == (0,) * 14


def test_bar_chart_draws_one_bar_per_day_scaled_to_the_busiest() -> None:
    svg = str(bar_chart([0, 2, 4], first_day=date(2026, 11, 28), label="pos2"))
    assert svg.startswith('<svg class="chart" role="img" aria-label="pos2: 6 alerts in 3 days"')
    assert svg.count("<rect") == 3
    assert '<rect class="bar zero" x="0" y="35" width="9" height="1"><title>28 Nov: 0</title>' in svg
    assert 'x="11" y="19" width="9" height="17"><title>29 Nov: 2</title>' in svg
    assert 'x="22" y="2" width="9" height="34"><title>30 Nov: 4</title>' in svg


def alert_row(id_: int, topic: str, link: str, status: str, title: str = "T",
              story: str | None = None) -> AlertRow:
    return AlertRow(id_, topic, "console", status, 1, NOW - timedelta(minutes=id_), None, title,
                    link, "Src", None, (), story, None, None)


def test_page_escapes_feed_text_and_refuses_script_links() -> None:
    rows = [alert_row(1, "t", "javascript:alert(1)", "sent", title="<script>x()</script>")]
    page = build_page(now=NOW, version="0", ready="ready", topics=[], feeds=[], volume={},
                      alerts=rows, subscribers={}, pending={"outbox": 0})
    html = render_page(page)
    assert "<script>x()" not in html and "&lt;script&gt;x()&lt;/script&gt;" in html
    assert "javascript:" not in html
    assert "no subscribers" in html and "No stories grouped yet" in html


def test_latest_alerts_show_an_item_once_across_destinations() -> None:
    rows = [alert_row(1, "t", "https://a.example/1", "pending"),
            alert_row(2, "t", "https://a.example/1", "sent"),
            alert_row(3, "u", "https://a.example/1", "failed", story="s1"),
            alert_row(4, "u", "https://a.example/2", "sent", story="s1")]
    page = build_page(now=NOW, version="0", ready="ready", topics=[], feeds=[], volume={},
                      alerts=rows, subscribers={}, pending={})
    assert [(a.topic, a.link, a.status, a.when) for a in page.alerts] == [
        ("t", "https://a.example/1", "sent", "60s ago"),
        ("u", "https://a.example/1", "failed", "3m ago"),
        ("u", "https://a.example/2", "sent", "4m ago")]
    assert [(s.story, s.topic, s.alerts) for s in page.stories] == [("s1", "u", 2)]


@pytest.mark.parametrize("url, shown", [
    ("https://feeds.example/a.xml", "https://feeds.example/a.xml"),
    ("https://reader:hunter2@feeds.example/a.xml", "https://***@feeds.example/a.xml"),
])
def test_feed_urls_never_show_credentials(url: str, shown: str) -> None:
    assert public_url(url) == shown


# ---------------------------------------------------------------- in Chromium


@pytest.fixture
async def live(tmp_path: Path, feed_server: FeedServer):
    """An App after one real cycle (a good feed, a broken one) with one subscriber, serving."""
    feed_server.set_feed("/en.xml", rss(EN_ITEMS))
    feed_server.set_feed("/ru.xml", rss(RU_ITEMS))
    feed_server.set_status("/down.xml", 503)
    feeds = [("English wire", feed_server.url("/en.xml")), ("Russian desk", feed_server.url("/ru.xml")),
             ("Down feed", feed_server.url("/down.xml"))]
    settings = Settings(_env_file=None, watchlists=write_watchlist(tmp_path / "wl", feeds),
                        allow_private_urls=True, database_url=f"sqlite:///{tmp_path}/v.db",
                        news_search=False, http_port=free_port())
    app = App.create(settings, sink=RecordingSink(), parse_in_processes=False)
    try:
        await cycle(app)
        _subscribe(settings.database_url, 42, "power-of-siberia-2")
        await app.start_http()
        yield app
    finally:
        await app.aclose()


def _subscribe(url: str, chat: int, topic: str) -> None:
    from bot.store.schema import subscribers, subscriptions

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.insert(subscribers).values(chat_id=chat, kind="private", created_at=NOW,
                                                    updated_at=NOW))
        conn.execute(sa.insert(subscriptions).values(chat_id=chat, topic=topic, created_at=NOW))
    engine.dispose()


async def chromium(*args: str) -> bytes:
    """Run headless Chromium without blocking the loop that serves the page."""
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        "--no-first-run", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0
    return out


@pytest.mark.slow
async def test_status_page_in_headless_chromium(live: App, tmp_path: Path) -> None:
    if CHROMIUM is None:
        require_or_skip("chromium not installed (apt-get install chromium; .ci/run does)")
    from PIL import Image

    url = f"http://127.0.0.1:{live.settings.http_port}/"
    status, html = await asyncio.to_thread(get, live.settings.http_port, "/")
    assert status == 200 and "English wire" in html

    dom = (await chromium("--dump-dom", url)).decode("utf-8")
    assert '<table id="feeds">' in dom
    for name in ("English wire", "Russian desk", "Down feed"):
        assert name in dom
    assert dom.count('<tr class="ok">') == 2 and dom.count('<tr class="failing">') == 1
    assert "HTTP 503" in dom  # the broken feed's last error
    assert dom.count('<svg class="chart"') == 2  # one per topic
    assert 'aria-label="power-of-siberia-2: 1 alert in 14 days"' in dom
    assert 'aria-label="joint-declaration: 2 alerts in 14 days"' in dom
    assert "1 subscriber" in dom and "no subscribers" in dom  # pos2 has one; joint none
    assert "Gazprom and CNPC edge closer" in dom  # the latest alerts

    shot = tmp_path / "phone.png"  # a phone-sized viewport
    await chromium(f"--screenshot={shot}", "--window-size=412,1600", url)
    image = Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")
    assert image.size == (412, 1600)
    colours = {colour for _, colour in image.getcolors(maxcolors=1 << 20)}
    assert BAR_BLUE in colours  # the charts' bars were painted
    assert FAILING_RED in colours  # the failing feed's mark
    assert len(colours) > 50  # text was drawn, not a blank page
    shutil.copy(shot, Path(os.environ.get("VEILLE_SCREENSHOT_DIR", tmp_path)) / "status.png")
