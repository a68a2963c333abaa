"""What is never article text, as data: phrase rules for single blocks, and a few context rules.

The main-content engine (trafilatura) removes most page furniture, but news pages put prompts,
appeals and captions *inside* the article container, where no layout heuristic can tell them from
prose. These rules catch them by what they say. Every rule is generic (nothing is keyed to a site
or URL) and built to be safe: a rule either matches a block as a whole (an appeal, a prompt) or
only applies to short blocks, so that a real paragraph that happens to quote such a phrase survives.
Rules are cheap: one precompiled regex each, run on blocks that are already short display text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from feeds.text import clean_text, fold_for_comparison


@dataclass(frozen=True, slots=True)
class Rule:
    """A pattern that marks a block as boilerplate when it matches and the block is short enough."""

    reason: str
    pattern: re.Pattern[str]
    max_chars: int
    """Blocks longer than this are never dropped by this rule (the safety bound)."""
    kind: str = "furniture"
    """Rules of kind "appeal" also drop short blocks sandwiched between two appeal blocks."""


def _rule(reason: str, regex: str, max_chars: int = 200, kind: str = "furniture") -> Rule:
    return Rule(reason, re.compile(regex, re.IGNORECASE), max_chars, kind)


RULES: tuple[Rule, ...] = (
    # Browser notification prompts.
    _rule(
        "notification prompt",
        r"^stay (up to date|informed|in the know) with (our )?notifications\b",
    ),
    _rule(
        "notification prompt", r"\bnotifications?\b.{0,60}\b(browser|preferences|settings)\b", 160
    ),
    _rule("notification prompt", r"^(turn on|enable|allow) (push |browser )?notifications\b", 160),
    # Donation and subscription appeals.
    _rule(
        "appeal",
        r"^your support (helps us|allows us|keeps us|makes all the difference|means the world)\b",
        200,
        "appeal",
    ),
    _rule(
        "appeal",
        r"\byour (support|donation|contribution|subscription) (helps|allows|enables|makes|keeps|"
        r"funds) (us|our)\b",
        600,
        "appeal",
    ),
    _rule(
        "appeal",
        r"\bjournalism\b.{0,80}\b(available to everyone|free for everyone|paid for by|"
        r"free to read)\b",
        600,
        "appeal",
    ),
    _rule(
        "appeal",
        r"^(support|fund|back) (us|our journalism|independent journalism|quality journalism)\b",
        300,
        "appeal",
    ),
    _rule("appeal", r"^(please )?(donate|contribute|subscribe) (now|today)\b", 200, "appeal"),
    _rule(
        "appeal",
        r"^(already a subscriber|subscribe to (continue|read)|become a (member|subscriber))\b",
        200,
        "appeal",
    ),
    # Comment prompts and counters.
    _rule(
        "comments prompt",
        r"^join (our|the) (commenting forum|conversation|discussion|debate)\b",
        200,
    ),
    _rule("comments prompt", r"^join thought-provoking conversations\b", 300),
    _rule(
        "comments prompt",
        r"^(\d+\s+)?(comments?|show comments|view comments|leave a comment|"
        r"add a comment)(\s*\(?\d+\)?)?$",
        40,
    ),
    # Registration and login messages.
    _rule("registration message", r"^thank you for (registering|signing up|subscribing)\b", 200),
    _rule(
        "registration message", r"\brefresh (the|your) (page|browser)\b.{0,120}\blogged in\b", 300
    ),
    _rule(
        "registration message",
        r"^(log ?in|sign ?in|register) (to|for) (continue|comment|read|access)\b",
        200,
    ),
    # Image captions and credits.
    _rule(
        "image credit",
        r"\((getty( images)?|afp|ap|pa|epa|reuters|shutterstock|alamy|ap photo[^)]*|"
        r"[^()]{0,40} via getty images)\)\s*$",
        300,
    ),
    _rule("image credit", r"^(photo|photograph|image|picture|credit|photo credit)s?\s*:", 200),
    _rule("image credit", r"\b(photo|photograph|image|picture)( credit)?:\s*[^.:]{1,80}$", 300),
    # Video teasers.
    _rule(
        "video teaser",
        r"^(watch|watch live|watch now|watch video|video)\s*(:|as\b|now\b|live\b)",
        160,
    ),
    # Share bars.
    _rule(
        "share bar",
        r"^(share( this( article| story| page)?)?( on| via)?|copy link|email|facebook|twitter|"
        r"whatsapp|linkedin|pinterest|reddit|x)([\s,|/·•]+(share|copy link|email|facebook|twitter|"
        r"whatsapp|linkedin|pinterest|reddit|x|messenger))*\s*$",
        120,
    ),
    # Newsletter prompts.
    _rule("newsletter prompt", r"^(sign up|subscribe|register)\b.{0,60}\bnewsletters?\b", 250),
    _rule(
        "newsletter prompt",
        r"\b(get|receive) (our|the) .{0,40}newsletter\b.{0,40}(inbox|email)",
        250,
    ),
    # Cookie banners.
    _rule("cookie banner", r"\b(we|this (web)?site) uses? cookies\b", 400),
    _rule("cookie banner", r"^(accept|manage|reject) (all )?cookies$", 40),
    # Related links.
    _rule(
        "related links",
        r"^(read more|related|more on this( story)?|recommended|read next|most read|"
        r"you may also like|see also|more from)\b\s*[:›»>|-]?",
        160,
    ),
    _rule("advertisement", r"^(advertisement|sponsored( content)?|skip advert|ad)$", 40),
    # Newsletter sign-up boxes, whatever words surround the prompt.
    _rule("newsletter prompt", r"\bsubscribe to\b[^,.;:!?]{0,60}\bnewsletters?\b", 250),
    _rule("newsletter prompt", r"^[^.!?]{0,40}\bnewsletters?$", 50),
    _rule("newsletter prompt", r"\b(keep an eye on|check) your inbox\b", 160),
    _rule("newsletter prompt", r"\berror processing your (subscription|request|sign-?up)\b", 160),
    _rule("registration message", r"^thanks for (registering|signing up|subscribing)\b", 80),
    # Reader prompts and contact lines after the story.
    _rule("reader prompt", r"^tell us what you think\b", 60),
    _rule(
        "reader prompt",
        r"\b(we'd|we’d|we would) (like|love) to hear (what you think|from you)\b",
        400,
    ),
    _rule("reader prompt", r"^(have a|got a|send us a) (news )?tip\b", 300),
    _rule("reader prompt", r"\b(may|can) be reached (at|by|on)\b", 250),
    _rule(
        "follow prompt",
        r"^follow\b.{0,80}\bon (facebook|twitter|instagram|linkedin|youtube|tiktok)\b",
        200,
    ),
    _rule("promotion", r"\bclick here (for|to)\b", 200),
    # Credit lines of wire copy ("(Reporting by A; editing by B)", "C contributed reporting").
    _rule("reporting credit", r"^\(?(additional )?(reporting|writing) by\b.*\bediting by\b", 300),
    _rule("reporting credit", r"\bcontributed (reporting|to this report)\b", 200),
    # Page furniture with no words of the story: taxonomy, reading time, expanders.
    _rule("taxonomy", r"^(filed under|posted in|categories|tags)\s*:", 200),
    _rule("reading time", r"^(\d+\s*min(ute)?s?\s*read|reading time\b)", 40),
    _rule("expander", r"^(more|less|show more|show less|read less|see more|see less)$", 12),
)


def boilerplate_reason(text: str) -> str | None:
    """The reason a block of display text is never article text, or None if it may be."""
    text = clean_text(text)
    if not text:
        return "empty"
    for rule in RULES:
        if len(text) <= rule.max_chars and rule.pattern.search(text):
            return rule.reason
    return None


@dataclass(frozen=True, slots=True)
class Verdict:
    """One block and why it was dropped (None when it is kept)."""

    text: str
    reason: str | None


# Blocks this long or longer are never dropped by the sandwich rule.
_SANDWICH_MAX_CHARS = 700
# A sign-up widget (newsletter, registration) is several short lines: its title, a pitch, and the
# messages it shows after a click. A short line between two of its recognised lines is part of it.
_WIDGET_REASONS = frozenset({"newsletter prompt", "registration message"})
_WIDGET_SANDWICH_MAX_CHARS = 200


def judge_blocks(
    blocks: Sequence[str],
    *,
    title: str | None = None,
    standfirst: str | None = None,
    author: str | None = None,
    dateline: str | None = None,
) -> list[Verdict]:
    """Decide block by block what to keep, with the reason for each drop.

    Beyond the single-block rules: a block that repeats the title, standfirst, byline or dateline
    is dropped (the page shows them above the body; they are fields of the Article, not prose);
    a short block that an adjacent caption repeats ("X" next to "X (Getty Images)") is the caption's
    echo; and a block sandwiched between two appeal blocks is part of the same appeal box, as is a
    short line between two lines of a sign-up widget.
    """
    repeats = {
        fold_for_comparison(value) for value in (title, standfirst, author, dateline) if value
    }
    if author:
        repeats.add(fold_for_comparison(f"by {author}"))
    repeats.discard("")
    folded = [fold_for_comparison(block) for block in blocks]
    reasons: list[str | None] = []
    for block, key in zip(blocks, folded, strict=True):
        reason = boilerplate_reason(block)
        if reason is None and key in repeats:
            reason = "repeats the headline or byline"
        reasons.append(reason)

    for index, reason in enumerate(reasons):
        if reason is not None or len(folded[index]) > 200:
            continue
        for neighbour in (index - 1, index + 1):
            if (
                0 <= neighbour < len(blocks)
                and reasons[neighbour] == "image credit"
                and folded[index]
                and folded[neighbour].startswith(folded[index])
            ):
                reasons[index] = "image caption"
                break

    for index in range(1, len(blocks) - 1):
        if (
            reasons[index] is None
            and len(blocks[index]) <= _SANDWICH_MAX_CHARS
            and reasons[index - 1] == "appeal"
            and reasons[index + 1] == "appeal"
        ):
            reasons[index] = "appeal"
        elif (
            reasons[index] is None
            and len(blocks[index]) <= _WIDGET_SANDWICH_MAX_CHARS
            and reasons[index - 1] in _WIDGET_REASONS
            and reasons[index + 1] in _WIDGET_REASONS
        ):
            reasons[index] = reasons[index - 1]
    return [Verdict(block, reason) for block, reason in zip(blocks, reasons, strict=True)]
