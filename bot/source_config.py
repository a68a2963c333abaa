"""Adding sources to the YAML configuration without disturbing it (`wirewatch add`,
`wirewatch sources import`).

ruamel's round-trip mode keeps comments, order, quoting and layout; new sources are appended at the
end of `sources:`. The read, change, validation and atomic replace are bot.config_edit's
`edit_document`, the one place that writes the configuration: it holds the configuration's lock
(so `wirewatch add` and a running bot's chat commands never drop each other's change), fsyncs the
temporary file, and moves it over the original only if `load_settings` accepts it, so a failed add
never leaves a half-written or broken config.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from .config_edit import Unchanged, edit_document

__all__ = ["NewSource", "add_sources", "slug_for"]

_NOT_SLUG = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True, slots=True)
class NewSource:
    url: str
    title: str = ""
    name: str = ""
    """Empty: made from the title (else the host name), unique among the configured sources."""
    from_chat: bool = False
    """Added with /addsource: marked `added_from_chat: true`, so its host must be public."""


def slug_for(text: str, taken: set[str]) -> str:
    """A source name from a title or URL: lower-case ASCII letters, digits and '-', unique."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    base = _NOT_SLUG.sub("-", ascii_text.lower()).strip("-")[:40].strip("-") or "source"
    name, number = base, 2
    while name in taken:
        name = f"{base}-{number}"
        number += 1
    return name


def add_sources(path: Path, new: Sequence[NewSource]) -> list[str]:
    """Append the sources whose URL is not configured yet; return the names given to them.

    Raises SettingsError (nothing written) when the result would not be a valid configuration.
    """
    added: list[str] = []

    def change(document: CommentedMap) -> None:
        sources = document.get("sources")
        if not isinstance(sources, CommentedSeq):
            sources = document["sources"] = CommentedSeq()
        names = {str(item.get("name")) for item in sources if isinstance(item, dict)}
        urls = {str(item.get("url")).rstrip("/") for item in sources if isinstance(item, dict)}
        for source in new:
            if source.url.rstrip("/") in urls:
                continue
            host = urlsplit(source.url).hostname or ""
            name = source.name or slug_for(source.title or host, names)
            entry = CommentedMap(name=name)
            if source.title:
                entry["title"] = source.title
            entry["url"] = source.url
            if source.from_chat:
                entry["added_from_chat"] = True
            _move_trailing_comment(sources, entry)
            sources.append(entry)
            names.add(name)
            urls.add(source.url.rstrip("/"))
            added.append(name)
        if not added:
            raise Unchanged

    try:
        edit_document(path, change)
    except Unchanged:
        return []
    return added


def _move_trailing_comment(sources: CommentedSeq, entry: CommentedMap) -> None:
    """What follows the last source (blank lines, a comment before the next section) stays
    after the sources: ruamel keeps it on the last key of the last item, so it moves to the new
    item's last key."""
    if not sources or not isinstance(sources[-1], CommentedMap) or not sources[-1]:
        return
    last = sources[-1]
    last_key = list(last.keys())[-1]
    comment = last.ca.items.get(last_key)
    if not comment or len(comment) < 3 or comment[2] is None:
        return
    token = comment[2]
    value = token.value
    if "\n" not in value.rstrip("\n") and value.strip().startswith("#"):
        return  # a comment on the same line as the value belongs to that value
    first_line, newline, rest = value.partition("\n")
    if first_line.strip().startswith("#"):
        token.value = first_line + newline  # the inline comment stays where it was
        moved = rest
    else:
        comment[2] = None
        moved = value
    if moved:
        # A leading newline ends the new item's last line first, so a comment stays on its own.
        moved = moved if moved.startswith("\n") else "\n" + moved
        new_token = type(token)(moved, token.start_mark, None)
        entry.ca.items[list(entry.keys())[-1]] = [None, None, new_token, None]
