"""What makes two entries the same article: URL canonicalisation and a content fingerprint.

Feeds hand out the same article under many URLs: with `utm_*` and click-id trackers, as an AMP or
mobile page, over http and https, with and without `www.`, with a fragment or a trailing slash. The
page itself often names its one true address in `<link rel="canonical">`.

- `clean_url` removes what only tracks (the URL stays one a reader can open);
- `url_key` goes further, to a comparison key that is never shown: scheme, `www.`/`m.`/`amp.`
  hosts, AMP path and query markers and trailing slashes are dropped, query parameters sorted;
- `canonical_link` reads rel=canonical from a page;
- `fingerprint` hashes an entry's visible text, so an entry whose title or text changed is told
  apart from one merely listed again.

URL handling is by hand on top of `urllib.parse`: the rules are ours (which parameters track, which
host prefixes are mobile or AMP) and no maintained library keeps such a list for news sites.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import (
    SplitResult,
    parse_qsl,
    unquote_plus,
    urlencode,
    urljoin,
    urlsplit,
    urlunsplit,
)

from lxml import etree, html

from feeds.extract import decode_html
from feeds.models import Entry
from feeds.text import html_to_text

__all__ = ["canonical_link", "clean_url", "fingerprint", "url_key"]

_TRACKING_PREFIXES = ("utm_", "mtm_", "pk_", "at_", "ns_", "wt_", "__twitter")
_TRACKING_NAMES = frozenset(
    {
        "fbclid", "gclid", "gclsrc", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "twclid",
        "igshid", "igsh", "mc_cid", "mc_eid", "_ga", "_gl", "_hsenc", "_hsmi", "mkt_tok",
        "ocid", "cmpid", "ito", "s_cid", "ref_src", "ref_url", "smid", "sr_share", "cmp",
        "xtor", "ncid", "spm", "share", "ftag", "src", "rss", "traffic_source", "guccounter",
    }
)  # fmt: skip
"""Query parameters that say how a reader arrived, never which article it is."""

_AMP_QUERY = frozenset({"amp", "outputtype", "amp_js_v", "usqp"})
_MOBILE_HOST = re.compile(r"^(?:www|m|mobile|amp|amp-[a-z0-9-]+)\.(?=[^.]+\.)")
_AMP_PATH = re.compile(r"(?:/amp/?$|\.amp(?:\.html?)?$|^/amp(?=/))")
_SPACE = re.compile(r"\s+")


def _is_tracker(name: str) -> bool:
    lowered = name.lower()
    return lowered in _TRACKING_NAMES or lowered.startswith(_TRACKING_PREFIXES)


def clean_url(url: str) -> str:
    """`url` without tracking parameters and fragment; everything else exactly as it was (the
    parameters kept are not re-encoded). Anything that is not an absolute http(s) URL comes back
    unchanged."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return url
    kept = [
        pair
        for pair in parts.query.split("&")
        if pair and not _is_tracker(unquote_plus(pair.partition("=")[0]))
    ]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "&".join(kept), ""))


def url_key(url: str) -> str:
    """The identity of an article URL for comparisons (not for display); "" for no URL.

    `https://www.example.com/news/a/amp?utm_source=x` and `http://m.example.com/news/a/` give the
    same key.
    """
    parts = urlsplit(clean_url(url))
    if not parts.hostname:
        return url.strip()
    if parts.scheme.lower() not in ("http", "https"):
        return url.strip()
    host = _MOBILE_HOST.sub("", parts.hostname.lower())
    port = f":{_port(parts)}" if _port(parts) not in (None, 80, 443) else ""
    path = _AMP_PATH.sub("", parts.path).rstrip("/") or "/"
    query = sorted(
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k.lower() not in _AMP_QUERY
    )
    return f"{host}{port}{path}" + (f"?{urlencode(query)}" if query else "")


def canonical_link(page: bytes, base_url: str) -> str | None:
    """The absolute URL of the page's `<link rel="canonical">`, if it names one over http(s)."""
    try:
        document = html.document_fromstring(decode_html(page))
    except (etree.ParserError, ValueError):
        return None
    for element in document.iter("link"):
        rels = (element.get("rel") or "").lower().split()
        href = (element.get("href") or "").strip()
        if "canonical" in rels and href:
            absolute = urljoin(base_url, href)
            return absolute if urlsplit(absolute).scheme in ("http", "https") else None
    return None


def fingerprint(entry: Entry) -> str:
    """A hash of what a reader of the entry sees (title, summary, content), insensitive to
    whitespace and markup changes that do not change the words."""
    body = html_to_text(entry.content_html) if entry.content_html else ""
    visible = "\n".join(
        _SPACE.sub(" ", part).strip() for part in (entry.title, entry.summary, body)
    )
    return "sha256:" + hashlib.sha256(visible.encode("utf-8")).hexdigest()


def _port(parts: SplitResult) -> int | None:
    try:
        return parts.port
    except ValueError:  # a port out of range or not a number: keep the URL as it is
        return None
