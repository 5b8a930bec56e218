"""Optional LLM summaries through an OpenAI-compatible endpoint (VEILLE_LLM_URL, _MODEL, _KEY;
off unless a URL is set).

The model is told to use only the text given, in the item's language. Its answer is taken
only when it is a short plain answer that names at least one of the matched terms; on any
error, timeout, refusal, garbage or an answer naming none of them (a fact it may have
invented), the extractive summary stays. The key goes only into the Authorization header:
it is never logged nor put in an error.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from typing import Any

import httpx

from .model import Item, Match
from .summarize import CAP, Summary, marks

log = logging.getLogger("veille.llm")

SYSTEM = ("You summarise news for people who follow a topic. Use only the text given: add no "
          "fact, name or number that is not in it. Answer in {lang}, in one to three plain "
          "sentences, at most {cap} characters, with no preamble, list or markup. Keep these "
          "terms as they are written: {terms}.")
_REFUSAL = re.compile(
    r"^(i('m| am)? (sorry|unable|cannot|can't|can not)|as an ai|i won't|"
    r"je ne peux pas|désolé|ich kann nicht|leider kann ich|не могу|извините|"
    r"lo siento|no puedo|抱歉|我无法|我不能)", re.IGNORECASE)
_MARKUP = re.compile(r"```|^\s*[-*#>]|\{\s*\"|<[a-z]+[ >]", re.MULTILINE)
_LANGS = {"en": "English", "fr": "French", "ru": "Russian", "de": "German", "zh": "Chinese",
          "es": "Spanish", "it": "Italian", "pt": "Portuguese", "uk": "Ukrainian"}


@dataclass(frozen=True, slots=True)
class LLM:
    """Where and how to ask: an OpenAI-compatible base URL (…/v1), a model, a key."""

    url: str
    model: str
    key: str | None = None
    timeout: float = 20.0

    @classmethod
    def from_settings(cls, settings: Any) -> "LLM | None":
        """The configured endpoint, or None when VEILLE_LLM_URL is unset."""
        if not settings.llm_url:
            return None
        key = settings.llm_key.get_secret_value() if settings.llm_key else None
        return cls(settings.llm_url.rstrip("/"), settings.llm_model or "default", key,
                   settings.llm_timeout)


def request_body(llm: LLM, item: Item, match: Match | None, text: str) -> dict[str, Any]:
    """The chat-completions request for one item (pure)."""
    terms = ", ".join(f'"{t}"' for t in (match.terms if match else ())) or "(none)"
    lang = _LANGS.get((item.lang or "en").split("-")[0].lower(), item.lang or "English")
    return {
        "model": llm.model,
        "temperature": 0,
        "max_tokens": 300,
        "messages": [
            {"role": "system", "content": SYSTEM.format(lang=lang, cap=CAP, terms=terms)},
            {"role": "user", "content": f"Title: {item.title}\n\nText:\n{text[:6000]}"},
        ],
    }


def check_answer(answer: str, match: Match | None) -> str | None:
    """Why an answer is not usable (refusal, garbage, too long, names no matched term), or
    None when it is (pure)."""
    flat = " ".join(answer.split())
    if len(flat) < 20 or not any(ch.isalpha() for ch in flat):
        return "empty or garbage"
    if _REFUSAL.match(flat):
        return "refusal"
    if _MARKUP.search(answer) or len(flat) > CAP * 1.5:
        return "not a short plain answer"
    terms = match.terms if match else ()
    if terms and not any(t.casefold() in flat.casefold() for t in terms):
        return "names none of the matched terms"
    return None


async def llm_summary(client: httpx.AsyncClient, llm: LLM, item: Item, match: Match | None,
                      text: str, fallback: Summary) -> Summary:
    """The model's summary of text, or `fallback` when it fails in any way; never raises."""
    headers = {"Authorization": f"Bearer {llm.key}"} if llm.key else {}
    try:
        response = await client.post(f"{llm.url}/chat/completions", headers=headers,
                                     json=request_body(llm, item, match, text),
                                     timeout=llm.timeout)
        response.raise_for_status()
        choice = response.json()["choices"][0]
        if choice.get("finish_reason") == "content_filter" or choice["message"].get("refusal"):
            return _fallback(fallback, llm, "refusal")
        answer = str(choice["message"]["content"] or "")
    except httpx.TimeoutException:
        return _fallback(fallback, llm, "timed out")
    except httpx.HTTPStatusError as exc:
        return _fallback(fallback, llm, f"HTTP {exc.response.status_code}")
    except httpx.HTTPError as exc:
        return _fallback(fallback, llm, type(exc).__name__)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return _fallback(fallback, llm, "not a chat-completions answer")
    problem = check_answer(answer, match)
    if problem:
        return _fallback(fallback, llm, problem)
    flat = " ".join(answer.split())
    terms = sorted(match.terms, key=len, reverse=True) if match else []
    return replace(fallback, text=flat, marks=marks(flat, terms), origin="llm")


def _fallback(fallback: Summary, llm: LLM, why: str) -> Summary:
    log.info("llm", extra={"fields": {"url": llm.url, "model": llm.model, "fallback": why}})
    return fallback
