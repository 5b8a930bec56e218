"""Matching in the parse workers: matcher files, jobs in real process pools, a watchlist
reload reaching the workers, a broken pool; the store's one-statement item insert and the
fetch recorded by claim; plain_text's block-tag word breaks."""

from __future__ import annotations

import hashlib
import os
import pickle
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import timedelta
from pathlib import Path
from typing import Iterator

import pytest

import bot.workers as workers
from bot.app import _parse_pool
from bot.config import Settings
from bot.fetch import Fetcher
from bot.match import Matcher
from bot.model import FeedSpec
from bot.parse import plain_text
from bot.pipeline import Pipeline, PollSettings
from bot.scheduler import cycle
from bot.store import FetchRecord, Store
from bot.store.schema import items as items_table
from bot.store.store import _ITEM_COLUMNS, _items_insert_sql
from bot.watchlist import load_watchlist
from bot.workers import MatcherFiles, MatcherRef, Parsed, ParseJob
from tests.pipeline_helpers import TOPICS_YAML, make_env, rss, write_watchlist
from tests.test_store import FEED, NOW, db_url, item, matched, pg_database, store  # noqa: F401

# Headlines and leads written for these tests.
POS2 = {"guid": "w-1", "title": "Mongolia expects Power of Siberia 2 financing deal before winter",
        "link": "https://wire.example/pos2-financing",
        "desc": "Ulaanbaatar wants the transit fee settled before construction starts."}
HARBOUR = {"guid": "w-2", "title": "Harbour strike delays grain shipments for a third day",
           "link": "https://wire.example/harbour", "desc": "Dockers ask for a new contract."}
SUMMIT = {"guid": "w-3", "title": "Putin and Xi Jinping adopt a joint statement on energy trade",
          "link": "https://wire.example/summit", "desc": "The text mentions gas supplies."}
WIRE = [POS2, HARBOUR, SUMMIT]

ARCTIC_YAML = """\
topics:
  - id: arctic-shipping
    title: Northern Sea Route shipping
    query: '"Northern Sea Route"'
"""


def spec(url: str = "https://wire.example/rss.xml") -> FeedSpec:
    return FeedSpec(url, "Wire")


@pytest.fixture(scope="module")
def pool() -> Iterator[Executor]:
    """The app's own parse pool (forkserver, bot.workers preloaded), two workers."""
    executor = _parse_pool(Settings(_env_file=None, parse_workers=2))
    yield executor
    executor.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def watchlist_dir(tmp_path: Path) -> Path:
    return write_watchlist(tmp_path / "wl", [("Wire", "https://wire.example/rss.xml")])


@pytest.fixture
def files() -> Iterator[MatcherFiles]:
    matcher_files = MatcherFiles()
    yield matcher_files
    matcher_files.close()


def pickles(ref: MatcherRef) -> list[Path]:
    return sorted(Path(ref.path).parent.iterdir())


# ---------------------------------------------------------------- MatcherFiles


def test_one_file_per_matcher_and_the_two_latest_kept(watchlist_dir: Path,
                                                      files: MatcherFiles) -> None:
    def edited(n: int) -> Matcher:  # three different watchlists: the key names the content
        with open(watchlist_dir / "topics.yaml", "a", encoding="utf-8") as handle:
            handle.write(f"  - id: extra-{n}\n    title: Extra {n}\n    query: '\"term {n}\"'\n")
        return load_watchlist(watchlist_dir).matcher

    first, second, third = (edited(n) for n in range(3))
    assert first is not second
    ref = files.ref(first)
    assert files.ref(first) is ref  # the same object: no second pickle
    assert pickles(ref) == [Path(ref.path)]
    ref2 = files.ref(second)
    assert ref2.key != ref.key and ref2.path != ref.path
    assert pickles(ref) == sorted([Path(ref.path), Path(ref2.path)])
    assert files.ref(second) is ref2
    ref3 = files.ref(third)
    assert pickles(ref) == sorted([Path(ref2.path), Path(ref3.path)])  # the first is gone
    directory = Path(ref.path).parent
    files.close()
    assert not directory.exists()


def test_the_file_holds_a_matcher_that_matches_like_the_original(watchlist_dir: Path,
                                                                 files: MatcherFiles) -> None:
    original = load_watchlist(watchlist_dir).matcher
    ref = files.ref(original)
    with open(ref.path, "rb") as handle:
        loaded = pickle.load(handle)
    assert isinstance(loaded, Matcher) and loaded is not original
    texts = [(POS2["title"], POS2["desc"]), (SUMMIT["title"], SUMMIT["desc"]),
             (HARBOUR["title"], HARBOUR["desc"]),
             ("Сила Сибири 2: Пекин торгуется о цене", "Переговоры продолжаются.")]
    results = [loaded.match(title, body) for title, body in texts]
    assert results == [original.match(title, body) for title, body in texts]
    assert [[m.topic for m in found] for found in results] == [
        ["power-of-siberia-2"], ["joint-declaration"], [], ["power-of-siberia-2"]]


def test_a_worker_loads_each_matcher_file_once(watchlist_dir: Path, files: MatcherFiles,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "_LOADED", {})
    refs = [files.ref(load_watchlist(watchlist_dir).matcher) for _ in range(2)]
    loaded = workers._load(refs[0])
    Path(refs[0].path).unlink()  # kept in memory: the file is not read again
    assert workers._load(refs[0]) is loaded
    assert workers._load(refs[1]) is not loaded


def test_two_watchlists_on_one_shared_pool_get_their_own_matches(tmp_path: Path) -> None:
    """Two pipelines (two MatcherFiles) in one process share a one-worker pool: the worker
    must never answer one watchlist's job with the other's cached matcher."""
    pos2_wl = load_watchlist(write_watchlist(tmp_path / "pos2", [("Wire", spec().url)]))
    arctic_wl = load_watchlist(
        write_watchlist(tmp_path / "arctic", [("Wire", spec().url)], ARCTIC_YAML))
    arctic = {"guid": "w-4", "title": "Tankers test the Northern Sea Route in early spring",
              "link": "https://wire.example/arctic", "desc": "Ice was thinner than expected."}
    body = rss([*WIRE, arctic], "Wire")
    first, second = MatcherFiles(), MatcherFiles()
    single = _parse_pool(Settings(_env_file=None, parse_workers=1))
    try:
        refs = [first.ref(pos2_wl.matcher), second.ref(arctic_wl.matcher)]
        assert refs[0].key != refs[1].key
        got = [single.submit(ParseJob(body, spec().url, {}, spec(), ref)).result(timeout=60)
               for ref in refs * 2]
    finally:
        single.shutdown(wait=True)
        first.close()
        second.close()
    topics = [{guid: [m.topic for m in found] for guid, found in g.matches.items()} for g in got]
    pos2 = {"w-1": ["power-of-siberia-2"], "w-3": ["joint-declaration"]}
    assert topics == [pos2, {"w-4": ["arctic-shipping"]}] * 2


def test_a_matcher_key_is_the_hash_of_its_file(watchlist_dir: Path, files: MatcherFiles) -> None:
    """Keys name the content, so no two instances or processes hand out one key for two
    different matchers (a counter per instance did)."""
    ref = files.ref(load_watchlist(watchlist_dir).matcher)
    assert ref.key == hashlib.blake2b(Path(ref.path).read_bytes(), digest_size=16).hexdigest()


# ---------------------------------------------------------------- ParseJob in a real pool


def job(matcher: object, known: frozenset[str] = frozenset()) -> ParseJob:
    return ParseJob(rss(WIRE, "Wire"), "https://wire.example/rss.xml", {}, spec(),
                    matcher, known)  # type: ignore[arg-type]


def test_a_job_in_a_process_pool_matches_the_new_items(pool: Executor, watchlist_dir: Path,
                                                       files: MatcherFiles) -> None:
    matcher = load_watchlist(watchlist_dir).matcher
    ref = files.ref(matcher)
    got = pool.submit(job(ref)).result(timeout=60)
    assert isinstance(got, Parsed)
    assert [i.guid for i in got.feed.items] == ["w-1", "w-2", "w-3"]
    assert set(got.matches) == {"w-1", "w-3"}
    assert [m.topic for m in got.matches["w-1"]] == ["power-of-siberia-2"]
    assert "Power of Siberia 2" in got.matches["w-1"][0].terms
    assert [m.topic for m in got.matches["w-3"]] == ["joint-declaration"]
    assert got.matches == job(matcher)().matches  # the same as matching in this process


def test_a_job_skips_known_guids_and_a_missing_matcher_matches_nothing(
        pool: Executor, watchlist_dir: Path, files: MatcherFiles) -> None:
    ref = files.ref(load_watchlist(watchlist_dir).matcher)
    known = pool.submit(job(ref, frozenset({"w-1", "w-2"}))).result(timeout=60)
    assert set(known.matches) == {"w-3"}
    assert len(known.feed.items) == 3  # still parsed, only not matched
    none = pool.submit(job(None)).result(timeout=60)
    assert none.matches == {} and len(none.feed.items) == 3


def test_a_job_sketches_each_new_matchs_story_signature_and_never_loads_numpy(
        pool: Executor, watchlist_dir: Path, files: MatcherFiles) -> None:
    from bot.stories import signature

    matcher = load_watchlist(watchlist_dir).matcher
    got = pool.submit(job(files.ref(matcher), frozenset({"w-3"}))).result(timeout=60)
    assert list(got.signatures) == [("w-1", "power-of-siberia-2")]  # w-3 is known
    pos2 = got.feed.items[0]
    made = got.signatures[("w-1", "power-of-siberia-2")]
    assert made == signature(pos2, got.matches["w-1"][0], key="", when=None)
    assert made.title == POS2["title"] and made.title_hash is None  # hashed in the main process
    # numpy (the story index's MinHash) stays out of the workers: ~20 MB each
    assert pool.submit(eval, "'numpy' in __import__('sys').modules").result(timeout=60) is False


def test_the_workers_start_with_the_text_tables_built_by_their_forkserver() -> None:
    """A fresh process (its own forkserver): a worker's very first job finds text.py's
    folding tables built (shared from the forkserver, not built again in each worker)."""
    import subprocess
    import sys

    script = (
        "from bot.app import _parse_pool\n"
        "from bot.config import Settings\n"
        "pool = _parse_pool(Settings(_env_file=None, parse_workers=1))\n"
        "print(pool.submit(eval, 'len(__import__(\"bot.text\").text._BMP)').result(60))\n"
        "pool.shutdown()\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) == 0x10000  # every BMP code point


# ---------------------------------------------------------------- a reload reaches the workers


async def test_a_watchlist_reload_reaches_the_parse_workers(feed_server, tmp_path) -> None:
    url = feed_server.url("/wire.xml")
    arctic = {"guid": "w-4", "title": "Tankers test the Northern Sea Route in early spring",
              "link": "https://wire.example/arctic", "desc": "Ice was thinner than expected."}
    feed_server.set_feed("/wire.xml", rss([POS2, HARBOUR, arctic], "Wire"))
    env = make_env(tmp_path, write_watchlist(tmp_path / "wl1", [("Wire", url)], ARCTIC_YAML),
                   parse_workers=1)  # one worker: the same process sees both versions
    app = env.app(processes=True)
    try:
        assert isinstance(app.executor, ProcessPoolExecutor)
        [first] = await cycle(app)
        assert first.status == "new" and first.matches == 1
        assert env.sink.pairs() == {("arctic-shipping", "https://wire.example/arctic")}

        app.watchlist = load_watchlist(write_watchlist(tmp_path / "wl2", [("Wire", url)]))
        pos2_new = {"guid": "w-5", "title": "Banks line up loans for Power of Siberia 2",
                    "link": "https://wire.example/pos2-loans", "desc": "A syndicate of lenders."}
        arctic_new = {"guid": "w-6", "title": "Northern Sea Route cargo hits a record",
                      "link": "https://wire.example/arctic-record", "desc": "Mostly oil."}
        feed_server.set_feed("/wire.xml", rss([POS2, HARBOUR, arctic, pos2_new, arctic_new]))
        env.sink.sent.clear()
        [second] = await cycle(app)
    finally:
        await app.aclose()
    assert (second.status, second.new_items, second.matches) == ("new", 2, 1)
    # the new topic matched in the worker; the old one no longer; w-1 is known, so not again
    assert env.sink.pairs() == {("power-of-siberia-2", "https://wire.example/pos2-loans")}


# ---------------------------------------------------------------- a broken worker


class FailingFutures(Executor):
    """An executor whose jobs fail as when their worker process dies mid-job."""

    def submit(self, fn, /, *args, **kwargs) -> Future:  # type: ignore[override]
        future: Future = Future()
        future.set_exception(BrokenProcessPool("A child process terminated abruptly"))
        return future


def killed_pool() -> Executor:
    """A real forkserver pool whose only worker died: every submit raises BrokenProcessPool."""
    broken = _parse_pool(Settings(_env_file=None, parse_workers=1))
    with pytest.raises(BrokenProcessPool):
        broken.submit(os._exit, 1).result(timeout=60)
    return broken


@pytest.mark.parametrize("breakage", ["killed-pool", "future-fails"])
async def test_a_broken_worker_is_a_parse_error_and_the_next_poll_recovers(
        feed_server, tmp_path, pool: Executor, breakage: str) -> None:
    url = feed_server.url("/wire.xml")
    feed_server.set_feed("/wire.xml", rss(WIRE, "Wire"))
    env = make_env(tmp_path, write_watchlist(tmp_path / "wl", [("Wire", url)]))
    wl = load_watchlist(env.settings.watchlists)
    broken = killed_pool() if breakage == "killed-pool" else FailingFutures()
    fetcher = Fetcher.from_settings(env.settings)
    store = Store.open(env.settings.database_url)
    pipeline = Pipeline(fetcher=fetcher, store=store, watchlist=lambda: wl, executor=broken,
                        settings=PollSettings(jitter=0.0))
    feed = wl.feeds[0]
    try:
        failed = await pipeline.poll(feed)
        assert failed.status == "error" and failed.http_status == 200
        assert failed.error is not None
        assert failed.error.startswith("parse: parse worker failed: BrokenProcessPool")
        state = store.feed_state(url)
        assert state is not None
        assert (state.error_streak, state.last_error, state.last_status, state.polls) == (
            1, failed.error, 200, 1)
        assert state.first_poll and store.seen_guids(url) == set()
        assert state.etag is None  # not kept: the next poll fetches the body again

        pipeline.executor = pool
        ok = await pipeline.poll(feed)
    finally:
        broken.shutdown(wait=True)
        pipeline.close()
        await fetcher.aclose()
    assert (ok.status, ok.new_items, ok.error) == ("new", 3, None)
    assert {(a.topic, a.item.link) for a in ok.alerts} == {
        ("power-of-siberia-2", POS2["link"]), ("joint-declaration", SUMMIT["link"])}
    state = store.feed_state(url)
    store.close()
    assert state is not None and (state.error_streak, state.last_error, state.polls) == (
        0, None, 2)


# ---------------------------------------------------------------- the store


def test_the_insert_names_every_items_column_but_the_id() -> None:
    assert len(set(_ITEM_COLUMNS)) == len(_ITEM_COLUMNS)
    assert set(_ITEM_COLUMNS) == set(items_table.c.keys()) - {"id"}


def test_the_insert_is_written_in_the_drivers_paramstyle() -> None:
    width = len(_ITEM_COLUMNS)
    qmark = _items_insert_sql("qmark", 2)
    group = "(" + ", ".join(["?"] * width) + ")"
    assert f"VALUES {group}, {group} ON CONFLICT" in qmark
    assert qmark.count("?") == 2 * width and "%s" not in qmark
    pyformat = _items_insert_sql("pyformat", 1)
    assert f"VALUES ({', '.join(['%s'] * width)}) ON CONFLICT" in pyformat
    assert pyformat.count("%s") == width and "?" not in pyformat
    assert pyformat.startswith(f"INSERT INTO items ({', '.join(_ITEM_COLUMNS)}) VALUES")
    assert pyformat.endswith("RETURNING id, guid")


def test_claim_records_the_fetch_in_the_same_call(store: Store) -> None:  # noqa: F811
    next_at = NOW + timedelta(minutes=10)
    batch = [item(1), item(2)]
    got = store.claim(FEED, batch, matched(batch[0]), now=NOW, alert_cutoff=None,
                      fetch=FetchRecord(200, next_at, None, etag='"e1"', body_hash="h"))
    assert (got.new, len(got.alerts)) == (2, 1)
    assert store.seen_guids(FEED) == {"guid-1", "guid-2"}
    state = store.feed_state(FEED)
    assert state is not None
    assert (state.etag, state.body_hash, state.last_status, state.polls, state.error_streak) == (
        '"e1"', "h", 200, 1, 0)
    assert (state.last_poll_at, state.last_success_at, state.first_success_at,
            state.next_poll_at, state.items_total, state.last_error) == (
        NOW, NOW, NOW, next_at, 2, None)


def test_claim_with_a_fetch_resets_the_streak_and_keeps_absent_validators(
        store: Store) -> None:  # noqa: F811
    store.record(FEED, FetchRecord(200, NOW, None, etag='"e1"', last_modified="Thu, 01 May 2025",
                                   body_hash="h"), now=NOW - timedelta(hours=2))
    store.record(FEED, FetchRecord(503, NOW, "HTTP 503"), now=NOW - timedelta(hours=1))
    failing = store.feed_state(FEED)
    assert failing is not None and (failing.error_streak, failing.last_error) == (1, "HTTP 503")
    assert failing.first_poll  # record() alone never marks a parse
    store.claim(FEED, [item(1)], {}, now=NOW, alert_cutoff=None,
                fetch=FetchRecord(200, NOW + timedelta(minutes=5), None, body_hash="h2"))
    state = store.feed_state(FEED)
    assert state is not None
    assert (state.error_streak, state.last_error, state.polls, state.last_status) == (
        0, None, 3, 200)
    assert (state.etag, state.last_modified, state.body_hash) == (
        '"e1"', "Thu, 01 May 2025", "h2")
    assert (state.first_success_at, state.items_total) == (NOW, 1)


def test_a_failing_claim_records_no_fetch_either(store: Store) -> None:  # noqa: F811
    from bot.errors import StoreError
    from bot.model import Match

    broken = {"guid-1": [Match(None, ())]}  # type: ignore[arg-type]
    with pytest.raises(StoreError):
        store.claim(FEED, [item(1)], broken, now=NOW, alert_cutoff=None,
                    fetch=FetchRecord(200, NOW, None, etag='"e1"', body_hash="h"))
    state = store.feed_state(FEED)
    assert state is not None
    assert (state.polls, state.etag, state.body_hash, state.items_total) == (0, None, None, 0)
    assert store.seen_guids(FEED) == set()


# ---------------------------------------------------------------- plain_text


@pytest.mark.parametrize(("markup", "text"), [
    ("<b>a</b><p>b</p>", "a b"),
    ("<ul><li>x</li><li>y</li></ul>", "x y"),
    ("a<br>b", "a b"),
    ("a<br/>b", "a b"),
    ("<P>Upper</P><DIV>case</DIV>", "Upper case"),
    ("<td>1</td><td>2</td>", "1 2"),
    ("a<p\tclass='lead'>b", "a b"),
    ("in<b>line</b>", "inline"),
    ("a<pre>b</pre>c", "a b c"),
    ("a<param name='x'>b", "ab"),  # not a block tag, though it starts like <p and <pre
    ("a<param>b</param>c<pre>d</pre>", "abc d"),
])
def test_block_tags_separate_words_and_inline_tags_do_not(markup: str, text: str) -> None:
    assert plain_text(markup) == text


@pytest.mark.parametrize("markup", [
    "x\ufdd0y",
    "<i>x\ufdd0y</i>",
    "<p>x\ufdd0y</p>",
    "\ufdd0",
    '<?xml version="1.0" encoding="utf-8"?><p>x\ufdd0y</p>',  # lxml refuses: stdlib fallback
])
def test_the_break_marker_in_the_input_is_dropped_not_turned_into_a_space(markup: str) -> None:
    out = plain_text(markup)
    assert "\ufdd0" not in out
    assert out == ("" if markup == "\ufdd0" else "xy")


@pytest.mark.parametrize("markup", ["a&#xfdd0;b", "&#64976;<p>y</p>", "<b>\ufdd0&#xFDD0;</b>"])
def test_the_break_marker_never_comes_out_of_a_character_reference(markup: str) -> None:
    assert "\ufdd0" not in plain_text(markup)


def test_a_long_fragment_keeps_every_word_once() -> None:
    words = [f"w{i}" for i in range(300)]
    markup = "".join(f"<li>{w}</li>" if i % 2 else f"<span>{w}</span>"
                     for i, w in enumerate(words))
    assert plain_text("<ul>" + markup + "</ul>").split() == words


def test_summary_text_in_a_parsed_feed_gets_the_word_breaks() -> None:
    body = rss([{"guid": "h-1", "title": "Pipeline talks", "link": "https://wire.example/h1",
                 "desc": "<p>Gazprom</p><p>CNPC</p>"}])
    parsed = ParseJob(body, "https://wire.example/rss.xml", {}, spec())()
    assert parsed.feed.items[0].summary == "Gazprom CNPC"


def test_parse_workers_do_not_import_the_command_line(tmp_path: Path) -> None:
    """multiprocessing re-imports the parent's main module in each worker: the `veille`
    script (and `python -m bot`) enter through bot/__main__.py, which imports nothing, so a
    worker never carries bot.cli, typer and rich. A copy of the console script proves it."""
    import subprocess
    import sys
    import tomllib

    root = Path(__file__).resolve().parent.parent
    scripts = tomllib.loads((root / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["veille"] == "bot.__main__:main"
    script = tmp_path / "veille"
    script.write_text(
        "import sys\n"
        "from bot.__main__ import main\n"
        "if __name__ == '__main__':\n"  # what the worker must never run
        "    from bot.app import _parse_pool\n"
        "    from bot.config import Settings\n"
        "    pool = _parse_pool(Settings(_env_file=None, parse_workers=1))\n"
        "    probe = \"sorted(m for m in ('bot.cli', 'typer', 'rich') if m in __import__('sys').modules)\"\n"
        "    print(pool.submit(eval, probe).result(60), 'bot.cli' in sys.modules)\n"
        "    pool.shutdown()\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, cwd=root)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]", "False"]
