"""Changing a watchlist from chat (/add, /remove, /subscribe, /unsubscribe) by editing the YAML.

ruamel's round-trip mode keeps the file's comments, key order and layout; only the one list that
changes is touched. The edit is validated and atomic: the new text is written to a temporary file
beside the configuration, loaded with `load_settings` exactly as a start-up would (so a change
that would make the configuration invalid is refused with the same message `wirewatch check`
gives), and only then moved over the original with `os.replace`. The caller gets the new Settings,
to apply without a restart.

Every change to the file goes through `edit_document` (bot/source_config.py's `wirewatch add` and
OPML import too), which holds the configuration's lock from the read to the replace: a
module-level `threading.Lock` for the bot's own threads (chat commands run in parallel worker
threads) and an `fcntl.flock` on a lock file beside the configuration (``.NAME.lock``, left in
place: removing a lock file while another process may be waiting on it would let two writers in)
for other processes, such as a `wirewatch add` run while the bot is up. Without it two edits at
once both read the old file and the second write drops the first change.
"""

from __future__ import annotations

import fcntl
import io
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.util import load_yaml_guess_indent

from .settings import Settings, load_settings

__all__ = [
    "ConfigEditError",
    "Unchanged",
    "add_term",
    "config_lock",
    "edit_document",
    "move_chat",
    "remove_term",
    "subscribe",
    "unsubscribe",
]

_LOCK = threading.Lock()
"""Serialises this process's edits; the file lock alone would too on Linux (one open file
description per call), but not on every platform flock is emulated on."""


class ConfigEditError(Exception):
    """The edit does not apply (no such watchlist, term already there...); nothing was written.

    The message is meant for the user who asked, in chat.
    """


def add_term(
    path: Path, watchlist: str, term: str, environ: Mapping[str, str] | None = None
) -> Settings:
    """Add ``term`` to the watchlist's keywords (any one of them must occur)."""

    def change(entry: CommentedMap) -> None:
        keywords = entry.get("keywords")
        if not isinstance(keywords, CommentedSeq):
            raise ConfigEditError(f"watchlist {watchlist} has no keyword list to add to")
        if any(str(k).casefold() == term.casefold() for k in keywords):
            raise ConfigEditError(f'"{term}" is already a keyword of {watchlist}')
        keywords.append(term)

    return _edit(path, watchlist, change, environ)


def remove_term(
    path: Path, watchlist: str, term: str, environ: Mapping[str, str] | None = None
) -> Settings:
    """Remove ``term`` from the watchlist's keywords, all-of terms or exclusions."""

    def change(entry: CommentedMap) -> None:
        for key in ("keywords", "all", "exclude"):
            terms = entry.get(key)
            if not isinstance(terms, CommentedSeq):
                continue
            for index, existing in enumerate(terms):
                if str(existing).casefold() == term.casefold():
                    del terms[index]
                    return
        raise ConfigEditError(f'"{term}" is not a term of {watchlist}')

    return _edit(path, watchlist, change, environ)


def subscribe(
    path: Path,
    watchlist: str,
    chat_id: int,
    thread_id: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Route the watchlist's alerts to this chat (and forum topic)."""

    def change(entry: CommentedMap) -> None:
        chats = entry.get("chats")
        if chats is None:
            chats = CommentedSeq()
            chats.fa.set_flow_style()
            entry["chats"] = chats
        if not isinstance(chats, CommentedSeq):
            raise ConfigEditError(f"watchlist {watchlist} has a chats value that is not a list")
        if _route_index(chats, chat_id, thread_id) is not None:
            raise ConfigEditError(f"this {_where(thread_id)} already gets {watchlist}")
        if thread_id is None:
            chats.append(chat_id)
        else:
            route = CommentedMap([("chat", chat_id), ("thread", thread_id)])
            route.fa.set_flow_style()
            chats.append(route)

    return _edit(path, watchlist, change, environ)


def unsubscribe(
    path: Path,
    watchlist: str,
    chat_id: int,
    thread_id: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Stop routing the watchlist's alerts to this chat (and forum topic): another topic's route
    in the same chat stays."""

    def change(entry: CommentedMap) -> None:
        chats = entry.get("chats")
        index = _route_index(chats, chat_id, thread_id) if isinstance(chats, CommentedSeq) else None
        if index is None:
            raise ConfigEditError(f"this {_where(thread_id)} does not get {watchlist}")
        del chats[index]

    return _edit(path, watchlist, change, environ)


def move_chat(
    path: Path, old_chat: int, new_chat: int, environ: Mapping[str, str] | None = None
) -> Settings | None:
    """Replace ``old_chat`` by ``new_chat`` in every watchlist's chats (a group that Telegram
    upgraded to a supergroup); None, with nothing written, if no watchlist names it."""
    moved = False

    def change(document: CommentedMap) -> None:
        nonlocal moved
        watchlists = document.get("watchlists")
        for entry in watchlists if isinstance(watchlists, CommentedSeq) else ():
            chats = entry.get("chats") if isinstance(entry, CommentedMap) else None
            if not isinstance(chats, CommentedSeq):
                continue
            for index, route in enumerate(chats):
                if isinstance(route, CommentedMap) and route.get("chat") == old_chat:
                    route["chat"] = new_chat
                    moved = True
                elif route == old_chat and not isinstance(route, bool):
                    chats[index] = new_chat
                    moved = True
        if not moved:
            raise Unchanged

    try:
        return edit_document(path, change, environ)
    except Unchanged:
        return None


class Unchanged(Exception):
    """Raised by a change given to `edit_document`: there is nothing to write."""


def _where(thread_id: int | None) -> str:
    return "chat" if thread_id is None else "topic"


def _route_index(chats: CommentedSeq, chat_id: int, thread_id: int | None) -> int | None:
    """The route to exactly this chat and forum topic (None: the chat's main thread)."""
    for index, route in enumerate(chats):
        if isinstance(route, CommentedMap):
            chat, thread = route.get("chat"), route.get("thread")
        else:
            chat, thread = route, None
        if chat == chat_id and thread == thread_id and not isinstance(chat, bool):
            return index
    return None


def _edit(
    path: Path,
    watchlist: str,
    change: Callable[[CommentedMap], None],
    environ: Mapping[str, str] | None,
) -> Settings:
    return edit_document(
        path, lambda document: change(_find_watchlist(document, watchlist)), environ
    )


@contextmanager
def config_lock(path: Path) -> Iterator[None]:
    """Hold the configuration's lock: no other edit, in this process or another, runs meanwhile."""
    lock_file = path.with_name(f".{path.name}.lock")
    with _LOCK:
        handle = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the descriptor is closed
            yield
        finally:
            os.close(handle)


def edit_document(
    path: Path, change: Callable[[CommentedMap], None], environ: Mapping[str, str] | None = None
) -> Settings:
    """Load the file round-trip, apply ``change`` to the whole document, validate, replace; all
    under `config_lock`, so concurrent edits apply one after the other.

    An empty file is an empty mapping. ``change`` raises `Unchanged` (nothing is written) or
    ConfigEditError; SettingsError means the result would be invalid and nothing was written.
    """
    with config_lock(path):
        text = path.read_text(encoding="utf-8")
        _, indent, block_seq_indent = load_yaml_guess_indent(text)
        yaml = YAML()  # round-trip
        yaml.preserve_quotes = True
        yaml.width = 4096  # never re-wrap long lines
        # The file's own list indentation ("  - name:" or "- name:"), not ruamel's default.
        yaml.indent(mapping=2, sequence=indent or 2, offset=block_seq_indent or 0)
        document = yaml.load(text)
        if document is None:
            document = CommentedMap()
        if not isinstance(document, CommentedMap):
            raise ConfigEditError("the configuration file is not a mapping")
        change(document)
        output = io.StringIO()
        yaml.dump(document, output)
        handle, temporary = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
        )
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(output.getvalue())
                file.flush()
                os.fsync(file.fileno())
            os.chmod(temporary, path.stat().st_mode & 0o7777)
            settings = load_settings(Path(temporary), environ)  # raises SettingsError
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    return settings.model_copy(update={"path": path})


def _find_watchlist(document: object, name: str) -> CommentedMap:
    watchlists = document.get("watchlists") if isinstance(document, CommentedMap) else None
    if isinstance(watchlists, CommentedSeq):
        for entry in watchlists:
            if isinstance(entry, CommentedMap) and entry.get("name") == name:
                return entry
    raise ConfigEditError(f"there is no watchlist named {name}")
