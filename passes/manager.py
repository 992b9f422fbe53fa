"""Passes and the pass manager: named graph -> graph rewrites, chosen per -O level."""
from __future__ import annotations

import logging
import time
from typing import Callable

from onnxc.ir import Graph, Node
from onnxc.ir.verifier import verify

log = logging.getLogger("onnxc.passes")


class Pass:
    """A graph rewrite with a name and a one-line purpose; keeps no state between runs."""

    name: str = "pass"
    purpose: str = ""

    def run(self, graph: Graph) -> Graph:
        raise NotImplementedError


def rewrite_until_stable(graph: Graph, rule: Callable[[Graph, Node], bool]) -> Graph:
    """Apply ``rule(graph, node)`` to every live node, again and again until no rule fires.

    A rule returns True when it rewrote; it may remove nodes (the node itself or others), so
    nodes removed since the sweep began are skipped."""
    changed = True
    while changed:
        changed = False
        alive = {id(n) for n in graph.nodes}
        for node in list(graph.nodes):
            if id(node) in alive and rule(graph, node):
                changed = True
                alive = {id(n) for n in graph.nodes}
    return graph


class PassManager:
    """Runs passes in order; can skip some, print the IR after one, time them and verify."""

    def __init__(self, passes: list[Pass], *, disabled: set[str] | None = None,
                 print_after: set[str] | None = None, verify_each: bool = False,
                 printer: Callable[[str], None] = print):
        self.passes = passes
        self.disabled = set(disabled or ())
        self.print_after = set(print_after or ())
        self.verify_each = verify_each
        self.printer = printer
        self.timings: list[tuple[str, float]] = []

    def run(self, graph: Graph) -> Graph:
        for p in self.passes:
            if p.name in self.disabled:
                continue
            start = time.perf_counter()
            graph = p.run(graph)
            self.timings.append((p.name, time.perf_counter() - start))
            if self.verify_each:
                verify(graph)
            if p.name in self.print_after or "all" in self.print_after:
                self.printer(f"// IR after {p.name}\n{graph}")
        return graph
