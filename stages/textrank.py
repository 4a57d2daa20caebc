"""Extractive summaries by TextRank (Mihalcea and Tarau, 2004), in plain Python.

Sentences are nodes, shared content words weight the edges, and PageRank finds the
sentences that most others echo: the document's centre. The chosen sentences keep their
original order, so the summary reads like the document. Kept apart from summarize.py, which
is about talking to an LLM; this module needs no network and no model.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict

from stages.text import content_words, sentences, words

MIN_SENTENCES = 3
MAX_SENTENCES = 7
SHARE = 0.2  # of the document's sentences, between the two bounds above
MIN_SENTENCE_WORDS = 5  # shorter ones are mostly headings and captions
# Edges grow with the square of the sentence count; past this many, the summary is taken
# from the opening sentences, which bounds a huge document's cost.
MAX_RANKED = 1000
DAMPING = 0.85
ITERATIONS = 100
TOLERANCE = 1e-6

Graph = list[dict[int, float]]


def extractive_summary(text: str) -> str:
    """The most central sentences, in document order: 3, or about 20% of a long document."""
    every = sentences(text)
    candidates = [s for s in every if len(words(s)) >= MIN_SENTENCE_WORDS] or every
    candidates = candidates[:MAX_RANKED]
    count = summary_length(len(candidates))
    if count >= len(candidates):
        return " ".join(candidates)
    scores = textrank([set(content_words(s)) for s in candidates])
    best = sorted(range(len(candidates)), key=lambda i: (-scores[i], i))[:count]
    return " ".join(candidates[i] for i in sorted(best))


def summary_length(sentence_count: int) -> int:
    """How many sentences a summary of a document this long takes."""
    wanted = min(MAX_SENTENCES, max(MIN_SENTENCES, round(sentence_count * SHARE)))
    return min(sentence_count, wanted)


def textrank(bags: list[set[str]]) -> list[float]:
    """PageRank over the weighted similarity graph; a sentence without edges keeps the floor."""
    if not bags:
        return []
    graph = similarity_graph(bags)
    strength = [sum(edges.values()) for edges in graph]
    scores = [1.0] * len(bags)
    for _ in range(ITERATIONS):
        updated = [
            (1 - DAMPING) + DAMPING * sum(w * scores[j] / strength[j] for j, w in edges.items())
            for edges in graph
        ]
        converged = max(abs(a - b) for a, b in zip(updated, scores, strict=True)) < TOLERANCE
        scores = updated
        if converged:
            break
    return scores


def similarity_graph(bags: list[set[str]]) -> Graph:
    """Edges between sentences that share words, weighted by overlap over log lengths.

    Pairs come from an inverted index, so sentences that share nothing cost nothing.
    Lengths are counted plus one, so two one-word sentences do not divide by log(1) = 0.
    """
    postings: defaultdict[str, list[int]] = defaultdict(list)
    for index, bag in enumerate(bags):
        for word in bag:
            postings[word].append(index)
    shared: Counter[tuple[int, int]] = Counter()
    for indexes in postings.values():
        shared.update(itertools.combinations(indexes, 2))
    graph: Graph = [{} for _ in bags]
    for (a, b), overlap in shared.items():
        weight = overlap / (math.log(len(bags[a]) + 1) + math.log(len(bags[b]) + 1))
        graph[a][b] = graph[b][a] = weight
    return graph
