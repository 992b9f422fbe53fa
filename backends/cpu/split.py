"""Cut one generated LLVM module into several, so LLVM can optimize and emit them in parallel.

LLVM's optimizer and code generator are most of a cold compile and work one module at a time
on one core. The kernels of a plan are independent functions, so the module is cut along
them: each part gets whole kernels (a kernel's function, its stage functions and their OpenMP
wrappers stay together, so LLVM can still inline within a kernel), the parts are balanced by
instruction count, and every part that calls a function defined in another part declares it.
A function called across parts loses its ``internal`` linkage (the loader resolves the
symbol between the parts' object files, compiler.py); small helpers with internal linkage that
belong to no kernel (narrow-float encoders, their tables) and all declarations are copied
into every part. Metadata (loop hints) is copied whole: its node numbers stay valid.
"""
from __future__ import annotations

import collections
import heapq

from llvmlite import ir

MIN_PART_INSTRUCTIONS = 4000  # below this, a part is not worth a thread of its own


def instruction_count(fn: ir.Function) -> int:
    return sum(len(block.instructions) for block in fn.blocks)


def _weight(fn: ir.Function) -> int:
    """Instructions, as a guess at compile time: unoptimized ones (optnone) cost far less."""
    n = instruction_count(fn)
    return n // 10 if "optnone" in fn.attributes else n


def split_module(module: ir.Module, groups: list[list[ir.Function]], parts: int) -> list[str]:
    """The module's text as ``parts`` or fewer modules; ``groups`` lists the functions that
    must stay in one part (a kernel and its stages; onnxc_main and onnxc_team). Defined
    functions in no group must be internal helpers: each part gets a copy. With one part the
    result is ``[str(module)]``."""
    defined = [g for g in module.globals.values()
               if isinstance(g, ir.Function) and not g.is_declaration]
    grouped = {id(fn) for group in groups for fn in group}
    if any(id(fn) not in grouped and fn.linkage != "internal" for fn in defined):
        parts = 1  # a visible symbol in no group: copies would clash, keep one module
    all_groups = [g for g in groups if g]
    sizes = [sum(_weight(fn) for fn in g) for g in all_groups]
    parts = max(1, min(parts, len(all_groups), sum(sizes) // MIN_PART_INSTRUCTIONS))
    if parts == 1:
        return [str(module)]
    # Longest-processing-time first: each group, biggest first, to the lightest part.
    heap = [(0, k) for k in range(parts)]
    owner: dict[int, int] = {}
    for g in sorted(range(len(all_groups)), key=lambda g: -sizes[g]):
        load, k = heapq.heappop(heap)
        for fn in all_groups[g]:
            owner[id(fn)] = k
        heapq.heappush(heap, (load + sizes[g], k))
    by_name = {fn.name: fn for fn in defined if id(fn) in owner}
    uses = {id(fn): _called(fn, by_name) for fn in defined if id(fn) in owner}
    for fn in defined:
        if id(fn) in owner and fn.linkage == "internal" and any(
                owner[id(fn)] != owner[id(user)] and fn.name in uses[id(user)]
                for user in defined if id(user) in owner):
            fn.linkage = ""  # called from another part: the symbol must be visible
    texts = []
    for k in range(parts):
        part = ir.Module(name=f"{module.name}.{k}")
        part.triple, part.data_layout = module.triple, module.data_layout
        mine = [fn for fn in defined if owner.get(id(fn)) == k]
        needed = set().union(*(uses[id(fn)] for fn in mine))
        for g in module.globals.values():
            if id(g) in owner:
                if owner[id(g)] == k:
                    part.globals[g.name] = g
                elif g.name in needed:
                    ir.Function(part, g.ftype, g.name)  # a declaration
            else:  # declarations, internal helpers and constant tables: in every part
                part.globals[g.name] = g
        part.metadata = module.metadata
        part.namedmetadata = module.namedmetadata
        texts.append(str(part))
    return texts


def _called(fn: ir.Function, functions: dict[str, ir.Function]) -> set[str]:
    """Names of the grouped functions that ``fn`` calls or takes the address of."""
    names = set()
    for block in fn.blocks:
        for instr in block.instructions:
            for op in instr.operands:
                if isinstance(op, ir.Function) and op.name in functions:
                    names.add(op.name)
    return names


def kernel_groups(stage_table: dict, module: ir.Module) -> list[list[ir.Function]]:
    """Each kernel with its stage functions and their wrappers; then the entry points
    (onnxc_main, onnxc_team)."""
    groups = collections.OrderedDict()
    for symbol, stages in stage_table.items():
        group = [module.globals[symbol]]
        for body, _, _ in stages:
            group.append(body)
            for suffix in (".omp", ".whole"):  # its OpenMP and one-chunk team entries
                wrapper = module.globals.get(body.name + suffix)
                if wrapper is not None:
                    group.append(wrapper)
        groups[symbol] = group
    entry = [module.globals[name] for name in ("onnxc_main", "onnxc_team")
             if name in module.globals]
    return list(groups.values()) + [entry]
