"""The exceptions veille raises, in one place.

    VeilleError                     base of everything below
    ├── ConfigError                 a bad VEILLE_* setting (names the variable)
    ├── WatchlistError              one or more problems in watchlists/ (file:line:col each)
    ├── QuerySyntaxError            a topic query that does not parse (points at the character)
    ├── FetchError                  a feed could not be fetched (url, reason, transient or not)
    │   └── BlockedAddressError     the SSRF guard refused the address
    ├── ParseError                  a body is not a feed we can read
    └── StoreError                  the state database refused an operation

Third-party exceptions are mapped to these only in the module that owns the library.
"""

from __future__ import annotations


class VeilleError(Exception):
    """Base class of veille's own errors."""


class ConfigError(VeilleError):
    """A setting is missing or invalid."""


class QuerySyntaxError(VeilleError):
    """A query does not parse; `pos` is the 0-based character offset in the query."""

    def __init__(self, message: str, query: str, pos: int) -> None:
        super().__init__(message)
        self.message = message
        self.query = query
        self.pos = pos

    def pointer(self) -> str:
        """The query with a caret under the offending character."""
        flat = self.query.replace("\n", " ").replace("\t", " ").rstrip()
        return f"{flat}\n{' ' * self.pos}^"


class WatchlistError(VeilleError):
    """Problems found in the watchlists; `problems` lists each one, located."""

    def __init__(self, problems: list["Problem"]) -> None:  # noqa: F821 (defined in watchlist)
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class FetchError(VeilleError):
    """A fetch failed; `transient` says whether retrying later may help."""

    def __init__(self, url: str, reason: str, *, transient: bool = True) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason
        self.transient = transient


class BlockedAddressError(FetchError):
    """The SSRF guard refused a URL whose host resolves to a non-public address."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(url, reason, transient=False)


class ParseError(VeilleError):
    """A body could not be read as a feed."""


class StoreError(VeilleError):
    """The state database failed."""
