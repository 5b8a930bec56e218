"""LLM summaries against a local fake OpenAI-compatible endpoint: a good answer, a timeout,
a refusal, garbage, an invented fact (naming none of the matched terms); the key is sent
and never logged."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from bot.llm import LLM, check_answer, llm_summary, request_body
from bot.model import Hit, Item, Match
from bot.summarize import summarize

ITEM = Item(feed="f", guid="g", url="https://n.example/a", link="https://n.example/a",
            title="Gazprom et CNPC signent le contrat Force de Sibérie 2", lang="fr",
            summary="Gazprom et CNPC ont signé mardi un contrat contraignant pour Force de "
                    "Sibérie 2. Le volume prévu est de 50 milliards de mètres cubes par an.")
MATCH = Match("pos2", (Hit('"Force de Sibérie 2"', "title", 35, 53, "Force de Sibérie 2"),))
FALLBACK = summarize(ITEM, MATCH, None)
KEY = "sk-test-0123456789abcdef"


def completion(content: str | None, finish: str = "stop", **extra: object) -> bytes:
    message = {"role": "assistant", "content": content, **extra}
    return json.dumps({"id": "x", "object": "chat.completion", "choices": [
        {"index": 0, "message": message, "finish_reason": finish}]}).encode()


GOOD = ("Gazprom et CNPC ont signé mardi le contrat de Force de Sibérie 2, pour 50 milliards "
        "de mètres cubes par an.")


async def ask(feed_server, path: str, body: bytes | None = None, *, timeout: float = 2.0):
    if body is not None:
        feed_server.set_feed(f"{path}/chat/completions", body, content_type="application/json")
    llm = LLM(feed_server.url(path), "small-model", KEY, timeout)
    async with httpx.AsyncClient() as client:
        return await llm_summary(client, llm, ITEM, MATCH, ITEM.summary, FALLBACK)


async def test_a_good_answer_is_the_summary(feed_server, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    got = await ask(feed_server, "/good/v1", completion(GOOD))
    assert (got.text, got.origin) == (GOOD, "llm")
    assert [got.text[a:b] for a, b in got.marks] == ["Force de Sibérie 2"]
    sent = feed_server.requests("/good/v1/chat/completions")[-1]
    assert sent.get("authorization") == f"Bearer {KEY}"
    assert KEY not in caplog.text


@pytest.mark.parametrize("name,body", [
    ("refusal", completion("Je suis désolé, je ne peux pas résumer ce texte.")),
    ("refusal-field", completion(None, refusal="I can't help with that.")),
    ("filtered", completion(GOOD, finish="content_filter")),
    ("refused-anyway", completion(GOOD, refusal="I can't help with that.")),
    ("garbage", b"<html>502 Bad Gateway</html>"),
    ("empty", completion("")),
    ("markup", completion("```json\n{\"summary\": \"Force de Sibérie 2\"}\n```")),
    ("invented", completion("Moscou et Pékin ont conclu mardi un accord gazier historique de "
                            "400 milliards de dollars sur trente ans.")),
    ("no-choices", json.dumps({"choices": []}).encode()),
])
async def test_a_bad_answer_keeps_the_extractive_summary(feed_server, caplog, name, body) -> None:
    caplog.set_level(logging.DEBUG)
    got = await ask(feed_server, f"/{name}/v1", body)
    assert got == FALLBACK and got.origin == "feed"
    assert KEY not in caplog.text


class _Kept(logging.Handler):
    """The records of one logger, whatever logging setup another test left behind."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_an_http_error_or_a_timeout_keeps_the_extractive_summary(feed_server) -> None:
    kept, logger = _Kept(), logging.getLogger("veille.llm")
    logger.addHandler(kept)
    level, logger.level = logger.level, logging.DEBUG
    try:
        feed_server.set_status("/down/v1/chat/completions", 503)
        feed_server.set_stall("/slow/v1/chat/completions")
        assert await ask(feed_server, "/down/v1") == FALLBACK
        assert await ask(feed_server, "/slow/v1", timeout=0.3) == FALLBACK
    finally:
        logger.removeHandler(kept)
        logger.setLevel(level)
    assert [r.fields["fallback"] for r in kept.records] == ["HTTP 503", "timed out"]
    assert all(KEY not in str(r.__dict__) for r in kept.records)


def test_the_request_says_to_use_only_the_text_in_the_items_language() -> None:
    body = request_body(LLM("http://x/v1", "m"), ITEM, MATCH, ITEM.summary)
    system, user = body["messages"]
    assert "only the text given" in system["content"] and "French" in system["content"]
    assert '"Force de Sibérie 2"' in system["content"] and ITEM.summary in user["content"]
    assert body["temperature"] == 0 and body["model"] == "m"


@pytest.mark.parametrize("answer,problem", [
    (GOOD, None),
    ("I'm sorry, but I cannot do that.", "refusal"),
    ("Не могу выполнить этот запрос про Force de Sibérie 2.", "refusal"),
    ("?!? 123 ...", "empty or garbage"),
    ("- Force de Sibérie 2\n- contrat signé mardi", "not a short plain answer"),
    ("Un accord gazier a été signé mardi entre Moscou et Pékin.", "names none of the matched terms"),
])
def test_check_answer(answer: str, problem: str | None) -> None:
    assert check_answer(answer, MATCH) == problem


def test_the_key_comes_from_settings_and_stays_secret() -> None:
    from bot.config import Settings

    settings = Settings(_env_file=None, llm_url="http://127.0.0.1:9/v1/", llm_model="m",
                        llm_key=KEY)
    llm = LLM.from_settings(settings)
    assert (llm.url, llm.model, llm.key) == ("http://127.0.0.1:9/v1", "m", KEY)
    assert KEY not in repr(settings) and LLM.from_settings(Settings(_env_file=None)) is None
