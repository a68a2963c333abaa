"""One error tree for the pipeline. Failures are sorted once, where they happen, into these kinds;
callers never look at status codes or library exceptions.

    FeedsError
    ├── FetchError            kind: one of FetchErrorKind
    ├── ParseError            the bytes are not a feed we can read
    └── ExtractError          the page could not be turned into an article at all
"""

from __future__ import annotations

from enum import StrEnum


class FeedsError(Exception):
    """Base of every error the pipeline raises on purpose."""


class FetchErrorKind(StrEnum):
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    TOO_LARGE = "too_large"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    HTTP_STATUS = "http_status"
    INVALID_URL = "invalid_url"
    BLOCKED = "blocked"
    """The address is not one this fetch may reach (feeds.netguard)."""


class FetchError(FeedsError):
    """A request that did not give a usable response.

    `status` is set for HTTP_STATUS; `retry_after` (seconds) when the server sent Retry-After.
    """

    def __init__(
        self,
        kind: FetchErrorKind,
        message: str,
        *,
        url: str,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{kind}: {message} ({url})")
        self.kind = kind
        self.message = message
        self.url = url
        self.status = status
        self.retry_after = retry_after


class ParseError(FeedsError):
    """The response is not a feed in any format we read."""


class ExtractError(FeedsError):
    """The page could not be cleaned (reserved for failures that are not simply 'no article')."""
