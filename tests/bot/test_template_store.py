"""Learned site templates in the store: what cleaning learns survives a restart, and is forgotten
as feeds.templates says (on a real SQLite file)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, func, select

from bot.schema import site_blocks
from bot.store import Store
from feeds.extract import clean_page, extract_article
from feeds.templates import MIN_PAGES, SiteTemplate, learn


@pytest.fixture
def database(store_url: str) -> str:
    return store_url


@pytest.fixture
def store(database: str) -> Iterator[Store]:
    opened = Store.open(database)
    yield opened
    opened.close()


def stored_blocks(database: str, site: str) -> int:
    engine = create_engine(database)
    try:
        with engine.connect() as connection:
            count = connection.scalar(
                select(func.count()).select_from(site_blocks).where(site_blocks.c.site == site)
            )
    finally:
        engine.dispose()
    return int(count or 0)


def test_an_unknown_site_has_an_empty_template(store: Store) -> None:
    assert store.site_template("never.example") == SiteTemplate("never.example")


def test_the_store_learns_as_the_pure_logic_does(store: Store) -> None:
    pages = [["nav", "appeal", f"story-{i}"] for i in range(MIN_PAGES + 3)]
    expected = SiteTemplate("a.example")
    for keys in pages:
        returned = store.learn_site_page("a.example", keys)
        expected = learn(expected, keys).template
        assert returned == store.site_template("a.example")
    stored = store.site_template("a.example")
    assert stored.pages == expected.pages
    assert dict(stored.blocks) == pytest.approx(dict(expected.blocks))
    assert stored.boilerplate() == expected.boilerplate() == {"nav", "appeal"}
    # Sites never share what they learned.
    assert store.site_template("b.example").pages == 0


def test_the_template_survives_a_restart_and_forgets_old_blocks(database: str) -> None:
    with Store.open(database) as store:
        for index in range(60):
            store.learn_site_page("a.example", ["appeal", f"story-{index}"])
    assert stored_blocks(database, "a.example") < 40  # stories seen once were forgotten
    with Store.open(database) as store:
        template = store.site_template("a.example")
    assert template.pages == 60
    assert template.boilerplate() == {"appeal"}


def test_cleaning_with_the_stored_template(store: Store) -> None:
    """The loop ingest runs: clean with the site's template, then learn from the page."""
    appeal = "Independent news needs independent readers: chip in whatever you can spare today."

    def page(index: int) -> str:
        story = "".join(
            f"<p>Story {index}, paragraph {n}: the committee met again and agreed on the next "
            f"steps after a long debate about costs, timing and the view of residents.</p>"
            for n in range(3)
        )
        return (
            f"<html><body><article><h1>Story {index}</h1>{story}<p>{appeal}</p>"
            "</article></body></html>"
        )

    site = "paper.example"
    for index in range(MIN_PAGES + 2):
        cleaned = clean_page(page(index), f"https://{site}/{index}", store.site_template(site))
        store.learn_site_page(site, cleaned.fingerprints)
    before = extract_article(page(99), f"https://{site}/99")
    after = extract_article(page(99), f"https://{site}/99", store.site_template(site))
    assert appeal in before.paragraphs
    assert appeal not in after.paragraphs
    assert after.paragraphs == before.paragraphs[:-1]
