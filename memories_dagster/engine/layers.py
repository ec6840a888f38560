"""How many SQL layers a chain of transformation rules needs, known from the spec alone.

A rule that reads (or rewrites) a column an earlier rule of the current layer writes starts the
next layer (engine/transform.py builds them); names match ignoring case, as DuckDB's do.
Counted when the spec is validated so that a chain too long to run is refused before any run.
"""

from __future__ import annotations

from collections.abc import Iterable

MAX_LAYERS = 250  # DuckDB parses each layer as one more nested subquery, to a depth of 1000


def rule_past_layer_limit(steps: Iterable[tuple[Iterable[str], str | None]]) -> int | None:
    """The position of the first rule that would start layer MAX_LAYERS + 1, or None; each step
    is a rule's (columns read, column written or None)."""
    written: set[str] = set()
    layers = 1
    for number, (reads, target) in enumerate(steps):
        touched = {name.lower() for name in reads} | ({target.lower()} if target else set())
        if written & touched:
            layers += 1
            if layers > MAX_LAYERS:
                return number
            written = set()
        if target:
            written.add(target.lower())
    return None
