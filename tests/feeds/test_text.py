"""Table tests for feeds.text: display-text hygiene and block separation."""

from __future__ import annotations

import lxml.html
import pytest
from lxml import etree

from feeds.text import block_text, clean_text, repair_mojibake, separate_blocks


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
