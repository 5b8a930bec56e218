"""When and how a chat gets an alert: now, now but silently, later, or in a digest (pure).

Rules, for a subscriber (a destination chat the watchlist names always gets alerts now):
- paused: the row waits until the pause ends (alerts created while paused are not fanned
  out at all; this covers rows fanned out just before /pause);
- digest mode: every alert waits for the digest (hourly, or daily at the local HH:MM);
- quiet hours: a high-priority alert is sent at once, silently; the rest wait and come as
  one digest when the quiet hours end;
- otherwise: sent at once.
Digests: a digest-mode chat gets one at each slot (top of the local hour, or the local
HH:MM each day) with the rows held before that slot; an instant-mode chat gets the rows held
in its quiet hours as soon as they end. Times are the subscriber's zone (zoneinfo); `now`
is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..model import Subscriber

SEND, HOLD, WAIT = "send", "hold", "wait"


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one delivery now: SEND (silent or not), HOLD for a digest, or WAIT."""

    action: str
    silent: bool = False
    until: datetime | None = None  # with WAIT: when to look again


def zone(name: str | None) -> ZoneInfo:
    """The IANA zone, or UTC when the name is empty or unknown."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def parse_hhmm(text: str) -> time:
    """'07:30' -> time(7, 30); ValueError for anything else."""
    hours, sep, minutes = text.strip().partition(":")
    if not sep or not (hours.isdigit() and minutes.isdigit()) or len(minutes) != 2:
        raise ValueError(f"not a time of day HH:MM: {text!r}")
    return time(int(hours), int(minutes))


def in_quiet_hours(sub: Subscriber, now: datetime) -> bool:
    """Whether the subscriber's local time is within its quiet hours (which may wrap midnight)."""
    if not sub.quiet_start or not sub.quiet_end:
        return False
    start, end = parse_hhmm(sub.quiet_start), parse_hhmm(sub.quiet_end)
    local = now.astimezone(zone(sub.tz)).time().replace(second=0, microsecond=0)
    if start == end:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end


def decide(sub: Subscriber | None, priority: str, now: datetime) -> Decision:
    """What to do now with an alert of this priority for this chat."""
    if sub is None:
        return Decision(SEND)
    if sub.paused_until is not None and sub.paused_until > now:
        return Decision(WAIT, until=sub.paused_until)
    if sub.mode == "digest":
        return Decision(HOLD)
    if in_quiet_hours(sub, now):
        return Decision(SEND, silent=True) if priority == "high" else Decision(HOLD)
    return Decision(SEND)


def last_slot(sub: Subscriber, now: datetime) -> datetime:
    """The latest digest time at or before now (UTC)."""
    tz = zone(sub.tz)
    local = now.astimezone(tz)
    if sub.digest_every == "hourly":
        slot = local.replace(minute=0, second=0, microsecond=0)
    else:
        at = parse_hhmm(sub.digest_at or "08:00")
        slot = datetime.combine(local.date(), at, tzinfo=tz)
        if slot > local:
            slot = datetime.combine(local.date() - timedelta(days=1), at, tzinfo=tz)
    return slot.astimezone(timezone.utc)


def digest_cutoff(sub: Subscriber, now: datetime) -> datetime | None:
    """Rows held before this time go out in a digest now; None: no digest is due now.

    An empty period sends nothing: the caller only asks for chats that have held rows.
    """
    if sub.paused_until is not None and sub.paused_until > now:
        return None
    if sub.mode != "digest":
        return None if in_quiet_hours(sub, now) else now
    slot = last_slot(sub, now)
    if sub.last_digest_at is not None and sub.last_digest_at >= slot:
        return None
    return slot
