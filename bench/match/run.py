"""bench/match: the matcher against many terms, with a raw automaton scan as the baseline.

Run: .venv/bin/python -m bench.match.run            (5,000 articles; 100, 10,000, 100,000 terms)
     .venv/bin/python -m bench.match.run --articles 500 --sizes 100 1000   (a quick look)

Each size runs in a fresh process so its memory figure is its own. For each it reports:

- build: seconds to compile every watchlist (parse, automaton, percolator index);
- memory: growth of the process's resident set size over the build (automaton and rules);
- matcher: articles per second through `Matcher.match`, normalisation and boolean stage included;
- raw scan: articles per second of a bare pyahocorasick automaton over the same padded terms,
  iterating every hit of the same articles' already-normalised fields (the baseline);
- ratio: matcher / raw scan (target at 100,000 terms: at least 0.5);
- and, on a sample, the rate without the percolator (every rule evaluated for every article).

The data is generated, deterministic (seeded) and news-like: about 4 KB articles of everyday words
with typographic quotes, apostrophes and dashes, naming a few people, places and organisations;
one article in ten names someone with an accented name (Orbán, Dvořák...: letters folded one by
one before the bulk path; Łódź: the slower word-by-word path). Terms are names (single words) and
2–3-word phrases, grouped into watchlists of ten terms: keywords, `all` terms and an exclusion,
and every fifth watchlist a query with an alias group, a prefix and a proximity operator.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import ahocorasick

from feeds.match import FIELDS, Matcher
from feeds.models import Article, Watchlist
from feeds.normalize import normalize
from feeds.query import terms_in

_EVERYDAY_WORDS = (
    "the of and to in a is that for on was with he it as at by from his said have has "
    "were be are they this which but not had their after government minister year people "
    "new two first last over more when also would who will been than other into some could "
    "time there about years week city country police state officials told report talks "
    "president security military forces border army economy prices workers union strike "
    "election party vote leader parliament court law bank rates market energy gas oil "
    "water flood storm fire hospital health school children women men family home houses "
    "morning night day today yesterday tomorrow month spring summer autumn winter capital "
    "north south east west region local national international foreign trade deal plan "
    "support crisis war peace attack defence aid meeting summit agreement statement "
    "spokesman spokeswoman according told reporters added warned called said expected"
)
EVERYDAY = tuple(_EVERYDAY_WORDS.split())
_SYLLABLE_TEXT = (
    "ka ri to ma ne lu sa vi do re ba ko li na tu mi ha se po ra ve ly an or el ix "
    "dra ste gor vin tal mar ben sol kir dun fel har jor lem nov pet rus tov val zan"
)
SYLLABLES = tuple(_SYLLABLE_TEXT.split())
ACCENTED = ("Orbán", "Zürich", "Łódź", "Müller", "Bénédicte", "São", "Ñúñez", "Dvořák")
PUNCTUATION = ("’s", ",", ".", " —", ";", ":", "”", "“")


def make_names(count: int, rng: random.Random) -> list[str]:
    names: set[str] = set()
    while len(names) < count:
        size = rng.choice((2, 3, 3, 4))
        names.add("".join(rng.choice(SYLLABLES) for _ in range(size)).capitalize())
    return sorted(names)


def make_watchlists(term_count: int, names: list[str], rng: random.Random) -> list[Watchlist]:
    """Watchlists of ten terms each: about 60% single names, 40% phrases of 2–3 words."""

    names_and_words = names + list(EVERYDAY)

    def term() -> str:
        if rng.random() < 0.6:
            return rng.choice(names)
        words = [rng.choice(names), rng.choice(names_and_words)]
        if rng.random() < 0.5:
            words.append(rng.choice(names))
        return " ".join(words)

    watchlists = []
    made = 0
    index = 0
    while made < term_count:
        size = min(10, term_count - made)
        terms = [term() for _ in range(size)]
        if index % 5 == 4 and size >= 4:
            first, second, third, *rest = terms
            first, second = (f'"{t}"' if " " in t else t for t in (first, second))
            query = f"({first} | {second}) AROUND(8) {third.split()[0][:4]}*"
            keywords = tuple(rest) or (first,)
            watchlists.append(Watchlist(f"w{index}", keywords, query=query))
        else:
            keywords, all_of, exclude = terms[:-3] or terms, tuple(terms[-3:-1]), (terms[-1],)
            if size < 4:
                all_of, exclude = (), ()
            watchlists.append(Watchlist(f"w{index}", tuple(keywords), all_of, exclude))
        made += size
        index += 1
    return watchlists


def make_articles(
    count: int, names: list[str], rng: random.Random, watchlists: list[Watchlist] | None = None
) -> list[Article]:
    """News-like articles; with watchlists, one in ten is about the terms of one of them."""
    topic: list[str] = []

    def sentence(words: int, mentions: float) -> str:
        out = []
        for _ in range(words):
            if topic and rng.random() < 0.02:
                out.append(rng.choice(topic))
            elif rng.random() < mentions:
                out.append(rng.choice(names))
            else:
                out.append(rng.choice(EVERYDAY))
            if rng.random() < 0.08:
                out[-1] += rng.choice(PUNCTUATION)
        return " ".join(out).capitalize() + "."

    articles = []
    for number in range(count):
        topic = []
        if watchlists and rng.random() < 0.1:
            chosen = rng.choice(watchlists)
            topic = [*chosen.keywords[:2], *chosen.all_of]
        accented = number % 10 == 0
        paragraphs, size = [], 0
        while size < 3800:
            paragraph = " ".join(sentence(rng.randint(12, 28), 0.03) for _ in range(3))
            if accented and not paragraphs:
                paragraph = f"{rng.choice(ACCENTED)} {paragraph}"
            paragraphs.append(paragraph)
            size += len(paragraph) + 2
        articles.append(
            Article(
                url=f"https://news.example/{number}",
                title=sentence(9, 0.2),
                paragraphs=tuple(paragraphs),
                html="",
                standfirst=sentence(25, 0.05),
            )
        )
    return articles


BATCH = 100


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


@dataclass
class Result:
    terms: int
    watchlists: int
    patterns: int
    build_seconds: float
    memory_mb: float
    matcher_rate: float
    raw_rate: float
    unpercolated_rate: float
    matches: int
    raw_hits: int


def measure(term_count: int, article_count: int, seed: int = 5) -> Result:
    rng = random.Random(seed)
    names = make_names(max(2000, term_count), rng)
    watchlists = make_watchlists(term_count, names, rng)
    articles = make_articles(article_count, names, random.Random(seed + 1), watchlists)

    before = rss_bytes()
    started = time.process_time()
    matcher = Matcher(watchlists)
    build = time.process_time() - started
    memory = (rss_bytes() - before) / 1e6

    # The baseline: the same padded terms in a bare automaton, scanning normalised text.
    raw = ahocorasick.Automaton()
    for watchlist in watchlists:
        for term in terms_in(matcher.tree(watchlist.name)):
            for pattern in term.patterns:
                raw.add_word(f" {pattern.words}" + ("" if pattern.prefix else " "), 0)
    raw.make_automaton()
    normalised = [
        [
            normalize(article.title).canonical,
            normalize(article.standfirst or "").canonical,
            normalize(article.text).canonical,
        ]
        for article in articles
    ]
    # Baseline and matcher take turns on batches of articles, so that a change in the machine's
    # load during the run hits both alike; times are this process's CPU time.
    raw_hits = matches = 0
    raw_time = matcher_time = 0.0
    for start in range(0, len(articles), BATCH):
        started = time.process_time()
        for fields in normalised[start : start + BATCH]:
            for text in fields:
                for _ in raw.iter(text):
                    raw_hits += 1
        raw_time += time.process_time() - started
        started = time.process_time()
        for article in articles[start : start + BATCH]:
            matches += len(matcher.match(article, "wire"))
        matcher_time += time.process_time() - started
    raw_rate = len(articles) / raw_time
    matcher_rate = len(articles) / matcher_time

    sample = articles[: min(len(articles), 200)]
    everything = Matcher(watchlists, percolate=False)
    started = time.process_time()
    for article in sample:
        everything.match(article, "wire")
    unpercolated_rate = len(sample) / (time.process_time() - started)

    return Result(
        term_count,
        len(watchlists),
        matcher.pattern_count,
        build,
        memory,
        matcher_rate,
        raw_rate,
        unpercolated_rate,
        matches,
        raw_hits,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--articles", type=int, default=5000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 10_000, 100_000])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child process's size
    args = parser.parse_args(argv)
    if args.one is not None:
        print(json.dumps(measure(args.one, args.articles).__dict__))
        return 0
    print(
        f"{args.articles} articles of about 4 KB ({' / '.join(FIELDS)}), "
        f"python {sys.version.split()[0]}\n"
    )
    print("| terms | watchlists | build | memory | matcher | raw scan | ratio | no percolator |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for size in args.sizes:
        child = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.match.run",
                "--articles",
                str(args.articles),
                "--one",
                str(size),
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        result = Result(**json.loads(child.stdout))
        print(
            f"| {result.terms:,} | {result.watchlists:,} | {result.build_seconds:.2f} s "
            f"| {result.memory_mb:.0f} MB | {result.matcher_rate:,.0f}/s "
            f"| {result.raw_rate:,.0f}/s "
            f"| {result.matcher_rate / result.raw_rate:.2f} | {result.unpercolated_rate:,.0f}/s |"
        )
        print(
            f"<!-- {result.patterns:,} spellings, {result.matches:,} matches, "
            f"{result.raw_hits:,} raw hits -->",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
