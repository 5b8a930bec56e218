"""The operator CLI (typer): validate and backtest watchlists, poll, run, inspect state."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.console import Console
from rich.text import Text

from .errors import ConfigError, ParseError, WatchlistError
from .model import Item, Match
from .watchlist import Watchlist, load_watchlist

app = typer.Typer(
    name="veille",
    help="News-monitoring alert bot: watch feeds for topics, alert once per story.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _settings(**overrides):
    from .config import load_settings

    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        err.print(f"[red]error:[/] {exc}", markup=True)
        raise typer.Exit(2) from None


def _watchlist(directory: Optional[Path]) -> Watchlist:
    directory = directory or _settings().watchlists
    try:
        return load_watchlist(directory)
    except WatchlistError as exc:
        for problem in exc.problems:
            err.print(Text(str(problem)))
        err.print(Text(f"{len(exc.problems)} problem(s) in {directory}", style="red bold"))
        raise typer.Exit(1) from None


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
    per_topic: dict[str, int] = {t.id: 0 for t in wl.topics}
    for source in inputs:
        try:
            items = list(_read_items(source))
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
    if failed:
        raise typer.Exit(1)


def _item_json(item: Item, matches: list[Match]) -> dict:
    return {"link": item.link, "title": item.title, "topics": [m.topic for m in matches],
            "terms": {m.topic: list(m.terms) for m in matches}}


def _read_items(source: str) -> Iterator[Item]:
    if source.endswith(".jsonl"):
        yield from _jsonl_items(Path(source))
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


def _jsonl_items(path: Path) -> Iterator[Item]:
    from .stories import canonical_url

    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                link = str(d.get("link") or d.get("url") or "")
                yield Item(feed=path.as_uri(), guid=link or f"{path.name}:{n}",
                           url=canonical_url(link), link=link, title=str(d.get("title") or ""),
                           summary=str(d.get("summary") or ""), lang=d.get("lang"),
                           published=_iso(d.get("published")), source=str(d.get("source") or ""))
            except (ValueError, TypeError, AttributeError) as exc:
                raise ValueError(f"line {n}: not a JSON item object ({exc})") from None


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


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
