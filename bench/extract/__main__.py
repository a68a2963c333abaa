"""Article cleaning, side by side with trafilatura, on the article-extraction benchmark.

    .venv/bin/python -m bench.extract [--data DIR] [--only dev|holdout] [--repeat N] [--worst N]

Both extractors run in this process on the same pages, one after the other for each page, so the
speed figures share one machine state; the quality figures use the benchmark's metric (bags of
4-token shingles, per-page precision and recall averaged over pages, F1 of the two averages).

The pages are split into two fixed halves by the first hex digit of their id (a hash, so the split
is as good as random and never changes): `dev` (0-7) is the half the cleaning was developed on,
`holdout` (8-f) the half it was only measured on. Both halves are always printed, so a gain on the
dev half that does not hold on the other shows up as overfitting.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import trafilatura

from feeds.extract import extract_article

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared/datasets/article-extraction"
_WORD = re.compile(r"\w+")


@dataclass(frozen=True, slots=True)
class PageScore:
    """One page's shingle overlap, each count as a share of (tp + fp + fn)."""

    true_positive: float
    false_positive: float
    false_negative: float

    @property
    def precision(self) -> float:
        if self.false_positive == self.false_negative == 0:
            return 1.0
        predicted = self.true_positive + self.false_positive
        return self.true_positive / predicted if predicted else 0.0

    @property
    def recall(self) -> float:
        if self.false_positive == self.false_negative == 0:
            return 1.0
        expected = self.true_positive + self.false_negative
        return self.true_positive / expected if expected else 0.0

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0


def _shingles(text: str, size: int = 4) -> Counter[tuple[str, ...]]:
    words = _WORD.findall(text)
    return Counter(
        tuple(words[i : i + size]) for i in range(max(1, len(words) - size + 1)) if words
    )


def score_page(expected: str, predicted: str) -> PageScore:
    """The benchmark's per-page measure: shared, extra and missing shingles, normalised."""
    truth, guess = _shingles(expected), _shingles(predicted)
    shared = sum((truth & guess).values())
    extra = sum(guess.values()) - shared
    missing = sum(truth.values()) - shared
    total = shared + extra + missing
    if not total:
        return PageScore(0.0, 0.0, 0.0)
    return PageScore(shared / total, extra / total, missing / total)


def aggregate(scores: Iterable[PageScore]) -> tuple[float, float, float]:
    """(precision, recall, F1): precision averaged over pages with a prediction, recall over
    pages with a truth, F1 of the two averages (the benchmark's definition)."""
    rows = list(scores)
    precisions = [s.precision for s in rows if s.true_positive + s.false_positive > 0]
    recalls = [s.recall for s in rows if s.true_positive + s.false_negative > 0]
    precision = statistics.mean(precisions) if precisions else 0.0
    recall = statistics.mean(recalls) if recalls else 0.0
    total = precision + recall
    return precision, recall, (2 * precision * recall / total if total else 0.0)


def _wirewatch(html: bytes, url: str) -> str:
    return extract_article(html, url).text


def _trafilatura(html: bytes, url: str) -> str:
    return (
        trafilatura.extract(
            html.decode("utf-8", errors="replace"),
            url=url,
            favor_precision=True,
            include_comments=False,
        )
        or ""
    )


EXTRACTORS: dict[str, Callable[[bytes, str], str]] = {
    "wirewatch extract_article": _wirewatch,
    "trafilatura 2.3.1 favor_precision": _trafilatura,
}


def _half(page_id: str) -> str:
    return "dev" if page_id[0] in "01234567" else "holdout"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.extract", description=__doc__)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--worst", type=int, default=0, help="list our N worst pages")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="time each page this many times and keep the fastest (default 3): the least noisy"
        " estimate of a page's cost on a shared machine",
    )
    parser.add_argument("--only", choices=["dev", "holdout"], help="run one half only")
    args = parser.parse_args(argv)

    truth: dict[str, dict[str, str]] = json.loads(
        (args.data / "ground-truth.json").read_text("utf-8")
    )
    ids = sorted(i for i in truth if args.only is None or _half(i) == args.only)
    scores: dict[str, dict[str, PageScore]] = {name: {} for name in EXTRACTORS}
    timings: dict[str, list[float]] = {name: [] for name in EXTRACTORS}
    for page_id in ids:
        html = gzip.decompress((args.data / "html" / f"{page_id}.html.gz").read_bytes())
        url = truth[page_id].get("url") or ""
        for name, extractor in EXTRACTORS.items():
            best = float("inf")
            for _ in range(args.repeat):
                started = time.perf_counter()
                text = extractor(html, url)
                best = min(best, (time.perf_counter() - started) * 1000)
            timings[name].append(best)
            scores[name][page_id] = score_page(truth[page_id]["articleBody"], text)

    load = os.getloadavg()[0]
    print(f"{len(ids)} pages from {args.data}; 1-minute load average {load:.2f} at the end")
    print()
    print("| extractor | pages | precision | recall | F1 | median ms/page |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in EXTRACTORS:
        for half in ("all", "dev", "holdout"):
            chosen = [s for i, s in scores[name].items() if half == "all" or _half(i) == half]
            if not chosen:
                continue
            precision, recall, f1 = aggregate(chosen)
            median = f"{statistics.median(timings[name]):.1f}" if half == "all" else ""
            print(
                f"| {name} ({half}) | {len(chosen)} | {precision:.3f} | {recall:.3f} "
                f"| {f1:.3f} | {median} |"
            )
    print()
    print("| extractor | median ms | mean ms | p90 ms | max ms |")
    print("| --- | --- | --- | --- | --- |")
    for name, values in timings.items():
        ordered = sorted(values)
        p90 = ordered[int(len(ordered) * 0.9)]
        print(
            f"| {name} | {statistics.median(values):.1f} | {statistics.mean(values):.1f} "
            f"| {p90:.1f} | {ordered[-1]:.1f} |"
        )
    if args.worst:
        ours = scores["wirewatch extract_article"]
        theirs = scores["trafilatura 2.3.1 favor_precision"]
        print()
        for page_id in sorted(ours, key=lambda i: ours[i].f1)[: args.worst]:
            s = ours[page_id]
            print(
                f"  {s.f1:.3f} P {s.precision:.2f} R {s.recall:.2f} (traf {theirs[page_id].f1:.3f})"
                f"  {_half(page_id)} {page_id[:12]} {truth[page_id].get('url')}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
