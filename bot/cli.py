"""The operator CLI (typer): validate and backtest watchlists, poll, run, inspect state."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, NoReturn, Optional

_step = {"now": "starting"}  # what veille was doing, for the one line an interruption prints


def _interrupted_at_start(kind, value, tb, _previous=sys.excepthook) -> None:
    """Ctrl-C while veille is still importing its libraries: one line and exit 2."""
    if issubclass(kind, KeyboardInterrupt):
        sys.stderr.write(f"veille: interrupted (Ctrl-C) while {_step['now']}\n")
        sys.stderr.flush()
        os._exit(2)
    _previous(kind, value, tb)


sys.excepthook = _interrupted_at_start  # installed before the imports below: they take 0.4 s

import typer  # noqa: E402
from rich.cells import cell_len  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.text import Text  # noqa: E402

from . import __version__  # noqa: E402
from .errors import ConfigError, ParseError, StoreError, WatchlistError  # noqa: E402
from .model import Item, Match  # noqa: E402
from .watchlist import Watchlist, load_watchlist  # noqa: E402

app = typer.Typer(
    name="veille",
    help="News-monitoring alert bot: watch feeds for topics, alert once per story.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: flags shown as flags, no boxes, paragraphs rewrapped
    context_settings={"help_option_names": ["-h", "--help"]},
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
DB_SETTING = "VEILLE_DATABASE_URL"


def _print_version(value: bool) -> None:
    if value:
        out.print(f"veille {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                 help="Print veille's version and exit."),
) -> None:
    pass


def _plural(n: int, word: str, many: str | None = None) -> str:
    """'1 feed', '2 feeds'; many= for the irregular ones ('3 stories')."""
    return f"{n} {word if n == 1 else many or word + 's'}"


def _when(dt: datetime | None, none: str = "never") -> str:
    """The one time format of veille's output: UTC, with its zone."""
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if dt else none


def _settings(**overrides):
    from .config import load_settings

    try:
        return load_settings(**overrides)
    except ConfigError as exc:  # the value as typed: never read as markup
        err.print(Text("error: ", style="red") + Text(str(exc).replace("Value error, ", "")))
        raise typer.Exit(2) from None


def _watchlist(directory: Optional[Path]) -> Watchlist:
    settings = _settings()  # every command fails fast on an invalid VEILLE_* setting
    directory = directory or settings.watchlists
    _step["now"] = f"loading the watchlists in {directory} (VEILLE_WATCHLISTS)"
    try:
        return load_watchlist(directory, allow_private_urls=settings.allow_private_urls)
    except WatchlistError as exc:
        for problem in exc.problems:
            err.print(Text(str(problem)))
        err.print(Text(f"{_plural(len(exc.problems), 'problem')} in {directory}",
                       style="red bold"))
        raise typer.Exit(1) from None


def _fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr, then exit (2: veille could not do what was asked)."""
    err.print(Text(f"error: {message}", style="red"))
    raise typer.Exit(code)


@contextlib.contextmanager
def _store(settings, *, create: bool) -> Iterator:
    """The state database, or one line naming the problem and VEILLE_DATABASE_URL (exit 2).

    create=False for commands that only read: a missing SQLite file is an error then, never
    a new empty database.
    """
    from .store import Store

    _step["now"] = f"opening the database ({DB_SETTING})"
    try:
        with Store.open(settings.database_url, create=create) as store:
            yield store
    except StoreError as exc:
        _fail(f"{exc} (check {DB_SETTING})")


# ---------------------------------------------------------------- validate


@app.command()
def validate(
    directory: Optional[Path] = typer.Argument(
        None, help="Watchlists directory (default: $VEILLE_WATCHLISTS or watchlists/)."),
) -> None:
    """Check every watchlist file; list all problems (exit 1) or print a summary (exit 0)."""
    wl = _watchlist(directory)
    searches = len(wl.all_feeds()) - len(wl.feeds)
    out.print(Text(f"ok: {wl.directory}: {_plural(len(wl.feeds), 'feed')}, "
                   f"{_plural(len(wl.topics), 'topic')}, {_plural(len(wl.aliases), 'alias group')}, "
                   f"{_plural(searches, 'news-search feed')}", style="green"))
    for t in wl.topics:
        langs = ",".join(lang for lang, _ in t.search) or "-"
        out.print(Text(f"  {t.id:<24} {t.priority:<6} {len(t.compiled.terms):>3} terms  "
                       f"search: {langs:<14} {t.title}"))


# ---------------------------------------------------------------- test


@app.command("test")
def test_cmd(
    inputs: list[str] = typer.Argument(
        None, metavar="[INPUT...]",
        help="Feed files, feed URLs, or .jsonl files of items; with --query, also plain text."),
    watchlists: Optional[Path] = typer.Option(
        None, "--watchlists", "-w", help="Watchlists directory (default: $VEILLE_WATCHLISTS)."),
    as_json: bool = typer.Option(
        False, "--json", help="JSON lines: one object per item (and per topic with --labels)."),
    show_all: bool = typer.Option(False, "--all", help="Also list items that match nothing."),
    topic: Optional[str] = typer.Option(None, "--topic", "-t", help="Only this topic id."),
    labels: Optional[Path] = typer.Option(
        None, "--labels", metavar="FILE.jsonl",
        help="Score the topics on labelled items (each with \"topics\": [ids]): precision, "
             "recall, every false positive and false negative."),
    min_precision: float = typer.Option(
        0.0, "--min-precision", min=0.0, max=1.0, help="With --labels: exit 1 below this."),
    min_recall: float = typer.Option(
        0.0, "--min-recall", min=0.0, max=1.0, help="With --labels: exit 1 below this."),
    explain: bool = typer.Option(
        False, "--explain", help="Per item and topic: branches matched or nearly matched, "
                                 "what was missing, why an item was out of scope."),
    query: Optional[str] = typer.Option(
        None, "--query", "-q", metavar="QUERY",
        help="Try this query (aliases of the watchlists usable) instead of the topics."),
    replay_since: Optional[str] = typer.Option(
        None, "--replay", metavar="DURATION",
        help="Instead of INPUT: the items stored in the last DURATION (7d), run through "
             "--watchlists against the watchlist in force (same as `veille replay --since`)."),
) -> None:
    """Backtest: show which topics each item of INPUT matches, and why. Writes no state.

    With --query, each INPUT that is not a file or URL is a text to try (its first line is
    the title, the rest the body). With --replay 7d, the input is what was stored in the
    last 7 days, and the output what the edited --watchlists would gain and lose per topic.
    Exit status: 0; 1 when some input could not be read or a .jsonl line was skipped, or a
    topic scored below --min-precision/--min-recall; 2 for a bad option (unknown topic, a
    query that does not parse).
    """
    if replay_since is not None:
        if inputs or labels or query is not None:
            _fail("--replay reads the stored items: give no INPUT, --labels or --query with it")
        _replay(replay_since, watchlists, as_json, option="--replay")
        return
    if query is not None:
        wl = _query_watchlist(watchlists, query)
    else:
        wl = _watchlist(watchlists)
    if topic and not wl.topic(topic):
        err.print(f"unknown topic {topic!r}; known: {', '.join(t.id for t in wl.topics)}")
        raise typer.Exit(2)
    sources = list(inputs or []) + ([str(labels)] if labels else [])
    if not sources:
        err.print("nothing to test: give INPUT... or --labels FILE.jsonl")
        raise typer.Exit(2)
    topics = [t for t in wl.topics if not topic or t.id == topic]
    run = _TestRun(wl, topics, as_json=as_json, show_all=show_all, explain=explain)
    for source in sources:
        try:
            items = list(_read_items(source, run.skipped, literal=query is not None))
        except (OSError, ParseError, ValueError) as exc:
            run.failed += 1
            err.print(Text(f"{source}: {exc}", style="red"))
            continue
        feed = next((f for f in wl.feeds if f.url == source), None)
        for item, expected in items:
            run.item(item, expected if labels and source == str(labels) else None, feed)
    low = run.finish(labels is not None, min_precision, min_recall)
    if run.failed or run.skipped or low:
        raise typer.Exit(1)


def _query_watchlist(directory: Optional[Path], query: str) -> Watchlist:
    """A watchlist of one topic, `query`, with the aliases of the watchlists when they load."""
    from .errors import QuerySyntaxError
    from .model import Topic
    from .query import compile_query

    settings = _settings()
    try:
        base = load_watchlist(directory or settings.watchlists)
    except WatchlistError:
        base = None
    aliases = dict(base.aliases) if base else {}
    try:
        compiled = compile_query(query, aliases)
    except QuerySyntaxError as exc:
        err.print(Text(f"--query: {exc.message}\n{exc.pointer()}"))
        raise typer.Exit(2) from None
    return Watchlist(Path(directory or settings.watchlists),
                     base.feeds if base else (), (Topic("query", "--query", query, compiled),),
                     aliases)


class _TestRun:
    """What `veille test` prints as it goes, and its totals."""

    def __init__(self, wl: Watchlist, topics: list, *, as_json: bool, show_all: bool,
                 explain: bool) -> None:
        self.wl, self.topics = wl, topics
        self.ids = {t.id for t in topics}
        self.as_json, self.show_all, self.explain = as_json, show_all, explain
        self.failed = self.total = self.hit = 0
        self.skipped: list[str] = []  # .jsonl lines that were not items
        self.per_topic = {t.id: 0 for t in topics}
        self.labelled: list[tuple[str, set[str], set[str]]] = []
        self.found: dict[str, tuple[Item, list[Match]]] = {}
        self._explainers: dict[str, object] = {}

    def explainer(self, topic):
        from .scoring import Explainer

        if topic.id not in self._explainers:
            self._explainers[topic.id] = Explainer(topic, self.wl.aliases)
        return self._explainers[topic.id]

    def item(self, item: Item, expected: set[str] | None, feed) -> None:
        self.total += 1
        matches = [m for m in self.wl.matcher.match_item(item, feed) if m.topic in self.ids]
        self.hit += bool(matches)
        for m in matches:
            self.per_topic[m.topic] += 1
        if expected is not None:
            key = f"{len(self.labelled)}"
            self.labelled.append((key, expected & self.ids, {m.topic for m in matches}))
            self.found[key] = (item, matches)
            return
        notes = self.notes(item, matches, feed) if self.explain else []
        if not (matches or self.show_all or notes):
            return
        if self.as_json:
            row = _item_json(item, matches)
            if self.explain:
                row["explain"] = notes
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            _print_item(item, matches)
            for note in notes:
                out.print(Text("  " + _note_text(note), style="dim"))

    def notes(self, item: Item, matches: list[Match], feed) -> list[dict]:
        """--explain: per topic, the branches that matched or nearly did, or the scope."""
        from .scoring import scope_reason

        title, body = item.text_fields()
        out_notes = []
        for topic in self.topics:
            reason = scope_reason(topic, item.lang, feed)
            branches = self.explainer(topic).branches(title, body, item.lang)
            shown = [b for b in branches if b.matched or b.near_miss]
            if reason and any(b.matched for b in branches):
                out_notes.append({"topic": topic.id, "out_of_scope": reason})
            elif shown:
                out_notes.append({"topic": topic.id, "branches": [
                    {"branch": b.index, "query": b.text, "matched": b.matched,
                     "found": list(b.found), "missing": list(b.missing),
                     "excluded_by": list(b.excluded_by)} for b in shown]})
        return out_notes

    def finish(self, scoring: bool, min_p: float, min_r: float) -> bool:
        """Print the summary (and the scores); True when a topic is below a threshold."""
        if not scoring:
            if not self.as_json:
                counts = ", ".join(f"{k} {v}" for k, v in self.per_topic.items())
                unshown = self.total - self.hit
                tail = "" if self.show_all or not unshown else f"; {unshown} unmatched not " \
                                                               "shown (--all lists them)"
                out.print(Text(f"{self.total} items, {self.hit} matched ({counts}){tail}"
                               + (f"; {self.failed} input(s) failed" if self.failed else ""),
                               style="bold"))
            return False
        return _print_scores(self, min_p, min_r)


def _print_scores(run: _TestRun, min_p: float, min_r: float) -> bool:
    from .scoring import score

    scores = score(run.labelled, [t.id for t in run.topics])
    low = False
    for topic in run.topics:
        s = scores[topic.id]
        below = s.precision < min_p or s.recall < min_r
        low |= below
        misses = [("FP", k) for k in s.fp] + [("FN", k) for k in s.fn]
        rows = [_miss_row(run, topic, kind, key) for kind, key in misses]
        if run.as_json:
            sys.stdout.write(json.dumps({
                "topic": topic.id, "precision": round(s.precision, 4),
                "recall": round(s.recall, 4), "tp": s.tp, "fp": len(s.fp), "fn": len(s.fn),
                "below_threshold": below, "misses": rows}, ensure_ascii=False) + "\n")
            continue
        flag = "  BELOW THRESHOLD" if below else ""
        out.print(Text(f"{topic.id}: precision {s.precision:.2f}  recall {s.recall:.2f}  "
                       f"(tp {s.tp}, fp {len(s.fp)}, fn {len(s.fn)}){flag}",
                       style="bold red" if below else "bold"))
        for row in rows:
            why = (f"branch {', '.join(map(str, row['branches']))}: "
                   f"{', '.join(row['terms'])}") if row["branches"] else "no branch matched"
            for near in row["nearly"][:2]:  # the closest misses say what to add
                lacks = " and ".join(near["missing"] + near["excluded_by"])
                why += f"; branch {near['branch']} lacked {lacks}"
            out.print(Text(f"  {row['kind']} {row['title']}  [{why}]"))
    if not run.as_json:
        out.print(Text(f"{len(run.labelled)} labelled items", style="bold"))
    return low


def _miss_row(run: _TestRun, topic, kind: str, key: str) -> dict:
    """A false positive or negative: title, the matched terms and the branches that fired."""
    item, matches = run.found[key]
    title, body = item.text_fields()
    terms = next((list(m.terms) for m in matches if m.topic == topic.id), [])
    branches = run.explainer(topic).branches(title, body, item.lang)
    fired = [b.index for b in branches if b.matched]
    near = [{"branch": b.index, "missing": list(b.missing), "excluded_by": list(b.excluded_by)}
            for b in branches if b.near_miss] if kind == "FN" else []
    return {"kind": kind, "title": item.title, "link": item.link, "terms": terms,
            "branches": fired, "nearly": near}


def _note_text(note: dict) -> str:
    if "out_of_scope" in note:
        return f"{note['topic']}: out of scope: {note['out_of_scope']}"
    lines = []
    for b in note["branches"]:
        state = "matched" if b["matched"] else "nearly matched"
        extra = "".join([f"; missing {' and '.join(b['missing'])}" if b["missing"] else "",
                         f"; excluded by {' and '.join(b['excluded_by'])}"
                         if b["excluded_by"] else "",
                         f"; found {', '.join(b['found'])}" if b["found"] else ""])
        lines.append(f"{note['topic']}: branch {b['branch']} {state}{extra}")
    return "\n  ".join(lines)


def _item_json(item: Item, matches: list[Match]) -> dict:
    return {"link": item.link, "title": item.title, "topics": [m.topic for m in matches],
            "terms": {m.topic: list(m.terms) for m in matches}}


def _read_items(source: str, skipped: list[str],
                literal: bool = False) -> Iterator[tuple[Item, set[str]]]:
    """Items of a source with their labels (empty unless a labelled .jsonl says otherwise)."""
    if source.endswith(".jsonl"):
        yield from _jsonl_items(Path(source), skipped)
        return
    from .parse import parse_feed

    if "://" in source and not source.startswith("file://"):
        body, headers, url = _fetch_once(source)
    elif literal and not Path(source.removeprefix("file://")).is_file():
        title, _, text = source.strip().partition("\n")
        yield Item(feed="query:", guid="text", url="", link="", title=title,
                   summary=text.strip(), source="text"), set()
        return
    else:
        from .fetch import read_local

        path = Path(source.removeprefix("file://"))  # the same cap as fetched feeds
        body = read_local(path, _settings().max_body_bytes)
        headers, url = {}, path.resolve().as_uri()
    for item in parse_feed(body, url=url, headers=headers).items:
        yield item, set()


def _fetch_once(url: str) -> tuple[bytes, dict, str]:
    import asyncio

    from .fetch import Fetcher

    async def run():
        fetcher = Fetcher.from_settings(_settings())
        try:
            return await fetcher.fetch(url)
        finally:
            await fetcher.aclose()

    result = asyncio.run(run())
    if result.error or result.body is None:
        raise ValueError(result.error or f"HTTP {result.status}")
    return result.body, dict(result.headers), result.final_url or url


_TEXT_FIELDS = ("title", "summary", "link", "url", "lang", "source")


def _jsonl_items(path: Path, skipped: list[str]) -> Iterator[tuple[Item, set[str]]]:
    """Items of a .jsonl file: a field that cannot be read is dropped with one warning."""
    from .stories import canonical_url

    feed = path.resolve().as_uri()
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                if not isinstance(d, dict):
                    raise ValueError("not an object")
            except ValueError as exc:  # report the line, go on with the others
                err.print(Text(f"{path}:{n}: not a JSON item object ({exc}); skipped",
                               style="red"))
                skipped.append(f"{path}:{n}")
                continue
            fields = {k: _field(d, k, path, n) for k in _TEXT_FIELDS}
            if not (fields["title"] or fields["summary"]):
                err.print(Text(f"{path}:{n}: an item needs a title or a summary; skipped",
                               style="red"))
                skipped.append(f"{path}:{n}")
                continue
            link = fields["link"] or fields["url"]
            yield Item(feed=feed, guid=link or f"{path.name}:{n}", url=canonical_url(link),
                       link=link, title=fields["title"], summary=fields["summary"],
                       lang=fields["lang"] or None, published=_date_field(d, path, n),
                       source=fields["source"]), _labels(d, path, n)


def _warn(path: Path, n: int, name: str, why: str) -> None:
    err.print(Text(f"{path}:{n}: field {name!r} {why}; ignored, the item is still tested",
                   style="yellow"))


def _field(d: dict, name: str, path: Path, n: int) -> str:
    value = d.get(name)
    if value is None or isinstance(value, str):
        return value or ""
    _warn(path, n, name, f"is not a string ({json.dumps(value, ensure_ascii=False)[:40]})")
    return ""


def _date_field(d: dict, path: Path, n: int) -> datetime | None:
    """`published` read by the feed parser's own date reader."""
    from .parse import _parse_date  # the one date reader feeds go through

    value = d.get("published")
    if value in (None, ""):
        return None
    moment = _parse_date(value) if isinstance(value, str) else None
    if moment is None:
        _warn(path, n, "published", f"is not a date ({json.dumps(value, ensure_ascii=False)[:40]})")
    return moment


def _labels(d: dict, path: Path, n: int) -> set[str]:
    """The expected topics: "topics" (or "expect", the seed file's name for it)."""
    value = d.get("topics", d.get("expect", []))
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return set(value)
    _warn(path, n, "topics", "is not a list of topic ids")
    return set()


def highlight(text: str, spans: list[tuple[int, int]], plain: bool) -> Text:
    """The text with matched spans in bold on a terminal; unmarked when piped."""
    t = Text(text)
    if not plain:
        for start, end in spans:
            t.stylize("bold black on yellow", start, end)
    return t


def _print_item(item: Item, matches: list[Match]) -> None:
    plain = not out.is_terminal
    when = item.published.strftime("%Y-%m-%d %H:%M UTC") if item.published else "undated"
    head = ", ".join(m.topic for m in matches) or "—"
    out.print(Text(f"{'✔' if matches else '·'} {head}  ", style="bold green" if matches else "dim")
              + Text(f"{item.source or item.feed} · {when}", style="dim"))
    title, body = item.text_fields()
    spans = {"title": [], "body": []}
    for m in matches:
        for h in m.hits:
            spans[h.field].append((h.start, h.end))
    out.print(Text("  ") + highlight(title, spans["title"], plain))
    if spans["body"]:
        out.print(Text("  ") + highlight(_excerpt(body, spans["body"]), _shift(body, spans["body"]),
                                         plain))
    if item.link:
        out.print(Text(f"  {item.link}", style="blue"))
    for m in matches:
        out.print(Text(f"  {m.topic}: {', '.join(m.terms)}", style="dim"))


_EXCERPT = 160


def _excerpt(body: str, spans: list[tuple[int, int]]) -> str:
    start = max(0, min(s for s, _ in spans) - _EXCERPT // 2)
    return body[start:start + _EXCERPT * 2]


def _shift(body: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    start = max(0, min(s for s, _ in spans) - _EXCERPT // 2)
    end = start + _EXCERPT * 2
    return [(s - start, min(e, end) - start) for s, e in spans if s < end]



# ---------------------------------------------------------------- once / run


def _open_app(sink=None, watchlists: Optional[Path] = None, **overrides):
    from .app import App

    settings = _settings(**({"watchlists": watchlists} if watchlists else {}), **overrides)
    wl = _watchlist(settings.watchlists)
    _step["now"] = f"opening the database ({DB_SETTING})"
    try:
        return App.create(settings, sink=sink, watchlist=wl)
    except StoreError as exc:
        _fail(f"{exc} (check {DB_SETTING})")


@app.command()
def once(
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON object per alert: topic, title, url, source, "
        "published, terms, summary, story, also."),
    watchlists: Optional[Path] = typer.Option(
        None, "--watchlists", "-w", help="Watchlists directory (default: $VEILLE_WATCHLISTS)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every poll to stderr."),
) -> None:
    """Poll every feed once, store what is new, deliver the alerts, and exit.

    Without VEILLE_TELEGRAM_TOKEN the alerts are printed here. A feed seen for the first
    time alerts only on items newer than VEILLE_FIRST_POLL_MAX_AGE_HOURS (24 by default).
    A summary on stderr says what was polled and why matching items made no alert.

    Exit status: 0; 1 when every feed failed; 2 when veille could not start.
    """
    import asyncio

    from .deliver import JsonSink
    from .logs import setup_logging
    from .scheduler import cycle

    settings = _settings()
    # failed polls are listed by the summary; -v logs every poll as it ends
    setup_logging("INFO" if verbose else "ERROR", settings.log_format)
    application = _open_app(JsonSink() if as_json else None, watchlists)

    async def go():
        try:
            with _progress(len(application.feeds()), enabled=not as_json) as advance:
                await application.start()
                outcomes = await cycle(application, on_done=advance)
            if as_json:  # held until now: a story printed once, with every outlet that joined
                await application.sink.finish(application.store)
            return outcomes
        finally:
            await application.aclose()

    _step["now"] = "polling"
    outcomes = asyncio.run(go())
    _cycle_summary(outcomes, settings.first_poll_max_age_hours)
    if outcomes and all(o.status == "error" for o in outcomes):
        raise typer.Exit(1)


def _progress(total: int, enabled: bool):
    """A progress bar on a terminal (stderr) while many feeds are polled."""
    import contextlib

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    if not enabled or not err.is_terminal or total < 5:
        return contextlib.nullcontext(lambda _outcome: None)

    @contextlib.contextmanager
    def bar():
        with Progress(TextColumn("polling"), BarColumn(), MofNCompleteColumn(), console=err,
                      transient=True) as progress:
            task = progress.add_task("feeds", total=total)
            yield lambda _outcome: progress.advance(task)
    return bar()


def _cycle_summary(outcomes, max_age_hours: float) -> None:
    """Each failed feed on a line, then what the cycle did and why matches stayed silent."""
    errors = [o for o in outcomes if o.status == "error"]
    for o in errors:
        where = o.feed.name if o.feed.topic else f"{o.feed.name} <{o.feed.url}>"
        err.print(Text(f"{where}: {o.error}", style="red"))
    count = lambda status: sum(o.status == status for o in outcomes)  # noqa: E731
    err.print(Text(
        f"{_plural(len(outcomes), 'feed')} polled ({count('new')} changed, "
        f"{count('not-modified')} not modified, {count('unchanged')} unchanged), "
        f"{len(errors)} failed; {_plural(sum(o.new_items for o in outcomes), 'new item')}, "
        f"{_plural(sum(len(o.alerts) for o in outcomes), 'alert')}", style="bold"))
    silent = sum(o.silent for o in outcomes)
    if silent:
        undated = sum(o.undated for o in outcomes)
        why = [f"{silent - undated} published more than {max_age_hours:g} h ago"] * bool(
            silent - undated) + [f"{undated} undated"] * bool(undated)
        err.print(Text(
            f"{_plural(silent, 'new matching item')} recorded without an alert, being the "
            f"backlog of a feed's first poll: {' and '.join(why)} "
            "(VEILLE_FIRST_POLL_MAX_AGE_HOURS)"))
    if errors and len(errors) == len(outcomes):
        hint = ("; no feed answered at all: is the network, a proxy or DNS down?"
                if len(errors) > 1 and not any(o.http_status for o in errors) else "")
        err.print(Text(f"every feed failed{hint}", style="red bold"))


@app.command()
def run(
    watchlists: Optional[Path] = typer.Option(
        None, "--watchlists", "-w", help="Watchlists directory (default: $VEILLE_WATCHLISTS)."),
) -> None:
    """Poll every feed on its schedule and deliver alerts, until SIGINT or SIGTERM.

    Edits to watchlists/ are picked up within seconds (a broken edit is reported and the
    last good watchlist kept). Stopping lets polls in flight finish, then exits 0.

    On PostgreSQL, several `veille run` may share one database: polls and deliveries go
    through a job queue in it (VEILLE_QUEUE=off: not), one instance at a time consumes
    Telegram updates, and the others take over what a dead one held (`veille workers`).
    """
    import asyncio
    import signal

    from .logs import setup_logging
    from .scheduler import Runner

    settings = _settings()
    setup_logging(settings.log_level, settings.log_format)
    application = _open_app(None, watchlists)

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await application.start_http()
            await Runner(application).run(stop)
        finally:
            await application.aclose()

    try:
        asyncio.run(go())
    except ConfigError as exc:  # the HTTP port is taken, say
        _fail(str(exc))


# ---------------------------------------------------------------- operator views


@app.command()
def feeds(
    as_json: bool = typer.Option(False, "--json", help="One JSON object per feed."),
) -> None:
    """Every feed with its polling state: last poll, status, items, error streak, next poll.

    Reads the database of VEILLE_DATABASE_URL (never creates one). Times are UTC.
    """
    settings = _settings()
    with _store(settings, create=False) as store:
        rows = [r for r in store.feeds_overview() if r.active]
    if as_json:
        for r in rows:
            sys.stdout.write(json.dumps({
                "name": r.name, "url": r.declared_url, "fetch_url": r.url,
                "last_poll": _iso_or_none(r.last_poll_at), "status": r.last_status,
                "items": r.items_total, "error_streak": r.error_streak,
                "last_error": r.last_error, "next_poll": _iso_or_none(r.next_poll_at)},
                ensure_ascii=False) + "\n")
        return
    if not rows:
        out.print(Text("0 feeds: none polled with this database yet (veille once polls them)"))
        return
    table = [("feed", "last poll", "status", "items", "errors", "next poll", "last error")]
    for r in rows:
        state = "never" if r.last_poll_at is None else ("ok" if r.error_streak == 0 else "failing")
        table.append((r.name, _when(r.last_poll_at), f"{state} {r.last_status or ''}".strip(),
                      str(r.items_total), str(r.error_streak), _when(r.next_poll_at, "-"),
                      " ".join((r.last_error or "").split())))
    for i, line in enumerate(_columns(table, numeric=(3, 4))):
        failing = i and rows[i - 1].error_streak
        out.print(Text(line, style="bold" if i == 0 else "red" if failing else ""))
    failing = sum(r.error_streak > 0 for r in rows)
    out.print(Text(f"{_plural(len(rows), 'feed')}, {failing} failing"))


def _columns(rows: list[tuple[str, ...]], numeric: tuple[int, ...] = ()) -> list[str]:
    """Rows as aligned plain-text lines (the last column unpadded, so never cut or wrapped)."""
    widths = [max(cell_len(r[c]) for r in rows) for c in range(len(rows[0]) - 1)]
    lines = []
    for r in rows:
        cells = [(" " * (w - cell_len(v)) + v) if c in numeric else v + " " * (w - cell_len(v))
                 for c, (v, w) in enumerate(zip(r, widths))]
        lines.append("  ".join(cells + [r[-1]]).rstrip())
    return lines


@app.command()
def alerts(
    topic: Optional[str] = typer.Option(None, "--topic", "-t", help="Only this topic id."),
    since: str = typer.Option("24h", "--since", help="How far back: 30m, 24h, 7d."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per alert."),
) -> None:
    """Alerts recorded in the outbox, newest first, with their delivery status.

    Reads the database of VEILLE_DATABASE_URL (never creates one). Times are UTC.
    """
    start = _since(since)
    settings = _settings()
    with _store(settings, create=False) as store:
        if topic:
            _check_topic(topic, settings, store)
        rows = store.recent_alerts(since=start, topic=topic)
        chats = store.deliveries_of([r.id for r in rows])
    for r in rows:
        if as_json:
            sys.stdout.write(json.dumps({
                "id": r.id, "topic": r.topic, "status": r.status,
                "created": r.created_at.isoformat(),
                "sent": _iso_or_none(r.sent_at), "title": r.title, "url": r.link,
                "source": r.source, "published": _iso_or_none(r.published),
                "terms": list(r.terms),
                "deliveries": [_delivery_json(d) for d in chats.get(r.id, ())]},
                ensure_ascii=False) + "\n")
        else:
            out.print(Text(f"{_when(r.created_at)}  {r.status:<7} {r.topic:<20} ")
                      + Text(r.title, style="bold") + Text(f"  {r.source}  {r.link}", style="dim"))
            for d in chats.get(r.id, ()):
                out.print(Text(f"    → {_chat_label(d)}: {d.status}" + (
                    f" (message {d.message_id}, {_when(d.sent_at)})" if d.sent_at else "")
                    + (f", {_plural(d.attempts, 'attempt')}" if d.attempts > 1 else "")
                    + (f": {d.last_error}" if d.last_error and d.status != "sent" else ""),
                    style="dim"))
    if not as_json:
        out.print(Text(f"{_plural(len(rows), 'alert')} since {since}"
                       + (f" for {topic}" if topic else ""), style="bold"))


def _chat_label(d) -> str:
    return f"chat {d.chat}" + (f" thread {d.thread}" if d.thread else "") + (
        " (destination)" if d.kind == "destination" else "")


def _delivery_json(d) -> dict:
    return {"chat": d.chat, "thread": d.thread or None, "kind": d.kind, "status": d.status,
            "attempts": d.attempts, "sent": _iso_or_none(d.sent_at), "message_id": d.message_id,
            "error": d.last_error}


def _since(text: str) -> datetime:
    """The start of a --since window ('30m', '24h', '7d') before now; exit 2 if unreadable."""
    try:
        return datetime.now(timezone.utc) - _duration(text)
    except ValueError as exc:
        _fail(f"--since: {exc}")


def _check_topic(topic: str, settings, store) -> None:
    """A topic neither in the watchlists nor in the outbox is an error, as in `veille test`."""
    import difflib

    try:
        known = [t.id for t in load_watchlist(settings.watchlists).topics]
    except WatchlistError:  # alerts stay readable while a watchlist edit is broken
        known = []
    if topic in known or store.recent_alerts(since=datetime.min.replace(tzinfo=timezone.utc),
                                             topic=topic, limit=1):
        return
    close = difflib.get_close_matches(topic, known, n=3, cutoff=0.5)
    hint = (f"did you mean {' or '.join(map(repr, close))}?" if close
            else f"known: {', '.join(known) or 'none'}")
    _fail(f"unknown topic {topic!r}: not in {settings.watchlists} nor in the outbox; {hint}")


def _duration(text: str):
    from datetime import timedelta

    import re

    m = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", text)
    if not m:
        raise ValueError(f"{text!r} is not a duration like 30m, 24h, 7d")
    n, unit = int(m.group(1)), m.group(2)
    return timedelta(seconds=n * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit])


def _iso_or_none(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


# ---------------------------------------------------------------- replay


@app.command()
def replay(
    since: str = typer.Option("7d", "--since", help="How far back: 24h, 7d (items are kept "
                              "VEILLE_RETENTION_DAYS days)."),
    watchlists: Optional[Path] = typer.Option(
        None, "--watchlists", "-w", help="The edited watchlists directory (default: "
        "$VEILLE_WATCHLISTS, the one in force: then nothing is gained or lost)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per topic: topic, "
                                 "status, before, after, gained, lost."),
) -> None:
    """Run an edited watchlist over the items stored since --since and show, per topic, the
    items it would gain and lose against the watchlist in force ($VEILLE_WATCHLISTS).

    Reads the database of VEILLE_DATABASE_URL; writes no state. `veille test --replay 7d
    -w DIR` does the same.
    """
    _replay(since, watchlists, as_json)


def _replay(since: str, watchlists: Optional[Path], as_json: bool,
            option: str = "--since") -> None:
    from .replay import replay as replay_items, summary_line

    try:
        window = _duration(since)
    except ValueError as exc:
        _fail(f"{option}: {exc}")
    settings = _settings()
    in_force = _watchlist(None)
    edited = _watchlist(watchlists) if watchlists else in_force
    start = datetime.now(timezone.utc) - window
    with _store(settings, create=False) as store:
        stored = store.stored_items(since=start)
    results = replay_items(stored, in_force, edited)
    if as_json:
        for r in results:
            sys.stdout.write(json.dumps(r.as_json(), ensure_ascii=False) + "\n")
        return
    for r in results:
        note = {"added": " (new topic)", "removed": " (topic removed)"}.get(r.status, "")
        out.print(Text(f"{r.topic}{note}: {r.before} → {r.after} items, "
                       f"+{len(r.gained)} −{len(r.lost)}", style="bold"))
        for sign, style, changes in (("+", "green", r.gained), ("−", "red", r.lost)):
            for c in changes:
                out.print(Text(f"  {sign} ", style=style) + Text(c.item.title)
                          + Text(f"  {c.item.source}  {c.item.link}  [{', '.join(c.terms)}]",
                                 style="dim"))
    out.print(Text(summary_line(results, len(stored), start), style="bold"))
    if window.total_seconds() > settings.retention_days * 86400:
        err.print(Text(f"note: items are kept {settings.retention_days:g} days "
                       "(VEILLE_RETENTION_DAYS); older ones were not replayed", style="yellow"))


@app.command("send-test")
def send_test(
    chat: str = typer.Argument(..., help="Chat id (e.g. 123456789 or -1001234567890) or "
                               "@channelname."),
    thread: int = typer.Option(0, "--thread", help="Forum topic (message_thread_id)."),
) -> None:
    """Send a sample alert to one chat through VEILLE_TELEGRAM_TOKEN, to check the bot
    can post there (and how an alert looks); nothing is stored."""
    import asyncio

    from .telegram.client import build_application, classify
    from .telegram.render import render_alert
    from .watchlist import destination

    settings = _settings()
    if settings.telegram_token is None:
        _fail("VEILLE_TELEGRAM_TOKEN is not set: there is no bot to send with")
    try:
        target = destination(chat)[0]
    except ValueError as exc:
        _fail(str(exc))
    rendered = render_alert(_sample_alert(), None, buttons=False)
    application = build_application(settings.telegram_token.get_secret_value(),
                                    settings.telegram_api_url)

    async def go():
        async with application.bot as bot:
            return await bot.send_message(
                chat_id=int(target) if target.lstrip("-").isdigit() else target,
                text=rendered.text, parse_mode="HTML", message_thread_id=thread or None)

    try:
        message = asyncio.run(go())
    except Exception as exc:  # noqa: BLE001 (one line naming the chat and Telegram's answer)
        _fail(f"chat {chat}: {classify(exc).reason}")
    out.print(f"sent to chat {message.chat.id}" + (f" thread {thread}" if thread else "")
              + f" as message {message.message_id}")


def _sample_alert():
    from .model import Alert, Hit, Item, Match

    title = "veille test: Power of Siberia 2 talks resume in Beijing"
    item = Item("veille://send-test", "send-test", "https://example.org/veille-test",
                "https://example.org/veille-test", title,
                "A sample alert sent by `veille send-test` to check delivery to this chat.",
                published=datetime.now(timezone.utc), source="veille")
    hit = Hit("Power of Siberia 2", "title", 13, 31, "Power of Siberia 2")
    return Alert("send-test", item, Match("send-test", (hit,)), destination="telegram")


@app.command()
def subscribers(
    as_json: bool = typer.Option(False, "--json", help="One JSON document: "
                                 '{"subscribers": [...], "counts_by_topic": {topic: n}}.'),
) -> None:
    """Every chat subscribed through Telegram with its settings and topics, then how many
    active chats follow each topic.

    Reads the database of VEILLE_DATABASE_URL (never creates one). Times are UTC.
    """
    settings = _settings()
    with _store(settings, create=False) as store:
        rows = store.subscribers_overview()
        counts = store.subscriber_counts_by_topic()
    if as_json:
        doc = {"subscribers": [_subscriber_json(s, topics) for s, topics in rows],
               "counts_by_topic": counts}
        sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")
        return
    table = [("chat", "kind", "title", "lang", "zone", "delivery", "state", "topics")]
    for s, topics in rows:
        table.append((str(s.chat_id), s.kind, " ".join((s.title or "-").split()), s.language,
                      s.tz, _delivery_mode(s), _subscriber_state(s), ", ".join(topics) or "-"))
    if rows:
        for i, line in enumerate(_columns(table)):
            out.print(Text(line, style="bold" if i == 0 else "" if rows[i - 1][0].active
                           else "dim"))
    active = sum(s.active for s, _ in rows)
    out.print(Text(f"{_plural(len(rows), 'subscriber')}, {active} active", style="bold"))
    for topic, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        out.print(Text(f"  {topic}: {_plural(n, 'chat')}"))


def _delivery_mode(s) -> str:
    if s.mode != "digest":
        return "instant"
    return "digest hourly" if s.digest_every == "hourly" else f"digest daily {s.digest_at}"


def _subscriber_state(s) -> str:
    if not s.active:
        return f"inactive ({s.inactive_reason or '?'})"
    if s.paused_until and s.paused_until > datetime.now(timezone.utc):
        return f"paused until {_when(s.paused_until)}"
    return "active"


def _subscriber_json(s, topics: tuple[str, ...]) -> dict:
    return {"chat_id": s.chat_id, "kind": s.kind, "title": s.title, "language": s.language,
            "lang": s.lang, "user_lang": s.user_lang, "tz": s.tz, "mode": s.mode,
            "digest_every": s.digest_every, "digest_at": s.digest_at,
            "quiet": [s.quiet_start, s.quiet_end] if s.quiet_start else None,
            "paused_until": _iso_or_none(s.paused_until), "active": s.active,
            "inactive_reason": s.inactive_reason, "dropped": s.dropped,
            "created": _iso_or_none(s.created_at), "topics": list(topics)}


# ---------------------------------------------------------------- stories


@app.command()
def workers(
    as_json: bool = typer.Option(False, "--json", help="One JSON document: instances (with "
                                 "their jobs), queued, orphans, failed, updates_consumer, "
                                 "leased_deliveries."),
) -> None:
    """The instances sharing the PostgreSQL database: each one's heartbeat and the jobs it
    is running (feed polls, chats' deliveries, singletons), the jobs queued, the jobs of a
    stopped instance waiting to be retried, and which instance consumes Telegram updates.

    Needs VEILLE_DATABASE_URL on PostgreSQL (on SQLite one `veille run` does everything).
    """
    from .queue import Timing
    from .store.instances import UPDATES_LOCK

    settings = _settings()
    timing = Timing.from_lease(settings.lease_seconds)
    with _store(settings, create=False) as store:
        try:
            view = store.queue_overview(within=timing.timeout, updates_lock=UPDATES_LOCK)
        except ValueError as exc:
            _fail(str(exc))
    if as_json:
        job = lambda j: {"id": j.id, "task": j.task, "subject": j.subject,  # noqa: E731
                         "attempts": j.attempts, "started": _iso_or_none(j.started_at)}
        sys.stdout.write(json.dumps({
            "instances": [{"worker": i.worker_id, "name": i.name, "alive": i.alive,
                           "started": _iso_or_none(i.started_at),
                           "heartbeat": i.heartbeat_at.isoformat(),
                           "jobs": [job(j) for j in i.jobs]} for i in view.instances],
            "queued": view.queued, "orphans": [job(j) for j in view.orphans],
            "failed": view.failed, "updates_consumer": view.updates_consumer,
            "leased_deliveries": view.leased}, ensure_ascii=False) + "\n")
        return
    if not view.instances:
        out.print(Text("no instance is running on this database (veille run starts one)"))
    for i in view.instances:
        state = "alive" if i.alive else "stopped (no heartbeat: its jobs go to the others)"
        out.print(Text(f"{i.name}  worker {i.worker_id}  {state}  heartbeat "
                       f"{_when(i.heartbeat_at)}  {_plural(len(i.jobs), 'job')}",
                       style="bold" if i.alive else "red"))
        for j in i.jobs:
            out.print(Text(f"    {j.task:<17} {j.subject}  since {_when(j.started_at, '-')}"
                           + (f"  (attempt {j.attempts + 1})" if j.attempts else ""),
                           style="dim"))
    for j in view.orphans:
        out.print(Text(f"  orphaned {j.task} {j.subject}: to be retried", style="yellow"))
    queued = ", ".join(f"{q} {n}" for q, n in sorted(view.queued.items())) or "none"
    out.print(Text(f"queued: {queued}; failed: {view.failed}; deliveries leased: "
                   f"{view.leased}"))
    out.print(Text("Telegram updates: " + (view.updates_consumer or "nobody consumes them")))


@app.command()
def stories(
    topic: Optional[str] = typer.Option(None, "--topic", "-t", help="Only this topic id."),
    since: str = typer.Option("24h", "--since", help="Stories opened or joined since: 30m, "
                              "24h, 7d."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per story."),
) -> None:
    """Stories (one alert each) with the outlets that covered them, latest change first.

    Reads the database of VEILLE_DATABASE_URL (never creates one). Times are UTC.
    """
    start = _since(since)
    settings = _settings()
    with _store(settings, create=False) as store:
        if topic:
            _check_topic(topic, settings, store)
        rows = store.recent_stories(since=start, topic=topic)
    for s in rows:
        if as_json:
            sys.stdout.write(json.dumps({
                "id": s.id, "topic": s.topic, "title": s.title, "url": s.url,
                "source": s.source, "lang": s.lang, "created": s.created_at.isoformat(),
                "updated": s.updated_at.isoformat(), "outlets": list(s.outlets),
                "items": [{"source": m.source, "title": m.title, "url": m.url, "how": m.how,
                           "joined": m.joined_at.isoformat()} for m in s.members]},
                ensure_ascii=False) + "\n")
            continue
        out.print(Text(f"{_when(s.created_at)}  {s.topic:<20} ") + Text(s.title, style="bold")
                  + Text(f"  {s.source}  {s.url}", style="dim"))
        for m in s.joined:
            out.print(Text(f"    + {m.source} ({m.how}, {_when(m.joined_at)}): {m.title}",
                           style="dim"))
    if not as_json:
        outlets = sum(len(s.outlets) for s in rows)
        out.print(Text(f"{_plural(len(rows), 'story', 'stories')} ({_plural(outlets, 'outlet')}) since "
                       f"{since}" + (f" for {topic}" if topic else ""), style="bold"))


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except SystemExit as exc:
        if exc.code == 130:  # typer's answer to a Ctrl-C inside a command: say what it stopped
            err.print(Text(f"veille: interrupted (Ctrl-C) while {_step['now']}", style="red"))
            raise SystemExit(2) from None
        raise


if __name__ == "__main__":
    main()
