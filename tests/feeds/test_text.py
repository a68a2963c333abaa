"""Table tests for feeds.text: display-text hygiene and block separation."""

from __future__ import annotations

import lxml.html
import pytest
from lxml import etree

from feeds.text import (
    block_text,
    clean_text,
    fold_for_comparison,
    html_to_text,
    paragraphs_from_line_breaks,
    repair_mojibake,
    separate_blocks,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a\u00a0b", "a b"),
        ("10\u202f000 troops", "10 000 troops"),
        ("zero\u200bwidth", "zerowidth"),
        ("soft\u00adhyphen", "softhyphen"),
        ("\ufeffBOM first", "BOM first"),
        ("  many   spaces\n\n and\tlines  ", "many spaces and lines"),
        ("“quoted” — ‘kept’", "“quoted” — ‘kept’"),
        ("control\x00\x07chars", "controlchars"),
        ("نمی\u200cخواهم", "نمی\u200cخواهم"),  # ZWNJ is meaningful in Persian: kept
        ("", ""),
    ],
)
def test_clean_text(raw: str, expected: str) -> None:
    assert clean_text(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Itâ€™s a cafÃ©", "It’s a café"),
        ("São Paulo", "São Paulo"),  # correct text is left alone
        ("Ã plain", "Ã plain"),  # a lone marker that does not round-trip is left alone
        ("no markers here", "no markers here"),
    ],
)
def test_repair_mojibake(raw: str, expected: str) -> None:
    assert repair_mojibake(raw) == expected


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        (
            "<div><p>logged in</p><p>Please refresh</p></div>",
            "logged in\nPlease refresh",
        ),
        ("<div>before<div>inside</div>after</div>", "before\ninside\nafter"),
        ("<p>one<br>two</p>", "one\n\ntwo"),
        ("<p>in<b>line</b> words</p>", "inline words"),
        ("<div><p>spaced</p> <p>already</p></div>", "spaced already"),
    ],
)
def test_separate_blocks_unglues_block_text(html: str, expected: str) -> None:
    root = lxml.html.fragment_fromstring(html, create_parent="div")
    separate_blocks(root)
    assert root.text_content().strip() == expected


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<div><p>logged in</p><p>Please</p></div>", "logged in Please"),
        ("<p>a<!-- comment --> b<script>var x</script>c</p>", "a bc"),
        ("<h1>Head<span>line</span></h1>", "Headline"),
    ],
)
def test_block_text(html: str, expected: str) -> None:
    assert block_text(lxml.html.fragment_fromstring(html, create_parent="div")) == expected


def test_block_text_survives_deep_nesting() -> None:
    root = lxml.html.fragment_fromstring("<div>x</div>")
    node = root
    for _ in range(5000):
        node = etree.SubElement(node, "span")
    node.text = "deep"
    assert block_text(root) == "xdeep"


@pytest.mark.parametrize(
    ("fragment", "text"),
    [
        ("plain   text\n here", "plain text here"),
        ("AT&amp;T &eacute;t&eacute;", "AT&T été"),
        ("<p>one</p><p>two</p>", "one two"),
        ("wo<b>rd</b>", "word"),
        ("line<br>break", "line break"),
        ("<script>alert(1)</script><style>p{}</style>kept", "kept"),
        ("<!-- note -->visible", "visible"),
        ("<!-- only a comment -->", ""),
        ("5 < 6 & 7 > 3", "5 < 6 & 7 > 3"),
        ("", ""),
        # The same hygiene as every other display text (clean_text), markup or not.
        ("Uk\u00adraine", "Ukraine"),
        ("Uk&shy;raine", "Ukraine"),
        ("<b>Uk&shy;raine</b>\u200b talks", "Ukraine talks"),
        ("Kyiv&nbsp;and\u202fLviv", "Kyiv and Lviv"),
        ("bad\x00byte\x07", "badbyte"),
        # A whole document: its body's text; one with no body has none (lxml fails on it).
        ("<!DOCTYPE html><html><body><p>Body</p> text</body></html>", "Body text"),
        ("<html><head><title>no body</title></head></html>", ""),
        ("<html>", ""),
    ],
)
def test_html_to_text(fragment: str, text: str) -> None:
    assert html_to_text(fragment) == text


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("Macron–Putin talks.", "macron putin talks"),
        ("Uk\u00adraine", "ukraine"),  # invisible characters do not split a word
        ("By  Jane\u00a0Doe", "by jane doe"),
        ("STRASSE_name", "strasse name"),
    ],
)
def test_fold_for_comparison_ignores_case_punctuation_and_spacing(first: str, second: str) -> None:
    assert fold_for_comparison(first) == fold_for_comparison(second) == second


def test_fold_for_comparison_keeps_words_apart() -> None:
    assert fold_for_comparison("Ukraine talks") != fold_for_comparison("Ukrainetalks")
    assert fold_for_comparison("— · —") == ""


@pytest.mark.parametrize(
    ("html", "paragraphs"),
    [
        # Loose text split by blank lines becomes paragraphs; links and emphasis stay inside,
        # with the text before them and the space after them kept.
        (
            "<div>One <a href='/x'>linked</a> word.<br><br>\n"
            "Two <em>em</em> phrase.<br><br>Three</div>",
            ["One linked word.", "Two em phrase.", "Three"],
        ),
        # A single line break is a line break inside the paragraph.
        ("<div>Street 1<br>Town<br><br>Next</div>", ["Street 1 Town", "Next"]),
        # Block children stay between the new paragraphs.
        (
            "<div>First<br><br><h2>Head</h2>Second<br> <br>Third</div>",
            ["First", "Head", "Second", "Third"],
        ),
        # A text wrapped in a span (as some sites do) too.
        ("<div><span>A<br><br>B</span></div>", ["A", "B"]),
        # No blank line: nothing changes.
        ("<div>Only<br>one break</div>", ["Only one break"]),
    ],
)
def test_paragraphs_from_line_breaks(html: str, paragraphs: list[str]) -> None:
    root = lxml.html.fragment_fromstring(html, create_parent="section")
    paragraphs_from_line_breaks(root)
    separate_blocks(root)
    blocks = [block_text(node) for node in root.iter("p", "h2") if block_text(node)] or [
        block_text(root)
    ]
    assert blocks == paragraphs


def test_paragraphs_from_line_breaks_keeps_textless_nodes() -> None:
    root = lxml.html.fragment_fromstring(
        "<div><a href='/i'><img src='a.jpg'></a><br><br>Text<br><br></div>", create_parent="div"
    )
    paragraphs_from_line_breaks(root)
    assert root.xpath("count(.//img)") == 1
    assert [block_text(p) for p in root.iter("p")] == ["Text"]
