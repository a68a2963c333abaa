"""The cleaning methods added on top of trafilatura, each on a small synthetic page.

- sibling chunks: an article body split over several same-shaped containers comes out whole,
  while same-shaped teaser cards do not come in;
- a quotation block (an embedded post) among the body's paragraphs stays, in place;
- a description that is the body's first paragraph stays in the body (it is the lede);
- updated time and lead image are read;
- the phrase rules for promotions after the story, with real prose that must survive them.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from feeds.boilerplate import boilerplate_reason, judge_blocks
from feeds.extract import extract_article

URL = "https://paper.example/2026/11/story.html"


def prose(topic: str, count: int) -> list[str]:
    return [
        f"Paragraph {n} about the {topic}: officials met again on Thursday to go through the "
        f"figures, and the {topic} came up several times during the long afternoon session."
        for n in range(1, count + 1)
    ]


def test_an_article_split_into_sibling_chunks_comes_out_whole() -> None:
    """Each chunk's container is named like an article body, so trafilatura takes the first
    one for the whole body (as it does on real pages built this way)."""
    chunks = [prose("budget", 4), prose("harbour", 3), prose("railway", 3)]
    body = "".join(
        "<div class='grid chunk'><div class='article__body'>"
        + "".join(f"<p>{p}</p>" for p in chunk)
        + "</div><aside class='rail'><a href='/promo'>Offer</a></aside></div>"
        + "<div class='ad-slot'>Advertisement</div>"
        for chunk in chunks
    )
    page = (
        "<html><head><title>Three chunks</title></head><body><main><article>"
        f"<h1>Three chunks</h1>{body}</article></main></body></html>"
    )
    article = extract_article(page, URL)
    expected = [p for chunk in chunks for p in chunk]
    assert list(article.paragraphs) == expected


BLURB = (
    "A blurb that sells another story of the day, written as a full sentence so that it reads "
    "like prose, and long enough to pass for a paragraph of the article itself."
)


@pytest.mark.parametrize(
    "card",
    [
        # Linked cards with two blurbs each: prose inside a link is a teaser.
        "<a href='/other/{n}'><h3>Other story {n}</h3><p>{blurb}</p><p>{blurb}</p></a>",
        # One long blurb per card: a body chunk holds several paragraphs.
        "<h3><a href='/other/{n}'>Other story {n}</a></h3><p>{blurb} {blurb} {blurb}</p>",
    ],
)
def test_same_shaped_teaser_cards_are_not_taken_for_chunks(card: str) -> None:
    story = prose("budget", 5)
    cards = "".join(
        "<div class='grid chunk'><div class='article__body'>"
        + card.format(n=n, blurb=BLURB)
        + "</div></div>"
        for n in range(4)
    )
    page = (
        "<html><head><title>Budget</title></head><body><article><h1>Budget</h1>"
        "<div class='grid chunk'><div class='article__body'>"
        + "".join(f"<p>{p}</p>" for p in story)
        + f"</div></div>{cards}</article></body></html>"
    )
    article = extract_article(page, URL)
    assert list(article.paragraphs) == story


def test_embedded_posts_quoted_in_the_body_stay_in_place() -> None:
    """A post quoted between paragraphs (as sites embed tweets) is part of the story as written;
    content engines drop it as a social widget."""
    story = prose("ad campaign", 4)
    post = (
        "<div class='social-embed'><blockquote class='twitter-tweet'><p lang='en'>Yes this is"
        " real and yes the state spent half a million on it <a href='https://t.co/x'>t.co/x</a>"
        "</p>— A Reader (@reader) <a href='https://twitter.com/r/1'>November 18, 2019</a>"
        "</blockquote></div>"
    )
    page = (
        "<html><head><title>Campaign</title></head><body><article><h1>Campaign</h1>"
        "<div class='entry-content'>"
        f"<p>{story[0]}</p><p>{story[1]}</p>{post}<p>{story[2]}</p><p>{story[3]}</p>"
        "</div></article></body></html>"
    )
    article = extract_article(page, URL)
    quoted = (
        "Yes this is real and yes the state spent half a million on it t.co/x — A Reader "
        "(@reader) November 18, 2019"
    )
    assert list(article.paragraphs) == [*story[:2], quoted, *story[2:]]
    assert "<blockquote>" in article.html


def test_a_description_that_is_the_first_paragraph_stays_in_the_body() -> None:
    story = prose("flood defences", 4)
    page = (
        "<html><head><title>Floods</title>"
        f"<meta name='description' content='{story[0]}'></head><body><article><h1>Floods</h1>"
        + "".join(f"<p>{p}</p>" for p in story)
        + "</article></body></html>"
    )
    article = extract_article(page, URL)
    assert list(article.paragraphs) == story
    assert article.standfirst is None


def test_a_standfirst_above_the_body_stays_a_standfirst() -> None:
    story = prose("flood defences", 4)
    standfirst = "Engineers say the new walls will hold, but residents are not so sure"
    page = (
        "<html><head><title>Floods</title>"
        f"<meta property='og:description' content='{standfirst}'></head><body>"
        f"<header><h1>Floods</h1><p class='standfirst'>{standfirst}</p></header><article>"
        + "".join(f"<p>{p}</p>" for p in story)
        + "</article></body></html>"
    )
    article = extract_article(page, URL)
    assert article.standfirst == standfirst
    assert standfirst not in article.paragraphs


def test_updated_time_and_lead_image() -> None:
    page = (
        "<html><head><title>Floods</title>"
        "<meta property='article:published_time' content='2026-11-20T08:00:00+01:00'>"
        "<meta property='article:modified_time' content='2026-11-21T09:30:00+01:00'>"
        "<meta property='og:image' content='/images/wall.jpg'>"
        "</head><body><article><h1>Floods</h1>"
        + "".join(f"<p>{p}</p>" for p in prose("walls", 3))
        + "</article></body></html>"
    )
    article = extract_article(page, URL)
    assert article.published == datetime(2026, 11, 20, 7, 0, tzinfo=UTC)
    assert article.updated == datetime(2026, 11, 21, 8, 30, tzinfo=UTC)
    assert article.image == "https://paper.example/images/wall.jpg"


def test_lead_image_from_json_ld_and_never_a_script_url() -> None:
    ld = (
        '{"@type": "NewsArticle", "headline": "Floods", "dateModified": "2026-11-21T09:30:00Z",'
        ' "image": [{"@type": "ImageObject", "url": "https://cdn.example/lead.jpg"}]}'
    )
    body = "".join(f"<p>{p}</p>" for p in prose("walls", 3))
    page = (
        f"<html><head><script type='application/ld+json'>{ld}</script></head>"
        f"<body><article><h1>Floods</h1>{body}</article></body></html>"
    )
    article = extract_article(page, URL)
    assert article.image == "https://cdn.example/lead.jpg"
    assert article.updated == datetime(2026, 11, 21, 9, 30, tzinfo=UTC)
    hostile = page.replace("</head>", "<meta property='og:image' content='javascript:alert(1)'>")
    assert extract_article(hostile, URL).image is None


@pytest.mark.parametrize(
    ("block", "reason"),
    [
        ("Get the latest updates right in your inbox. Subscribe to our newsletters.", "newsletter"),
        ("Morning Briefing Newsletter", "newsletter"),
        ("Thanks for signing up!", "registration"),
        ("Keep an eye on your inbox for the latest sports news.", "newsletter"),
        ("There was an error processing your subscription.", "newsletter"),
        ("Tell us what YOU think...", "reader prompt"),
        ("Have a tip? Our reporter may be reached at desk@paper.example.", "reader prompt"),
        ("Follow the Opinion section on Facebook, Twitter and Instagram.", "follow prompt"),
        ("Get the magazine delivered every month. Click here for more information.", "promotion"),
        ("(Reporting by A. Writer; additional reporting by B. Writer; editing by C. Editor)",
         "reporting credit"),
        ("Jane Doe contributed reporting from Kyiv.", "reporting credit"),
        ("Filed under: Politics |", "taxonomy"),
        ("4 min read", "reading time"),
        ("Show more", "expander"),
    ],
)  # fmt: skip
def test_promotion_rules(block: str, reason: str) -> None:
    found = boilerplate_reason(block)
    assert found is not None and reason in found


@pytest.mark.parametrize(
    "paragraph",
    [
        "The ministry said it would subscribe to the new standard, but a spokesman declined to "
        "say whether newsletters sent to farmers had been reviewed by lawyers before they went "
        "out in March, when the first complaints arrived.",
        "Residents were told to follow the advice on the council's website, and to contact the "
        "helpline if they could not be reached by the emergency services during the night.",
        "He contributed to the report's early drafts, colleagues said.",
        "More than a hundred people attended.",
    ],
)
def test_promotion_rules_keep_prose(paragraph: str) -> None:
    assert boilerplate_reason(paragraph) is None


def test_a_sign_up_widget_goes_as_a_whole() -> None:
    """The widget's own pitch and messages have no fixed wording; between two of its recognised
    lines they go with it. A paragraph of the story next to the widget stays."""
    story = prose("match", 2)
    blocks = [
        story[0],
        "Morning Briefing Newsletter",
        "Get the day's big stories, analysis and the odd surprise.",
        "Thanks for signing up!",
        "Keep an eye on your inbox for the latest news.",
        "Sorry!",
        "There was an error processing your subscription.",
        story[1],
    ]
    kept = [v.text for v in judge_blocks(blocks) if v.reason is None]
    assert kept == story
