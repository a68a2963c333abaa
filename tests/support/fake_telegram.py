"""A fake Telegram Bot API on 127.0.0.1 that python-telegram-bot talks to through its HTTP stack.

Why a real socket and not a mocked ``Bot``: the parts of alert delivery most likely to break are the
ones a mock skips: how PTB encodes parameters, how it turns HTTP statuses into exceptions, what ends
up in error messages (the token is part of every URL). So the fake is a stdlib
``ThreadingHTTPServer`` in a daemon thread; it needs no event loop and so cannot interfere with the
test's own loop.

It validates HTML-mode text like Telegram does (see ``parse_telegram_html``), deliberately on the
strict side: where Telegram's documentation says a character *must* be escaped, the fake rejects it
even if the real server would sometimes let it through. A message the fake accepts is one Telegram
accepts.

With ``enforce_limits=True`` it also enforces Telegram's flood limits, strictly, as sliding
windows on arrival times: at most 1 message per second to a chat, 20 per minute to a group (a
negative id), 30 per second overall. A message over a limit gets 429 with ``retry_after`` (whole
seconds, as Telegram sends it) and is counted in ``too_many_requests``.

For crash and timeout tests, ``hang_after(n)`` makes the fake accept (record) the n-th message and
every later one, and then never answer them until ``release()``: the window in which Telegram
has a message but the bot does not know it.

Usage::

    with FakeTelegram() as api:
        sender = TelegramSender(api.token, api.base_url)
        ...
        assert api.sent[0].text == "..."
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import json
import re
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

TOKEN = "123456:TEST-TOKEN"
MAX_MESSAGE_LENGTH = 4096
"""Telegram's limit for a text message, counted after entity parsing (in UTF-16 code units)."""

_ALLOWED_TAGS = frozenset(
    {
        "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler",
        "a", "code", "pre", "blockquote", "tg-emoji",
    }
)  # fmt: skip
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
_ATTRIBUTE = re.compile(
    r"""\s*([A-Za-z][A-Za-z0-9_-]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?"""
)
_ENTITY = re.compile(r"&(?:#([0-9]{1,7})|#[xX]([0-9A-Fa-f]{1,6})|([A-Za-z]+));")


class TelegramHTMLError(ValueError):
    """HTML-mode text Telegram would refuse; str() is the detail after "can't parse entities: "."""


def _byte_offset(text: str, index: int) -> int:
    """Telegram reports positions as UTF-8 byte offsets."""
    return len(text[:index].encode("utf-8"))


def utf16_length(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units: an emoji outside the BMP counts 2)."""
    return len(text.encode("utf-16-le")) // 2


def _decode_entities(text: str, start: int, whole: str) -> str:
    """Decode the entities of an attribute value, refusing anything Telegram does not support."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] != "&":
            out.append(text[i])
            i += 1
            continue
        decoded, i = _entity_at(text, i, whole, start)
        out.append(decoded)
    return "".join(out)


def _entity_at(text: str, i: int, whole: str, base: int) -> tuple[str, int]:
    """Decode the entity starting at ``text[i] == "&"``; return (character, index after it)."""
    match = _ENTITY.match(text, i)
    offset = _byte_offset(whole, base + i)
    if match is None:
        raise TelegramHTMLError(f'Character "&" must be escaped at byte offset {offset}')
    decimal, hexadecimal, name = match.groups()
    if name is not None:
        if name not in _NAMED_ENTITIES:
            raise TelegramHTMLError(f'Unsupported HTML entity "&{name};" at byte offset {offset}')
        return _NAMED_ENTITIES[name], match.end()
    code = int(decimal) if decimal is not None else int(hexadecimal, 16)
    if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        raise TelegramHTMLError(f"Invalid HTML entity at byte offset {offset}")
    return chr(code), match.end()


def _parse_attributes(raw: str, tag_start: int, text: str) -> dict[str, str]:
    attributes: dict[str, str] = {}
    position = 0
    while position < len(raw):
        if raw[position:].strip() == "":
            break
        match = _ATTRIBUTE.match(raw, position)
        if match is None or match.end() == position:
            offset = _byte_offset(text, tag_start)
            raise TelegramHTMLError(
                f"Expected equal sign in declaration of an attribute of the "
                f"tag at byte offset {offset}"
            )
        name = match.group(1).lower()
        value = next((g for g in match.group(2, 3, 4) if g is not None), "")
        attributes[name] = _decode_entities(value, tag_start, text)
        position = match.end()
    return attributes


def _check_start_tag(name: str, attributes: Mapping[str, str], offset: int) -> None:
    if name not in _ALLOWED_TAGS:
        raise TelegramHTMLError(f'Unsupported start tag "{name}" at byte offset {offset}')
    if name == "span" and attributes.get("class") != "tg-spoiler":
        raise TelegramHTMLError('Tag "span" must have class "tg-spoiler"')
    if name == "a" and not attributes.get("href"):
        raise TelegramHTMLError(f'Tag "a" must have attribute "href" at byte offset {offset}')
    if name == "tg-emoji" and not attributes.get("emoji-id", "").isdigit():
        raise TelegramHTMLError("Custom emoji identifier must be specified")


def parse_telegram_html(text: str) -> str:
    """Parse text as Telegram's HTML parse mode would; return the visible text.

    Raises TelegramHTMLError for: a tag outside Telegram's list, a tag left open or closed out of
    order, a ``<`` that starts no tag, ``&`` that starts no supported entity (only ``&lt; &gt; &amp;
    &quot;`` and numeric ones), a bare ``>``, ``<span>`` without class tg-spoiler, ``<a>`` without
    href. Callers and tests use the returned text to check the 4096-character limit.
    """
    visible: list[str] = []
    open_tags: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "&":
            decoded, i = _entity_at(text, i, text, 0)
            visible.append(decoded)
        elif char == ">":
            raise TelegramHTMLError(
                f'Character ">" must be escaped at byte offset {_byte_offset(text, i)}'
            )
        elif char == "<":
            i = _parse_tag(text, i, open_tags)
        else:
            visible.append(char)
            i += 1
    if open_tags:
        raise TelegramHTMLError(f'Can\'t find end tag corresponding to start tag "{open_tags[-1]}"')
    return "".join(visible)


def _parse_tag(text: str, start: int, open_tags: list[str]) -> int:
    """Parse the tag at ``text[start]``, updating the open-tag stack; return the index after it."""
    offset = _byte_offset(text, start)
    end = text.find(">", start)
    if end == -1:
        raise TelegramHTMLError(f"Unclosed start tag at byte offset {offset}")
    closing = text.startswith("</", start)
    body = text[start + (2 if closing else 1) : end]
    name_match = _TAG_NAME.match(body)
    if name_match is None:
        raise TelegramHTMLError(f"Invalid tag at byte offset {offset}")
    name = name_match.group(0).lower()
    rest = body[name_match.end() :]
    if closing:
        if rest.strip():
            raise TelegramHTMLError(f"Unexpected content in end tag at byte offset {offset}")
        if not open_tags:
            raise TelegramHTMLError(f"Unexpected end tag at byte offset {offset}")
        if open_tags[-1] != name:
            raise TelegramHTMLError(
                f'Unmatched end tag at byte offset {offset}, expected "</{open_tags[-1]}>", '
                f'found "</{name}>"'
            )
        open_tags.pop()
        return end + 1
    if rest.endswith("/") or (rest and not rest[0].isspace()):
        raise TelegramHTMLError(f'Unsupported start tag "{name}{rest}" at byte offset {offset}')
    attributes = _parse_attributes(rest, start, text)
    _check_start_tag(name, attributes, offset)
    if name == "a" and "a" in open_tags:
        raise TelegramHTMLError(f"Nested links are not allowed at byte offset {offset}")
    open_tags.append(name)
    return end + 1


def check_message_text(text: str, parse_mode: str | None) -> str | None:
    """Return Telegram's 400 description for this text, or None if it would be accepted."""
    if parse_mode is not None and parse_mode.upper() == "HTML":
        try:
            visible = parse_telegram_html(text)
        except TelegramHTMLError as error:
            return f"Bad Request: can't parse entities: {error}"
    elif parse_mode is not None:
        return "Bad Request: unsupported parse_mode"
    else:
        visible = text
    if not visible.strip():
        return "Bad Request: message text is empty"
    if utf16_length(visible) > MAX_MESSAGE_LENGTH:
        return "Bad Request: message is too long"
    return None


@dataclass(frozen=True, slots=True)
class SentMessage:
    """One accepted sendMessage call, as the fake received it."""

    message_id: int
    chat_id: int | str
    text: str
    parse_mode: str | None
    params: dict[str, Any] = field(default_factory=dict)
    """Every other parameter (JSON-encoded form values decoded, e.g. link_preview_options)."""


@dataclass(slots=True)
class _Failure:
    status: int
    description: str
    retry_after: int | None
    remaining: int


class FakeTelegram:
    """The fake server; a context manager that listens on an ephemeral 127.0.0.1 port.

    Attributes a test may change while the server runs: ``blocked_chats`` (sendMessage to these
    chats answers 403 "Forbidden: bot was blocked by the user"), ``migrated_chats`` (old group id →
    supergroup id: sendMessage to the old id answers 400 with ``migrate_to_chat_id``),
    ``forums`` (chat id → its topic ids: a message_thread_id outside them answers 400, and so does
    a thread id sent to a chat that is not a forum), ``updates`` (queued for getUpdates).
    """

    def __init__(self, token: str = TOKEN, *, enforce_limits: bool = False) -> None:
        self.token = token
        self.bot_id = int(token.split(":", 1)[0])
        self.blocked_chats: set[int] = set()
        self.migrated_chats: dict[int, int] = {}
        self.forums: dict[int, set[int]] = {}
        self.enforce_limits = enforce_limits
        self.too_many_requests = 0
        self._arrivals: deque[float] = deque()
        self._chat_arrivals: dict[int | str, deque[float]] = {}
        self._hang_at: int | None = None
        self._accepted = 0
        self._released = threading.Event()
        self.hanging = threading.Event()
        """Set once the fake holds at least one message without answering."""
        self.held = 0
        """Messages accepted and not answered (see hang_after)."""
        self._lock = threading.Lock()
        self._updates: list[dict[str, Any]] = []
        self._next_update_id = 1
        self._updates_ready = threading.Condition()
        self._closing = False
        self._sent: list[SentMessage] = []
        self._calls: list[tuple[str, dict[str, Any]]] = []
        self._failures: dict[str, list[_Failure]] = {}
        self._next_message_id = 1
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    # ---- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> FakeTelegram:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        fake = self
        self._closing = False

        class Handler(_Handler):
            api = fake

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # the default 5 drops bursts of connections (1 s SYN retry)

        server = Server(("127.0.0.1", self._port), Handler)
        server.daemon_threads = True
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-telegram",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening: later requests fail to connect, as when Telegram is unreachable."""
        self.release()
        if self._server is None:
            return
        with self._updates_ready:
            self._closing = True
            self._updates_ready.notify_all()  # end long polls now
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    @property
    def base_url(self) -> str:
        """The api_url to give TelegramSender: requests go to {base_url}/bot{token}/{method}."""
        return f"http://127.0.0.1:{self._port}"

    # ---- what tests read and program -----------------------------------------------------

    @property
    def sent(self) -> list[SentMessage]:
        """A snapshot of the accepted sendMessage calls, oldest first."""
        with self._lock:
            return list(self._sent)

    @property
    def calls(self) -> list[tuple[str, dict[str, Any]]]:
        """Every request with a valid token, as (method, params), including failed ones."""
        with self._lock:
            return list(self._calls)

    def fail_next(
        self,
        method: str,
        status: int,
        description: str,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` with this error (429: pass retry_after)."""
        with self._lock:
            self._failures.setdefault(method, []).append(
                _Failure(status, description, retry_after, times)
            )

    def hang_after(self, count: int) -> None:
        """Record the ``count``-th message from now and every later one, but answer none of
        them until ``release()`` (a bot killed in this state cannot know they arrived)."""
        with self._lock:
            self._hang_at = self._accepted + count
            self._released.clear()

    def release(self) -> None:
        """Answer the held messages (to whoever still listens) and stop hanging."""
        with self._lock:
            self._hang_at = None
        self._released.set()

    # ---- request handling (server threads) ---------------------------------------------

    def _over_limit(self, chat_id: int | str) -> int | None:
        """Seconds to wait if a message to ``chat_id`` now breaks a limit (and count the 429)."""
        now = time.monotonic()
        with self._lock:
            chat = self._chat_arrivals.setdefault(chat_id, deque())
            windows: list[tuple[deque[float], int, float]] = [
                (self._arrivals, 30, 1.0),
                (chat, 1, 1.0),
            ]
            if isinstance(chat_id, int) and chat_id < 0:
                windows.append((chat, 20, 60.0))
            wait = 0.0
            for arrivals, limit, length in windows:
                recent = [t for t in arrivals if t > now - length]
                if len(recent) >= limit:
                    wait = max(wait, recent[len(recent) - limit] + length - now)
            if wait > 0:
                self.too_many_requests += 1
                return max(1, int(wait + 0.999))
            self._arrivals.append(now)
            chat.append(now)
            while self._arrivals and self._arrivals[0] <= now - 1.0:
                self._arrivals.popleft()
            while chat and chat[0] <= now - 60.0:
                chat.popleft()
            return None

    def _take_failure(self, method: str) -> _Failure | None:
        with self._lock:
            queue = self._failures.get(method, [])
            if not queue:
                return None
            failure = queue[0]
            failure.remaining -= 1
            if failure.remaining <= 0:
                queue.pop(0)
            return failure

    def handle(self, path: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Answer one Bot API call: (HTTP status, JSON body)."""
        match = re.fullmatch(r"/bot([^/]+)/([A-Za-z]+)", path)
        if match is None:
            return 404, _error(404, "Not Found")
        token, method = match.groups()
        if token != self.token:
            return 401, _error(401, "Unauthorized")
        with self._lock:
            self._calls.append((method, params))
        failure = self._take_failure(method)
        if failure is not None:
            body = _error(failure.status, failure.description)
            if failure.retry_after is not None:
                body["parameters"] = {"retry_after": failure.retry_after}
            return failure.status, body
        handler = getattr(self, f"_method_{method.lower()}", None)
        if handler is None:
            return 404, _error(404, "Not Found: method not found")
        status, body = handler(params)
        return status, body

    def _bot_user(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "Wirewatch Test",
            "username": "wirewatch_test_bot",
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    def _method_getme(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return 200, {"ok": True, "result": self._bot_user()}

    def _method_sendmessage(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        chat_id = params.get("chat_id")
        text = params.get("text")
        if chat_id is None or chat_id == "":
            return 400, _error(400, "Bad Request: chat_id is empty")
        if not isinstance(text, str):
            return 400, _error(400, "Bad Request: message text is empty")
        if chat_id in self.blocked_chats:
            return 403, _error(403, "Forbidden: bot was blocked by the user")
        if chat_id in self.migrated_chats:
            body = _error(400, "Bad Request: group chat was upgraded to a supergroup chat")
            body["parameters"] = {"migrate_to_chat_id": self.migrated_chats[chat_id]}
            return 400, body
        thread = params.get("message_thread_id")
        if thread is not None:
            topics = self.forums.get(chat_id) if isinstance(chat_id, int) else None
            if topics is None or thread not in topics:
                return 400, _error(400, "Bad Request: message thread not found")
        parse_mode = params.get("parse_mode")
        problem = check_message_text(text, parse_mode if isinstance(parse_mode, str) else None)
        if problem is not None:
            return 400, _error(400, problem)
        if self.enforce_limits:
            retry_after = self._over_limit(chat_id)
            if retry_after is not None:
                body = _error(429, f"Too Many Requests: retry after {retry_after}")
                body["parameters"] = {"retry_after": retry_after}
                return 429, body
        with self._lock:
            message_id = self._next_message_id
            self._next_message_id += 1
            self._accepted += 1
            hang = self._hang_at is not None and self._accepted >= self._hang_at
            others = {k: v for k, v in params.items() if k not in ("chat_id", "text", "parse_mode")}
            self._sent.append(
                SentMessage(message_id, chat_id, text, parse_mode if parse_mode else None, others)
            )
            if hang:
                self.held += 1
        if hang:
            self.hanging.set()
            self._released.wait()
            with self._lock:
                self.held -= 1
        chat: dict[str, Any] = {"id": chat_id, "type": "private", "first_name": "Reader"}
        if isinstance(chat_id, str):
            chat = {"id": -1001, "type": "channel", "title": chat_id}
        return 200, {
            "ok": True,
            "result": {
                "message_id": message_id,
                "date": 1644257700,
                "chat": chat,
                "from": self._bot_user(),
                "text": text,
            },
        }

    def _method_getupdates(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Long polling as Telegram does it: updates from ``offset`` on, else wait up to
        ``timeout`` seconds (capped at 2 here) for one to arrive; the offset confirms the rest."""
        offset = int(params.get("offset") or 0)
        timeout = min(float(params.get("timeout") or 0), 2.0)
        deadline = time.monotonic() + timeout
        with self._updates_ready:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
            while not self._updates and not self._closing:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._updates_ready.wait(remaining)
            return 200, {"ok": True, "result": list(self._updates)}

    def send_command(
        self,
        text: str,
        *,
        user_id: int,
        chat_id: int | None = None,
        thread_id: int | None = None,
        chat_type: str = "private",
    ) -> None:
        """Queue a message from a user for getUpdates (a command gets its bot_command entity)."""
        chat = chat_id if chat_id is not None else user_id
        message: dict[str, Any] = {
            "message_id": 10_000 + self._next_update_id,
            "date": 1644257700,
            "chat": {"id": chat, "type": chat_type, "first_name": "Reader", "title": "Group"},
            "from": {"id": user_id, "is_bot": False, "first_name": "Reader"},
            "text": text,
        }
        if text.startswith("/"):
            length = len(text.split(maxsplit=1)[0])
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        if thread_id is not None:
            message["message_thread_id"] = thread_id
            message["is_topic_message"] = True
            message["chat"]["is_forum"] = True
        with self._updates_ready:
            self._updates.append({"update_id": self._next_update_id, "message": message})
            self._next_update_id += 1
            self._updates_ready.notify_all()

    def press_button(self, data: str, *, user_id: int, chat_id: int) -> None:
        """Queue a press on an inline button carrying ``data``, under a message in ``chat_id``."""
        with self._updates_ready:
            update_id = self._next_update_id
            self._updates.append(
                {
                    "update_id": update_id,
                    "callback_query": {
                        "id": str(update_id),
                        "from": {"id": user_id, "is_bot": False, "first_name": "Reader"},
                        "chat_instance": "1",
                        "data": data,
                        "message": {
                            "message_id": 1,
                            "date": 1644257700,
                            "chat": {"id": chat_id, "type": "private", "first_name": "Reader"},
                            "text": "an alert",
                        },
                    },
                }
            )
            self._next_update_id += 1
            self._updates_ready.notify_all()

    def replies(self, chat_id: int) -> list[str]:
        """Texts sent to ``chat_id``, oldest first."""
        return [m.text for m in self.sent if m.chat_id == chat_id]

    def _ok_true(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return 200, {"ok": True, "result": True}

    _method_setmycommands = _ok_true
    _method_answercallbackquery = _ok_true
    _method_deletewebhook = _ok_true
    _method_close = _ok_true
    _method_logout = _ok_true


def _error(status: int, description: str) -> dict[str, Any]:
    return {"ok": False, "error_code": status, "description": description}


def _decode_form_value(key: str, value: str) -> Any:
    """PTB sends non-string parameters JSON-encoded in form bodies; undo that except for text."""
    if key in ("text", "parse_mode"):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _parse_body(content_type: str, body: bytes) -> dict[str, Any]:
    """Parameters from a JSON, urlencoded or multipart body, as Telegram accepts all three."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "application/json":
        loaded = json.loads(body or b"{}")
        return dict(loaded) if isinstance(loaded, dict) else {}
    if kind == "multipart/form-data":
        header = f"Content-Type: {content_type}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(header + body)
        params: dict[str, Any] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if isinstance(name, str) and isinstance(payload, bytes):
                params[name] = _decode_form_value(name, payload.decode("utf-8"))
        return params
    pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    return {key: _decode_form_value(key, value) for key, value in pairs}


class _Handler(BaseHTTPRequestHandler):
    api: FakeTelegram
    protocol_version = "HTTP/1.0"
    server_version = "FakeTelegram/1.0"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            params = _parse_body(self.headers.get("Content-Type", ""), body)
        except (ValueError, UnicodeDecodeError):
            self._reply(400, _error(400, "Bad Request: invalid request body"))
            return
        path, _, query = self.path.partition("?")
        params.update({k: _decode_form_value(k, v) for k, v in parse_qsl(query)})
        self._reply(*self.api.handle(path, params))

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        params = {k: _decode_form_value(k, v) for k, v in parse_qsl(query)}
        self._reply(*self.api.handle(path, params))

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode("utf-8")
        # The client may be gone (a cancelled long poll, a killed bot): as with Telegram, the
        # answer is then lost without an error.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request stderr log: the URL path carries the token."""
