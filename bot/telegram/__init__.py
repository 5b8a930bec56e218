"""Telegram: the one package that imports python-telegram-bot.

    client.py    builds the PTB Application (base URL, timeouts, our pacer) and maps PTB's
                 errors to what the delivery worker does about them
    pacing.py    Telegram's limits, kept before Telegram has to say 429
    delivery.py  fan-out rows → per-chat queues → sendMessage / editMessageText
    policy.py    pure: instant, silent, or held for a digest (mode, quiet hours, pause)
    render.py    pure: Alert → Telegram HTML within Telegram's limits
    commands.py  subscriber commands, inline buttons, and the wiring of every handler
    admin.py     the operators' commands (/status, /feeds, /reload, /stats)
"""
