"""The fake Bot API answers as Telegram does, driven through the real python-telegram-bot client.

Raw httpx only where PTB cannot send the shape (a GET with a query string, bad UTF-8, a
malformed token). The HTML table checks the parser directly, then a few rows through PTB.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import socket
import subprocess
import sys
import threading
import time
import warnings

import httpx
import pytest
from telegram import (
    Bot,
    BotCommand,
    BotCommandScopeAllPrivateChats,
    BotCommandScopeChat,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
)
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TimedOut,
)
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

from tests.conftest import REPO
from tests.fakebot import (
    NOT_MODIFIED,
    EntityParseError,
    FakeBotAPI,
    bot_command_entities,
    fake_bot,  # noqa: F401  (fixture)
    parse_html,
)

USER, OTHER, GROUP, SUPERGROUP, CHANNEL, FORUM = 42, 43, -5, -1001, -1002, -1003


@pytest.fixture
def fake(fake_bot: FakeBotAPI) -> FakeBotAPI:  # noqa: F811
    """The fake with a private chat, a group, a supergroup, a channel and a forum."""
    fake_bot.add_chat(USER, first_name="Ana", language_code="fr")
    fake_bot.add_chat(OTHER, first_name="Ben")
    fake_bot.add_chat(GROUP, "group", title="Analystes")
    fake_bot.add_chat(SUPERGROUP, "supergroup", title="Veille large")
    fake_bot.add_chat(CHANNEL, "channel", title="Veille", username="veille_news")
    fake_bot.add_chat(FORUM, "supergroup", title="Salle", is_forum=True, topics=(7, 9))
    return fake_bot


@pytest.fixture
async def bot(fake: FakeBotAPI):
    async with Bot(fake.token, base_url=fake.base_url) as client:
        yield client


def keyboard(*data: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(d.title(), callback_data=d)] for d in data])


def seconds(error: RetryAfter) -> float:
    """retry_after in seconds: PTB 22 gives an int (deprecated) or a timedelta (PTB_TIMEDELTA)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = error.retry_after
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


# -- HTML as Telegram parses it ------------------------------------------------------------

GOOD_HTML = [
    ("<b>Alerte</b> et <i>suite</i>", "Alerte et suite",
     [(0, 6, "bold"), (10, 5, "italic")]),
    ("<strong>a</strong><em>b</em><ins>c</ins><del>d</del><s>e</s><strike>f</strike><u>g</u>",
     "abcdefg",
     [(0, 1, "bold"), (1, 1, "italic"), (2, 1, "underline"), (3, 1, "strikethrough"),
      (4, 1, "strikethrough"), (5, 1, "strikethrough"), (6, 1, "underline")]),
    ('<a href="https://example.org/p?q=1&amp;r=2">lien</a>', "lien",
     [(0, 4, "text_link", {"url": "https://example.org/p?q=1&r=2"})]),
    ("<code>x &lt; y &amp;&amp; z &gt; 0</code>", "x < y && z > 0", [(0, 14, "code")]),
    ('<pre><code class="language-python">print(1)</code></pre>', "print(1)",
     [(0, 8, "pre", {"language": "python"})]),
    ("<pre>brut</pre>", "brut", [(0, 4, "pre")]),
    ("<blockquote>citation</blockquote>", "citation", [(0, 8, "blockquote")]),
    ("<blockquote expandable>long</blockquote>", "long", [(0, 4, "expandable_blockquote")]),
    ("<tg-spoiler>fin</tg-spoiler> <span class=\"tg-spoiler\">x</span>", "fin x",
     [(0, 3, "spoiler"), (4, 1, "spoiler")]),
    ('<tg-emoji emoji-id="5368324170671202286">👍</tg-emoji>', "👍",
     [(0, 2, "custom_emoji", {"custom_emoji_id": "5368324170671202286"})]),
    ("&#128512; &#x1F600; &quot;q&quot;", '😀 😀 "q"', []),
    ("😀 <b>x</b>", "😀 x", [(3, 1, "bold")]),  # offsets in UTF-16: the emoji counts 2
    ("<B>Haut</B>", "Haut", [(0, 4, "bold")]),  # tag names are case-insensitive
    ("<b>a <i>b</i></b>", "a b", [(0, 3, "bold"), (2, 1, "italic")]),
    ("<b></b>x", "x", []),  # empty entities vanish
    ('<a href="javascript:alert(1)">x</a>', "x", []),  # a link Telegram refuses is dropped
    ("שלום <b>עולם</b>", "שלום עולם", [(5, 4, "bold")]),
    ("<b>a</b >", "a", [(0, 1, "bold")]),
    ("<b>a</>", "a", [(0, 1, "bold")]),  # TDLib accepts an empty end tag
]


@pytest.mark.parametrize(("html", "text", "entities"), GOOD_HTML)
def test_good_html_gives_telegrams_text_and_entities(html, text, entities) -> None:
    expected = [{"offset": o, "length": n, "type": t, **(extra[0] if extra else {})}
                for o, n, t, *extra in entities]
    assert parse_html(html, strict=True) == (text, expected)


BAD_HTML = [
    ("Hello world <div>x</div>", 'Unsupported start tag "div" at byte offset 12'),
    ("é <div>", 'Unsupported start tag "div" at byte offset 3'),  # offsets are UTF-8 bytes
    ("<script>alert(1)</script>", 'Unsupported start tag "script" at byte offset 0'),
    ("<b>gras", 'Can\'t find end tag corresponding to start tag "b"'),
    ("<b><i>x</b></i>", 'Unmatched end tag at byte offset 7, expected "</i>", found "</b>"'),
    ("x</b>", "Unexpected end tag at byte offset 1"),
    ("a < b", 'Unsupported start tag "" at byte offset 2'),
    ("<b", "Unclosed start tag at byte offset 0"),
    ("<b>x</b y>", "Unclosed end tag at byte offset 4"),
    ("<span>x</span>", 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
    ('<tg-emoji emoji-id="abc">x</tg-emoji>', "Invalid custom emoji identifier specified"),
    ('<a href=x"y">z</a>', "Unexpected end of name token at byte offset 8"),
    ('<a ="x">z</a>', 'Empty attribute name in the tag "a" at byte offset 0'),
    ("&#55357;", "Text contains invalid Unicode characters after decoding HTML entities, "
                 "check for unmatched surrogate code units"),
]


@pytest.mark.parametrize(("html", "reason"), BAD_HTML)
def test_bad_html_is_refused_with_telegrams_words(html, reason) -> None:
    with pytest.raises(EntityParseError) as caught:
        parse_html(html, strict=False)
    assert str(caught.value) == reason


@pytest.mark.parametrize(("html", "lenient", "strict"), [
    ("AT&T", "AT&T", 'Unescaped "&" at byte offset 2'),
    ("a > b", "a > b", 'Unescaped ">" at byte offset 2'),
    ("&nbsp;x", "&nbsp;x", 'Unescaped "&" at byte offset 0'),
    ('<a href="https://e.org/?a=1&b=2">x</a>', "x", 'Unescaped "&" at byte offset 27'),
])
def test_bare_ampersand_and_gt_telegram_keeps_the_strict_fake_refuses(html, lenient, strict):
    assert parse_html(html, strict=False)[0] == lenient
    with pytest.raises(EntityParseError, match=strict):
        parse_html(html, strict=True)


@pytest.mark.parametrize(("text", "commands"), [
    ("/start", ["/start"]),
    ("/subscribe@veille_test_bot ports", ["/subscribe@veille_test_bot"]),
    ("voir /help puis /mysubs", ["/help", "/mysubs"]),
    ("a/b et http://x.org/y", []),
    ("/x/y", []),
    ("/cmd@ab", []),  # a bot username is 3-32 characters: no entity at all
    ("😀 /tz Europe/Paris", ["/tz"]),
])
def test_user_commands_carry_bot_command_entities_as_telegram_finds_them(text, commands):
    found = [text.encode("utf-16-le")[2 * e["offset"]: 2 * (e["offset"] + e["length"])]
             .decode("utf-16-le") for e in bot_command_entities(text)]
    assert found == commands


async def test_html_errors_reach_ptb_as_bad_request(fake, bot) -> None:
    with pytest.raises(BadRequest, match='(?i)can\'t parse entities: unsupported start tag '
                                         '"div" at byte offset 12'):
        await bot.send_message(USER, "Hello world <div>x</div>", parse_mode="HTML")
    assert fake.calls[-1].description == (
        "Bad Request: can't parse entities: Unsupported start tag \"div\" at byte offset 12"
    )
    assert fake.sent_count(USER) == 0
    sent = await bot.send_message(USER, "<b>Port</b> &amp; <i>rade</i>", parse_mode="HTML")
    assert sent.text == "Port & rade"
    assert [(e.type, e.offset, e.length) for e in sent.entities] == [
        ("bold", 0, 4), ("italic", 7, 4)]


# -- lengths ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "ok"), [
    ("a" * 4096, True),
    ("a" * 4097, False),
    ("😀" * 2048, True),  # 4096 UTF-16 code units
    ("😀" * 2048 + "a", False),
    ("é" * 4096, True),  # 8192 bytes, 4096 code units
    ("<b>" + "a" * 4096 + "</b>", True),  # counted after entity parsing
    ("&amp;" * 4096, True),
    ("&amp;" * 4097, False),
    ("\n " + "a" * 4096 + " \n", True),  # Telegram trims surrounding whitespace first
])
async def test_text_length_counts_utf16_code_units_after_parsing(fake, bot, text, ok) -> None:
    if ok:
        sent = await bot.send_message(USER, text, parse_mode="HTML")
        assert len(sent.text.encode("utf-16-le")) // 2 <= 4096
        assert fake.sent_count(USER) == 1
    else:
        with pytest.raises(BadRequest, match="(?i)^message is too long$"):
            await bot.send_message(USER, text, parse_mode="HTML")
        assert fake.sent_count(USER) == 0


@pytest.mark.parametrize("text", ["<b></b>", "   ", "\n\n"])
async def test_a_text_empty_after_parsing_is_refused(fake, bot, text) -> None:
    with pytest.raises(BadRequest, match="(?i)^message text is empty$"):
        await bot.send_message(USER, text, parse_mode="HTML")


async def test_plain_text_is_not_parsed(fake, bot) -> None:
    sent = await bot.send_message(USER, "<b>pas du HTML</b> & co")
    assert sent.text == "<b>pas du HTML</b> & co" and not sent.entities


async def test_markdown_is_refused_loudly_not_faked(fake, bot) -> None:
    with pytest.raises(BadRequest, match="(?i)does not model parse_mode markdownv2"):
        await bot.send_message(USER, "*gras*", parse_mode="MarkdownV2")


# -- messages as Telegram returns and keeps them ----------------------------------------------

async def test_a_sent_message_has_telegrams_shape(fake, bot) -> None:
    before = int(time.time())
    sent = await bot.send_message(
        USER, '<b>Port</b> <a href="https://example.org/a">lien</a>', parse_mode="HTML",
        reply_markup=keyboard("mute:ports"), disable_notification=True,
        link_preview_options=LinkPreviewOptions(is_disabled=True),
    )
    second = await bot.send_message(USER, "deux")
    assert (sent.message_id, second.message_id) == (1, 2)
    assert sent.from_user.id == 123456 and sent.from_user.is_bot
    assert sent.chat.id == USER and sent.chat.type == "private" and sent.chat.first_name == "Ana"
    assert before <= sent.date.timestamp() <= time.time() + 1
    assert sent.reply_markup == keyboard("mute:ports")
    assert sent.link_preview_options.is_disabled
    kept = fake.messages(USER)[0]
    assert kept.text == "Port lien" and kept.html.startswith("<b>Port</b>")
    assert kept.entities[1] == {"offset": 5, "length": 4, "type": "text_link",
                                "url": "https://example.org/a"}
    assert kept.disable_notification and kept.link_preview_options == {"is_disabled": True}
    assert kept.reply_markup == {"inline_keyboard": [[{"callback_data": "mute:ports",
                                                       "text": "Mute:Ports"}]]}
    assert fake.sent_count() == 2 and fake.sent_count(OTHER) == 0


async def test_message_ids_count_per_chat(fake, bot) -> None:
    ids = [(await bot.send_message(chat, "x")).message_id for chat in (USER, OTHER, USER)]
    assert ids == [1, 1, 2]


async def test_channels_are_addressed_by_username_and_posts_have_a_sender_chat(fake, bot):
    post = await bot.send_message("@veille_news", "Bulletin")
    assert post.chat.id == CHANNEL and post.sender_chat.id == CHANNEL and post.from_user is None
    assert fake.messages("@veille_news")[0].text == "Bulletin"
    assert (await bot.get_chat("@veille_news")).title == "Veille"


async def test_unknown_chat_is_not_found(fake, bot) -> None:
    with pytest.raises(BadRequest, match="(?i)^chat not found$"):
        await bot.send_message(777, "x")
    with pytest.raises(BadRequest, match="(?i)^chat not found$"):
        await bot.send_message("@nobody_here", "x")
    with pytest.raises(BadRequest, match="(?i)^chat not found$"):
        await bot.get_chat(777)


async def test_forum_topics(fake, bot) -> None:
    sent = await bot.send_message(FORUM, "Sujet", message_thread_id=7)
    assert sent.message_thread_id == 7 and sent.is_topic_message
    assert fake.messages(FORUM)[0].message_thread_id == 7
    with pytest.raises(BadRequest, match="(?i)^message thread not found$"):
        await bot.send_message(FORUM, "x", message_thread_id=8)
    with pytest.raises(BadRequest, match="(?i)^message thread not found$"):
        await bot.send_message(GROUP, "x", message_thread_id=7)
    posted = fake.user_sends(FORUM, "/latest", message_thread_id=9)
    assert posted["message_thread_id"] == 9 and posted["is_topic_message"]


async def test_edit_rules(fake, bot) -> None:
    sent = await bot.send_message(USER, "<b>v1</b>", parse_mode="HTML",
                                  reply_markup=keyboard("a"))
    with pytest.raises(BadRequest, match="(?i)^message is not modified: specified new"):
        await bot.edit_message_text("<b>v1</b>", USER, sent.message_id, parse_mode="HTML",
                                    reply_markup=keyboard("a"))
    assert fake.calls[-1].description == NOT_MODIFIED
    # same text, other entities: modified
    await bot.edit_message_text("<i>v1</i>", USER, sent.message_id, parse_mode="HTML",
                                reply_markup=keyboard("a"))
    # same text and entities, other keyboard: modified
    edited = await bot.edit_message_text("<i>v1</i>", USER, sent.message_id, parse_mode="HTML",
                                         reply_markup=keyboard("b"))
    assert edited.edit_date is not None and edited.reply_markup == keyboard("b")
    # no reply_markup: Telegram removes the keyboard
    await bot.edit_message_text("v2", USER, sent.message_id)
    kept = fake.messages(USER)[0]
    assert (kept.text, kept.html, kept.edited, kept.reply_markup) == ("v2", "v2", 3, None)
    with pytest.raises(BadRequest, match="(?i)^message to edit not found$"):
        await bot.edit_message_text("x", USER, 99)
    with pytest.raises(BadRequest, match="(?i)^message is too long$"):
        await bot.edit_message_text("a" * 4097, USER, sent.message_id)
    with pytest.raises(BadRequest, match="(?i)^message can't be edited$"):
        await bot.edit_message_text("x", USER, fake.user_sends(USER, "salut")["message_id"])


async def test_edit_reply_markup_rules(fake, bot) -> None:
    sent = await bot.send_message(USER, "choix", reply_markup=keyboard("a"))
    with pytest.raises(BadRequest, match="(?i)^message is not modified"):
        await bot.edit_message_reply_markup(USER, sent.message_id, reply_markup=keyboard("a"))
    edited = await bot.edit_message_reply_markup(USER, sent.message_id,
                                                 reply_markup=keyboard("a", "b"))
    assert len(edited.reply_markup.inline_keyboard) == 2
    await bot.edit_message_reply_markup(USER, sent.message_id)
    assert fake.messages(USER)[0].reply_markup is None


async def test_delete_rules(fake, bot) -> None:
    sent = await bot.send_message(USER, "éphémère")
    assert await bot.delete_message(USER, sent.message_id) is True
    assert fake.messages(USER)[0].deleted and fake.sent_count(USER) == 1
    with pytest.raises(BadRequest, match="(?i)^message to delete not found$"):
        await bot.delete_message(USER, sent.message_id)
    with pytest.raises(BadRequest, match="(?i)^message to edit not found$"):
        await bot.edit_message_text("x", USER, sent.message_id)
    with pytest.raises(BadRequest, match="(?i)^message to delete not found$"):
        await bot.delete_message(USER, 404)


@pytest.mark.parametrize(("data", "ok"), [("x", True), ("é" * 32, True), ("a" * 64, True),
                                          ("a" * 65, False), ("é" * 33, False)])
async def test_callback_data_is_1_to_64_bytes(fake, bot, data, ok) -> None:
    if ok:
        await bot.send_message(USER, "x", reply_markup=keyboard(data))
    else:
        with pytest.raises(BadRequest, match="(?i)^button_data_invalid$"):
            await bot.send_message(USER, "x", reply_markup=keyboard(data))
        assert fake.sent_count(USER) == 0


async def test_empty_callback_data_and_text_only_buttons_are_refused(fake) -> None:
    url = f"{fake.base_url}{fake.token}/sendMessage"
    async with httpx.AsyncClient() as client:
        empty = {"inline_keyboard": [[{"text": "x", "callback_data": ""}]]}
        answer = await client.post(url, json={"chat_id": USER, "text": "x",
                                              "reply_markup": empty})
        assert answer.json()["description"] == "Bad Request: BUTTON_DATA_INVALID"
        bare = {"inline_keyboard": [[{"text": "x"}]]}
        answer = await client.post(url, json={"chat_id": USER, "text": "x", "reply_markup": bare})
        assert "Text buttons are unallowed" in answer.json()["description"]


# -- photos -----------------------------------------------------------------------------------

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + (640).to_bytes(4, "big")
       + (480).to_bytes(4, "big") + b"\x08\x02\x00\x00\x00" + b"\x00" * 40)


async def test_send_photo_upload_then_file_id(fake, bot) -> None:
    sent = await bot.send_photo(USER, PNG, caption="<b>14 jours</b>", parse_mode="HTML")
    assert sent.caption == "14 jours" and sent.caption_entities[0].type == "bold"
    assert (sent.photo[-1].width, sent.photo[-1].height) == (640, 480)
    kept = fake.messages(USER)[0]
    assert kept.photo and kept.text == "14 jours"
    assert fake.calls[-1].params["photo"].data == PNG  # the multipart upload arrived whole
    again = await bot.send_photo(USER, sent.photo[-1].file_id)
    assert again.photo[-1].file_id == sent.photo[-1].file_id and again.caption is None
    with pytest.raises(BadRequest, match="(?i)^wrong file identifier/http url specified$"):
        await bot.send_photo(USER, "not-a-file-id")
    with pytest.raises(BadRequest, match="(?i)^there is no text in the message to edit$"):
        await bot.edit_message_text("x", USER, sent.message_id)


@pytest.mark.parametrize(("caption", "ok"), [
    ("", True), ("c" * 1024, True), ("😀" * 512, True), ("c" * 1025, False),
    ("<b>" + "c" * 1024 + "</b>", True),
])
async def test_caption_is_0_to_1024(fake, bot, caption, ok) -> None:
    if ok:
        await bot.send_photo(USER, PNG, caption=caption, parse_mode="HTML")
    else:
        with pytest.raises(BadRequest, match="(?i)^message caption is too long$"):
            await bot.send_photo(USER, PNG, caption=caption, parse_mode="HTML")
    assert fake.sent_count(USER) == int(ok)


async def test_caption_html_errors(fake, bot) -> None:
    with pytest.raises(BadRequest, match="(?i)can't parse entities: can't find end tag"):
        await bot.send_photo(USER, PNG, caption="<b>ouvert", parse_mode="HTML")


# -- errors as PTB maps them --------------------------------------------------------------------

async def test_retry_after_fault(fake, bot) -> None:
    fake.fail("sendMessage", chat_id=USER, error="retry_after", retry_after=7)
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(USER, "x")
    assert seconds(caught.value) == 7
    assert fake.calls[-1].description == "Too Many Requests: retry after 7"
    assert fake.sent_count(USER) == 0 and fake.too_many_requests == 0  # injected, not limits
    await bot.send_message(USER, "x")  # times=1: the next one goes through
    assert fake.sent_count(USER) == 1


@pytest.mark.parametrize(("error", "exc", "text"), [
    ("server_error", NetworkError, "Internal Server Error"),
    ("bad_gateway", NetworkError, "Bad Gateway"),
    ("blocked", Forbidden, "Forbidden: bot was blocked by the user"),
    ("deactivated", Forbidden, "Forbidden: user is deactivated"),
    ("not_found", BadRequest, "Chat not found"),
    ("bad_request", BadRequest, "Wrong parameters"),
])
async def test_injected_faults_map_to_ptb_exceptions(fake, bot, error, exc, text) -> None:
    fake.fail("sendmessage", error=error)  # any spelling of the method
    with pytest.raises(exc) as caught:
        await bot.send_message(USER, "x")
    assert type(caught.value) is exc and caught.value.message == text
    assert fake.sent_count(USER) == 0


@pytest.mark.parametrize(("chat", "text"), [
    (GROUP, "Forbidden: bot was kicked from the group chat"),
    (SUPERGROUP, "Forbidden: bot was kicked from the supergroup chat"),
    (CHANNEL, "Forbidden: bot is not a member of the channel chat"),
])
async def test_kicked_says_what_telegram_says_for_the_chat(fake, bot, chat, text) -> None:
    fake.fail("sendMessage", chat_id=chat, error="kicked")
    with pytest.raises(Forbidden) as caught:
        await bot.send_message(chat, "x")
    assert caught.value.message == text


async def test_faults_per_chat_times_and_forever(fake, bot) -> None:
    fake.fail("sendMessage", chat_id=USER, error="server_error", times=2)
    fake.fail("sendChatAction", error="bad_request", times=None, description="nope")
    await bot.send_message(OTHER, "autre chat: pas touché")
    for _ in range(2):
        with pytest.raises(NetworkError):
            await bot.send_message(USER, "x")
    await bot.send_message(USER, "x")
    for _ in range(3):
        with pytest.raises(BadRequest, match="(?i)^nope$"):
            await bot.send_chat_action(USER, "typing")
    fake.clear_faults()
    assert await bot.send_chat_action(USER, "typing")
    assert [c.status for c in fake.calls_to("sendMessage")] == [200, 500, 500, 200]


async def test_timeout_fault_not_delivered(fake) -> None:
    fake.fail("sendMessage", chat_id=USER, error="timeout", delay=2)
    async with Bot(fake.token, base_url=fake.base_url,
                   request=HTTPXRequest(read_timeout=0.3)) as bot:
        with pytest.raises(TimedOut):
            await bot.send_message(USER, "lent")
    fake.wait_for(lambda: fake.calls_to("sendMessage"))  # the fake gave up on it too
    assert fake.calls_to("sendMessage")[0].status == 0 and fake.sent_count(USER) == 0


async def test_timeout_fault_delivered_late_makes_the_duplicate_risk_real(fake) -> None:
    fake.fail("sendMessage", chat_id=USER, error="timeout", delay=1, deliver=True)
    async with Bot(fake.token, base_url=fake.base_url,
                   request=HTTPXRequest(read_timeout=0.2)) as bot:
        with pytest.raises(TimedOut):
            await bot.send_message(USER, "lent")
    await fake.until(lambda: fake.sent_count(USER) == 1)  # Telegram sent it all the same


async def test_blocked_user(fake, bot) -> None:
    await bot.send_message(USER, "avant")
    fake.user_blocks(USER)
    with pytest.raises(Forbidden, match="bot was blocked by the user"):
        await bot.send_message(USER, "après")
    with pytest.raises(Forbidden):
        await bot.send_chat_action(USER, "typing")
    await bot.send_message(OTHER, "les autres reçoivent")
    update = (await bot.get_updates())[-1]
    assert update.my_chat_member.new_chat_member.status == "kicked"
    fake.user_blocks(USER, blocked=False)
    await bot.send_message(USER, "de retour")
    assert [m.text for m in fake.messages(USER)] == ["avant", "de retour"]


async def test_migrated_group(fake, bot) -> None:
    new_id = fake.migrate_chat(GROUP)
    assert new_id == -1005
    for _ in range(2):  # every send to the old id, not just the first
        with pytest.raises(ChatMigrated) as caught:
            await bot.send_message(GROUP, "x")
        assert caught.value.new_chat_id == new_id
    assert fake.calls[-1].description == "Bad Request: group chat was upgraded to a supergroup chat"
    sent = await bot.send_message(new_id, "ici")
    assert sent.chat.type == "supergroup" and sent.chat.title == "Analystes"
    kinds = [u.message.migrate_to_chat_id or u.message.migrate_from_chat_id
             for u in await bot.get_updates()]
    assert kinds == [new_id, GROUP]


async def test_migrated_fault_is_permanent_with_the_given_id(fake, bot) -> None:
    fake.fail("sendMessage", chat_id=GROUP, error="migrated", migrate_to=-1009)
    for _ in range(2):
        with pytest.raises(ChatMigrated) as caught:
            await bot.send_message(GROUP, "x")
        assert caught.value.new_chat_id == -1009


async def test_tokens_and_methods(fake) -> None:
    with pytest.raises(InvalidToken):
        async with Bot("123456:wrong-token", base_url=fake.base_url):
            pass
    async with httpx.AsyncClient() as client:
        wrong = await client.get(f"{fake.base_url}999:nope/getMe")
        assert (wrong.status_code, wrong.json()) == (
            401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
        malformed = await client.get(f"{fake.base_url}not-a-token/getMe")
        assert malformed.status_code == 404
        unknown = await client.get(f"{fake.base_url}{fake.token}/sendTelepathy")
        assert (unknown.status_code, unknown.json()) == (
            404, {"ok": False, "error_code": 404, "description": "Not Found"})


async def test_raw_shapes_ptb_does_not_send(fake) -> None:
    base = f"{fake.base_url}{fake.token}"
    async with httpx.AsyncClient() as client:
        by_get = await client.get(f"{base}/SENDMESSAGE", params={"chat_id": USER, "text": "é"})
        assert by_get.json()["result"]["text"] == "é"
        by_json = await client.post(f"{base}/sendMessage", json={
            "chat_id": USER, "text": "<b>j</b>", "parse_mode": "HTML",
            "reply_markup": {"inline_keyboard": [[{"text": "t", "callback_data": "d"}]]}})
        result = by_json.json()["result"]
        assert result["entities"] == [{"offset": 0, "length": 1, "type": "bold"}]
        assert result["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "d"
        bad_utf8 = await client.post(
            f"{base}/sendMessage", content=b"chat_id=42&text=%FF%FE",
            headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert bad_utf8.json()["description"] == "Bad Request: strings must be encoded in UTF-8"
    assert [c.params.get("text") for c in fake.calls_to("sendMessage")] == ["é", "<b>j</b>", None]
    assert fake.calls_to("sendMessage")[1].params["reply_markup"] == {
        "inline_keyboard": [[{"text": "t", "callback_data": "d"}]]}


# -- strict limits with an injected clock -----------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def strict(clock: Clock):
    with FakeBotAPI(strict=True, clock=clock) as fake:
        for chat in range(1, 41):
            fake.add_chat(chat)
        fake.add_chat(GROUP, "group")
        yield fake


@pytest.fixture
async def strict_bot(strict: FakeBotAPI):
    async with Bot(strict.token, base_url=strict.base_url) as client:
        yield client


async def test_strict_private_chat_burst_then_429_then_refill(strict, strict_bot, clock):
    for n in range(3):  # a burst of 3 is tolerated
        await strict_bot.send_message(1, f"rafale {n}")
    with pytest.raises(RetryAfter) as caught:
        await strict_bot.send_message(1, "de trop")
    assert seconds(caught.value) == 1
    assert strict.sent_count(1) == 3 and strict.too_many_requests == 1  # not delivered
    await strict_bot.send_message(2, "un autre chat n'attend pas")
    clock.now += 0.5
    with pytest.raises(RetryAfter) as caught:
        await strict_bot.send_message(1, "encore trop tôt")
    assert seconds(caught.value) == 1  # ceil(0.5)
    clock.now += 0.5
    await strict_bot.send_message(1, "une seconde après")
    clock.now += 10  # the bucket refills to 3, no more
    for n in range(3):
        await strict_bot.send_message(1, f"rafale {n}")
    with pytest.raises(RetryAfter):
        await strict_bot.send_message(1, "de trop")
    assert strict.too_many_requests == 3


async def test_strict_30_per_second_overall(strict, strict_bot, clock) -> None:
    for chat in range(1, 31):
        await strict_bot.send_message(chat, "alerte")
    with pytest.raises(RetryAfter) as caught:
        await strict_bot.send_message(31, "la 31e")
    assert seconds(caught.value) == 1  # 1/30 s, rounded up
    clock.now += 1 / 30
    await strict_bot.send_message(31, "la 31e")
    assert strict.sent_count() == 31 and strict.too_many_requests == 1


async def test_strict_20_per_minute_per_group(strict, strict_bot, clock) -> None:
    # One send a second never trips the per-chat bucket. The group bucket holds 20 and
    # regains 1/3 a second: after 29 sends (t = 0..28 s) it holds 20 - 29 + t/3 tokens.
    for second in range(29):
        clock.now = 1000.0 + second
        await strict_bot.send_message(GROUP, f"n°{second}")
    clock.now = 1028.5  # 1/2 token: 1.5 s to wait, rounded up
    with pytest.raises(RetryAfter) as caught:
        await strict_bot.send_message(GROUP, "trop")
    assert seconds(caught.value) == 2
    clock.now = 1029.0  # 2/3 of a token: 1 s to wait
    with pytest.raises(RetryAfter) as caught:
        await strict_bot.send_message(GROUP, "trop")
    assert seconds(caught.value) == 1
    await strict_bot.send_message(1, "un chat privé passe")
    clock.now = 1030.0
    await strict_bot.send_message(GROUP, "après l'attente")
    assert strict.sent_count(GROUP) == 30 and strict.too_many_requests == 2


async def test_strict_edits_do_not_count(strict, strict_bot) -> None:
    sent = await strict_bot.send_message(1, "v0")
    for n in range(1, 6):
        await strict_bot.edit_message_text(f"v{n}", 1, sent.message_id)
    await strict_bot.send_message(1, "deux")
    assert strict.too_many_requests == 0


# -- long polling, updates, the simulated user ----------------------------------------------

async def test_long_poll_returns_as_soon_as_an_update_arrives(fake, bot) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=30))
    await fake.until(lambda: fake.polls_waiting == 1)  # the fake holds the request open
    fake.user_sends(USER, "/subscribe ports", language_code="fr")
    updates = await asyncio.wait_for(poll, 10)
    message = updates[0].message
    assert message.text == "/subscribe ports" and message.from_user.id == USER
    assert message.from_user.language_code == "fr" and message.chat.type == "private"
    assert [(e.type, e.offset, e.length) for e in message.entities] == [("bot_command", 0, 10)]


async def test_long_poll_times_out_empty(fake, bot) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=1))
    await fake.until(lambda: fake.polls_waiting == 1)
    assert await asyncio.wait_for(poll, 10) == ()
    assert fake.polls_waiting == 0


async def test_offset_confirms_and_limit(fake, bot) -> None:
    for text in ("un", "deux", "trois"):
        fake.user_sends(USER, text)
    first = await bot.get_updates(limit=2)
    assert [u.message.text for u in first] == ["un", "deux"]
    again = await bot.get_updates()  # nothing confirmed yet
    assert len(again) == 3
    rest = await bot.get_updates(offset=first[-1].update_id + 1)
    assert [u.message.text for u in rest] == ["trois"]
    assert await bot.get_updates(offset=rest[-1].update_id + 1) == ()
    assert fake.pending_updates == []


async def test_allowed_updates_filter_later_updates(fake, bot) -> None:
    sent = await bot.send_message(USER, "choix", reply_markup=keyboard("a"))
    await bot.get_updates(allowed_updates=["callback_query"])
    fake.user_sends(USER, "ignoré")
    fake.user_presses(USER, sent.message_id, "a")
    assert [u.callback_query is not None for u in await bot.get_updates()] == [True]


async def test_a_second_poll_terminates_the_first_with_409(fake, bot) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=30))
    await fake.until(lambda: fake.polls_waiting == 1)
    async with Bot(fake.token, base_url=fake.base_url) as second:
        assert await second.get_updates(timeout=0) == ()
    with pytest.raises(Conflict, match="terminated by other getUpdates request"):
        await asyncio.wait_for(first, 10)


async def test_webhook_blocks_get_updates(fake, bot) -> None:
    await bot.set_webhook("https://example.org/hook")
    with pytest.raises(Conflict, match="webhook is active"):
        await bot.get_updates()
    assert (await bot.get_webhook_info()).url == "https://example.org/hook"
    fake.user_sends(USER, "x")
    await bot.delete_webhook(drop_pending_updates=True)
    assert await bot.get_updates() == ()


async def test_callback_press_and_answer(fake, bot) -> None:
    sent = await bot.send_message(USER, "Suivre ?", reply_markup=keyboard("sub:ports", "mute"))
    query_id = fake.user_presses(USER, sent.message_id, "mute")
    press = (await bot.get_updates())[0].callback_query
    assert (press.id, press.data, press.from_user.id) == (query_id, "mute", USER)
    assert press.message.message_id == sent.message_id and press.message.text == "Suivre ?"
    assert await bot.answer_callback_query(query_id, text="Sourdine 24 h")
    assert fake.callback_answers == [{"callback_query_id": query_id, "text": "Sourdine 24 h",
                                      "show_alert": False, "url": None, "cache_time": 0}]
    with pytest.raises(BadRequest, match="(?i)^query is too old"):
        await bot.answer_callback_query(query_id)
    with pytest.raises(ValueError, match="no button 'gone'"):
        fake.user_presses(USER, sent.message_id, "gone")
    await bot.edit_message_reply_markup(USER, sent.message_id)
    with pytest.raises(ValueError, match="no button 'mute'"):
        fake.user_presses(USER, sent.message_id, "mute")


async def test_group_commands_and_channel_posts(fake, bot) -> None:
    fake.user_sends(GROUP, "/status@veille_test_bot", user_id=7)
    fake.user_sends(CHANNEL, "annonce")
    group, channel = await bot.get_updates()
    assert group.message.from_user.id == 7 and group.message.chat.type == "group"
    assert group.message.entities[0].length == len("/status@veille_test_bot")
    assert channel.channel_post.sender_chat.id == CHANNEL


async def test_commands_are_stored_per_scope_and_language(fake, bot) -> None:
    await bot.set_my_commands([BotCommand("start", "Start"), BotCommand("topics", "Topics")])
    await bot.set_my_commands([BotCommand("start", "Démarrer")], language_code="fr",
                              scope=BotCommandScopeAllPrivateChats())
    await bot.set_my_commands([BotCommand("status", "État")], scope=BotCommandScopeChat(USER))
    assert fake.commands == {
        ("default", ""): [{"command": "start", "description": "Start"},
                          {"command": "topics", "description": "Topics"}],
        ("all_private_chats", "fr"): [{"command": "start", "description": "Démarrer"}],
        (f"chat:{USER}", ""): [{"command": "status", "description": "État"}],
    }
    mine = await bot.get_my_commands(language_code="fr", scope=BotCommandScopeAllPrivateChats())
    assert [c.command for c in mine] == ["start"]
    assert await bot.get_my_commands(language_code="de") == ()
    with pytest.raises(BadRequest, match="(?i)^bot_command_invalid$"):
        await bot.set_my_commands([BotCommand("Start", "majuscule")])
    await bot.delete_my_commands()
    assert ("default", "") not in fake.commands


async def test_chat_action_get_chat_close(fake, bot) -> None:
    assert await bot.send_chat_action(USER, "typing")
    with pytest.raises(BadRequest, match="(?i)^wrong parameter action in request$"):
        await bot.send_chat_action(USER, "dancing")
    chat = await bot.get_chat(FORUM)
    assert chat.is_forum and chat.type == "supergroup"
    assert await bot.log_out() and await bot.close()


# -- the fake as a server -------------------------------------------------------------------

def test_wait_for_fails_with_a_dump(fake) -> None:
    fake.add_chat(44)
    with pytest.raises(AssertionError, match="condition not met") as caught:
        fake.wait_for(lambda: fake.sent_count(44) == 1, timeout=0.2)
    assert "chat 44 (private): 0 bot messages" in str(caught.value)


def test_stop_ends_a_pending_long_poll(fake_bot) -> None:  # noqa: F811
    url = f"{fake_bot.base_url}{fake_bot.token}/getUpdates?timeout=60"
    result: dict = {}

    def poll() -> None:
        try:
            result["answer"] = httpx.get(url, timeout=30).json()
        except httpx.HTTPError as exc:
            result["answer"] = repr(exc)

    worker = threading.Thread(target=poll)
    worker.start()
    fake_bot.wait_for(lambda: fake_bot.polls_waiting == 1)
    fake_bot.stop()
    worker.join(10)
    assert not worker.is_alive()  # answered (empty) or hung up on, not left waiting 60 s
    fake_bot.wait_for(lambda: fake_bot.polls_waiting == 0, timeout=5)  # nor the fake's side
    assert result["answer"] == {"ok": True, "result": []} or "Error" in result["answer"]


async def test_an_outage_then_the_same_fake_again(fake, bot) -> None:
    await bot.send_message(USER, "avant la panne")
    fake.stop()
    with pytest.raises(NetworkError):
        await bot.send_message(USER, "pendant")
    fake.start()
    await bot.send_message(USER, "après")
    assert [m.text for m in fake.messages(USER)] == ["avant la panne", "après"]


def test_a_crash_inside_the_fake_is_a_500_and_recorded() -> None:
    with FakeBotAPI() as fake:
        fake._methods["getme"] = ("getMe", lambda params: 1 / 0)
        answer = httpx.get(f"{fake.base_url}{fake.token}/getMe")
    assert answer.status_code == 500 and "ZeroDivisionError" in answer.json()["description"]
    assert "ZeroDivisionError" in fake.bugs[0]


def test_another_process_talks_to_it(fake) -> None:
    """What `veille run` does: a separate process with its own PTB, aimed at base_url."""
    script = (
        "import asyncio, sys, telegram\n"
        "async def main():\n"
        "    async with telegram.Bot(sys.argv[1], base_url=sys.argv[2]) as bot:\n"
        "        await bot.send_message(42, '<b>depuis un autre processus</b>',\n"
        "                               parse_mode='HTML')\n"
        "asyncio.run(main())\n"
    )
    subprocess.run([sys.executable, "-c", script, fake.token, fake.base_url], check=True,
                   cwd=REPO, timeout=60)
    assert fake.messages(USER)[0].text == "depuis un autre processus"
    assert json.dumps(fake.messages(USER)[0].entities) == (
        '[{"offset": 0, "length": 25, "type": "bold"}]')


async def test_a_ptb_application_polls_answers_commands_and_buttons(fake) -> None:
    """The whole loop the bot runs: Application + Updater long polling against the fake."""
    from telegram.ext import Application, CallbackQueryHandler, CommandHandler

    async def start(update, context) -> None:
        await update.message.reply_text(
            f"Bonjour <b>{update.effective_user.first_name}</b>", parse_mode="HTML",
            reply_markup=keyboard("sub:ports"))

    async def pressed(update, context) -> None:
        await update.callback_query.answer("Abonné")
        await update.callback_query.edit_message_text("Abonné à ports")

    app = Application.builder().token(fake.token).base_url(fake.base_url).build()
    app.add_handler(CommandHandler("start", start))
    app.add_handler(CallbackQueryHandler(pressed))
    async with app:
        await app.start()
        await app.updater.start_polling(poll_interval=0, timeout=10)
        fake.user_sends(USER, "/start")
        reply = (await fake.until(lambda: fake.messages(USER)))[0]
        assert (reply.text, reply.entities) == (
            "Bonjour Ana", [{"offset": 8, "length": 3, "type": "bold"}])
        fake.user_presses(USER, reply.message_id, "sub:ports")
        await fake.until(lambda: fake.messages(USER)[0].edited == 1)
        await app.updater.stop()
        await app.stop()
    assert fake.messages(USER)[0].text == "Abonné à ports"
    assert [a["text"] for a in fake.callback_answers] == ["Abonné"]
    assert fake.calls_to("deleteWebhook") and fake.pending_updates == []


def test_a_request_cut_short_by_a_dying_client_is_not_carried_out(fake) -> None:
    body = b"chat_id=42&text=" + b"x" * 50
    with socket.create_connection(("127.0.0.1", fake.port)) as conn:
        conn.sendall(b"POST /bot" + fake.token.encode() + b"/sendMessage HTTP/1.1\r\n"
                     b"Host: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                     b"Content-Length: " + str(len(body) + 20).encode() + b"\r\n\r\n" + body)
        conn.shutdown(socket.SHUT_WR)  # the process is killed before the last 20 bytes
        assert conn.recv(100) == b""  # no answer: the fake hung up
    assert fake.calls == [] and fake.sent_count() == 0
