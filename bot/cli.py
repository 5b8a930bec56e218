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
    """'1 feed', '2 feeds' ('1 news-search feed', '3 entries' with many='entries')."""
    return f"{n} {word if n == 1 else many or word + 's'}"


def _when(dt: datetime | None, none: str = "never") -> str:
    """The one time format of veille's output: UTC, with its zone."""
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if dt else none


def _settings(**overrides):
    from .config import load_settings

    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        err.print(f"[red]error:[/] {exc}", markup=True)
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
    out.print(Text(f"ok: {wl.directory}: {len(wl.feeds)} feeds, {len(wl.topics)} topics, "
                   f"{len(wl.aliases)} alias groups, {searches} news-search feeds", style="green"))
    for t in wl.topics:
        langs = ",".join(lang for lang, _ in t.search) or "-"
        out.print(Text(f"  {t.id:<24} {t.priority:<6} {len(t.compiled.terms):>3} terms  "
                       f"search: {langs:<14} {t.title}"))


# ---------------------------------------------------------------- test


@app.command("test")
def test_cmd(
    inputs: list[str] = typer.Argument(
        ..., metavar="INPUT...", help="Feed files, feed URLs, or .jsonl files of items."),
    watchlists: Optional[Path] = typer.Option(
        None, "--watchlists", "-w", help="Watchlists directory (default: $VEILLE_WATCHLISTS)."),
    as_json: bool = typer.Option(
        False, "--json", help="One JSON object per item: link, title, topics, terms."),
    show_all: bool = typer.Option(False, "--all", help="Also list items that match nothing."),
    topic: Optional[str] = typer.Option(None, "--topic", "-t", help="Only this topic id."),
) -> None:
    """Backtest: show which topics each item of INPUT matches, and why. Writes no state.

    Exit status: 0, or 1 when some input could not be read or parsed (the others are
    still processed and reported).
    """
    wl = _watchlist(watchlists)
    if topic and not wl.topic(topic):
        err.print(f"unknown topic {topic!r}; known: {', '.join(t.id for t in wl.topics)}")
        raise typer.Exit(2)
    matcher = wl.matcher
    failed = total = hit = 0
    skipped: list[str] = []  # .jsonl lines that were not items
    per_topic: dict[str, int] = {t.id: 0 for t in wl.topics}
    for source in inputs:
        try:
            items = list(_read_items(source, skipped))
        except (OSError, ParseError, ValueError) as exc:
            failed += 1
            err.print(Text(f"{source}: {exc}", style="red"))
            continue
        for item in items:
            total += 1
            matches = [m for m in matcher.match_item(item) if not topic or m.topic == topic]
            hit += bool(matches)
            for m in matches:
                per_topic[m.topic] += 1
            if as_json:
                sys.stdout.write(json.dumps(_item_json(item, matches), ensure_ascii=False) + "\n")
            elif matches or show_all:
                _print_item(item, matches)
    if not as_json:
        counts = ", ".join(f"{k} {v}" for k, v in per_topic.items() if not topic or k == topic)
        out.print(Text(f"{total} items, {hit} matched ({counts})"
                       + (f"; {failed} input(s) failed" if failed else ""), style="bold"))
    if failed or skipped:
        raise typer.Exit(1)


def _item_json(item: Item, matches: list[Match]) -> dict:
    return {"link": item.link, "title": item.title, "topics": [m.topic for m in matches],
            "terms": {m.topic: list(m.terms) for m in matches}}


def _read_items(source: str, skipped: list[str]) -> Iterator[Item]:
    if source.endswith(".jsonl"):
        yield from _jsonl_items(Path(source), skipped)
        return
    from .parse import parse_feed

    if "://" in source and not source.startswith("file://"):
        body, headers, url = _fetch_once(source)
    else:
        path = Path(source.removeprefix("file://"))
        body, headers, url = path.read_bytes(), {}, path.resolve().as_uri()
    yield from parse_feed(body, url=url, headers=headers).items


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


def _jsonl_items(path: Path, skipped: list[str]) -> Iterator[Item]:
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
                published = _iso(d.get("published"))
            except ValueError as exc:  # report the line, go on with the others
                err.print(Text(f"{path}:{n}: not a JSON item object ({exc}); skipped",
                               style="red"))
                skipped.append(f"{path}:{n}")
                continue
            link = str(d.get("link") or d.get("url") or "")
            yield Item(feed=feed, guid=link or f"{path.name}:{n}", url=canonical_url(link),
                       link=link, title=str(d.get("title") or ""),
                       summary=str(d.get("summary") or ""), lang=d.get("lang"),
                       published=published, source=str(d.get("source") or ""))


def _iso(value: object) -> datetime | None:
    if not value:
        return None
    dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def highlight(text: str, spans: list[tuple[int, int]], plain: bool) -> Text:
    """The text with matched spans emphasised: bold colour on a terminal, «» when piped."""
    if plain:
        pieces, last = [], 0
        for start, end in sorted(spans):
            if start < last:
                continue
            pieces += [text[last:start], "«", text[start:end], "»"]
            last = end
        return Text("".join(pieces) + text[last:])
    t = Text(text)
    for start, end in spans:
        t.stylize("bold black on yellow", start, end)
    return t


def _print_item(item: Item, matches: list[Match]) -> None:
    plain = not out.is_terminal
    when = item.published.strftime("%Y-%m-%d %H:%M") if item.published else "undated"
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
    out.print(Text(f"  {item.link}", style="blue"))
    for m in matches:
        why = "; ".join(f"{h.term} ← {h.text}" for h in m.hits)
        out.print(Text(f"  {m.topic}: {why}", style="dim"))


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
    setup_logging("INFO" if verbose else "WARNING", settings.log_format)
    application = _open_app(JsonSink() if as_json else None, watchlists)

    async def go():
        try:
            with _progress(len(application.feeds()), enabled=not as_json) as advance:
                await application.start()
                return await cycle(application, on_done=advance)
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

    asyncio.run(go())


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
    try:
        window = _duration(since)
    except ValueError as exc:
        _fail(f"--since: {exc}")
    settings = _settings()
    with _store(settings, create=False) as store:
        if topic:
            _check_topic(topic, settings, store)
        rows = store.recent_alerts(since=datetime.now(timezone.utc) - window, topic=topic)
    for r in rows:
        if as_json:
            sys.stdout.write(json.dumps({
                "id": r.id, "topic": r.topic, "status": r.status,
                "created": r.created_at.isoformat(),
                "sent": _iso_or_none(r.sent_at), "title": r.title, "url": r.link,
                "source": r.source, "published": _iso_or_none(r.published),
                "terms": list(r.terms)}, ensure_ascii=False) + "\n")
        else:
            out.print(Text(f"{_when(r.created_at)}  {r.status:<7} {r.topic:<20} ")
                      + Text(r.title, style="bold") + Text(f"  {r.source}  {r.link}", style="dim"))
    if not as_json:
        out.print(Text(f"{_plural(len(rows), 'alert')} since {since}"
                       + (f" for {topic}" if topic else ""), style="bold"))


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
    _fail(f"unknown topic {topic!r} (in {settings.watchlists} and the outbox); {hint}")


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
