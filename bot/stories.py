"""Story identity: canonical URLs and title fingerprints (pure; clustering comes later)."""

from __future__ import annotations

import functools
import hashlib
from urllib.parse import SplitResult, urljoin, urlsplit, urlunsplit

from url_normalize import url_normalize

from bot.text import normalize

# Query parameters that only say where a click came from, never which page it is.
TRACKING_PARAMS = (
    "utm_*",
    "fbclid",
    "gclid",
    "dclid",
    "msclkid",
    "mc_cid",
    "mc_eid",
    "maca",
    "ocid",
    "cmpid",
    "xtor",
    "at_medium",
    "at_campaign",
    "ref_src",
    "igshid",
    "_ga",
    "yclid",
    "smid",
)
_TRACKING_PREFIXES = tuple(p[:-1] for p in TRACKING_PARAMS if p.endswith("*"))
_TRACKING_NAMES = frozenset(p for p in TRACKING_PARAMS if not p.endswith("*"))
_SHORT_TITLE_WORDS = 5  # titles shorter than this also fingerprint the summary
_SUMMARY_CHARS = 200


# Memoised: url-normalize costs ~90 µs a URL and a re-polled feed repeats most of its links.
@functools.lru_cache(maxsize=16_384)
def canonical_url(url: str, base: str | None = None) -> str:
    """The URL two links to the same page share; the stripped input when it is not a URL."""
    raw = url.strip() if isinstance(url, str) else ""
    try:
        absolute = urljoin(base, raw) if base else raw
        parts = urlsplit(absolute)
        if not parts.scheme or not parts.netloc:
            return raw
        # url-normalize does the RFC 3986 part (case, ports, IDNA, percent-encoding, dot segments).
        normal = url_normalize(urlunsplit(parts._replace(fragment="")))
        return _clean(urlsplit(normal)) if normal else raw
    except ValueError:  # bad IPv6 literal, bad port, IDNA failure (UnicodeError): not a URL
        return raw


def _clean(parts: SplitResult) -> str:
    """Drop tracking parameters, sort the rest, drop the fragment and a trailing slash."""
    pairs = [p for p in parts.query.split("&") if p and not _is_tracking(p.partition("=")[0])]
    path = (parts.path.rstrip("/") or "/") if parts.path else ""
    return urlunsplit((parts.scheme, parts.netloc, path, "&".join(sorted(pairs)), ""))


def _is_tracking(key: str) -> bool:
    """Whether a query parameter name is a known tracking parameter."""
    key = key.lower()
    return key in _TRACKING_NAMES or key.startswith(_TRACKING_PREFIXES)


def title_fingerprint(title: str, summary: str = "") -> str:
    """A short stable hex digest of the normalised title (plus summary for short titles)."""
    words = normalize(title)
    if len(words.split()) < _SHORT_TITLE_WORDS:
        words = f"{words}\n{normalize(summary)[:_SUMMARY_CHARS]}".strip()
    if not words:
        return ""
    return hashlib.blake2b(words.encode("utf-8"), digest_size=16).hexdigest()
