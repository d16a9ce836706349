#!/usr/bin/env python3
"""Fail when modules of the library crate import each other in a cycle, or when a module outside
src/model/ and src/decoder.rs names an ONNX input or output.

Module graph: every file under src/ (except src/bin/) is a node named by its module path
(src/model/io.rs -> model::io, src/model/mod.rs -> model). An edge a -> b is a `crate::b...`
path in a (a `use` or an inline path), taken at the longest prefix that is a known module, and
also `super::x` paths resolved the same way. A module's parent and children are not edges (a
mod.rs re-exporting its children is not a dependency loop). Tests in `#[cfg(test)] mod tests`
blocks are ignored.
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
# Names an ONNX decoder graph gives its inputs and outputs: only the model layer may know them.
ONNX_NAMES = re.compile(r'"(input_ids|attention_mask|position_ids|past_key_values[^"]*|present[^"]*|logits|use_cache_branch)"')
ONNX_ALLOWED = ("model/", "decoder.rs")


def module_of(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return "::".join(parts) or "crate"


def strip_tests(text: str) -> str:
    m = re.search(r"#\[cfg\(test\)\]\s*mod tests", text)
    return text[: m.start()] if m else text


def main() -> int:
    files = [p for p in SRC.rglob("*.rs") if "bin" not in p.relative_to(SRC).parts]
    modules = {module_of(p): p for p in files}
    edges = {m: set() for m in modules}
    onnx_leaks = []
    for mod, path in modules.items():
        text = strip_tests(path.read_text())
        text = re.sub(r"//[^\n]*", "", text)
        for raw in re.findall(r"\b((?:crate|super)(?:::\w+)+)", text):
            parts = raw.split("::")
            if parts[0] == "super":
                base = mod.split("::")
                if not path.name == "mod.rs":
                    base = base[:-1]
                while parts and parts[0] == "super":
                    parts = parts[1:]
                    if parts and parts[0] == "super":
                        base = base[:-1]
                parts = base + parts
            else:
                parts = parts[1:]
            target = None
            for n in range(len(parts), 0, -1):
                cand = "::".join(parts[:n])
                if cand in modules:
                    target = cand
                    break
            if target is None or target == mod:
                continue
            # Parent/child links (re-exports, a parent naming its child's items) are structure.
            if target.startswith(mod + "::") or mod.startswith(target + "::"):
                continue
            edges[mod].add(target)
        rel = str(path.relative_to(SRC))
        if not rel.startswith(ONNX_ALLOWED) and ONNX_NAMES.search(text):
            onnx_leaks.append(f"{rel}: {sorted(set(ONNX_NAMES.findall(text)))}")

    def cycles(graph):
        """Strongly connected components of more than one node (Tarjan)."""
        index, low, stack, on, found = {}, {}, [], set(), []

        def visit(v):
            index[v] = low[v] = len(index)
            stack.append(v)
            on.add(v)
            for w in graph[v]:
                if w not in index:
                    visit(w)
                    low[v] = min(low[v], low[w])
                elif w in on:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append((sorted(comp), graph))

        for v in sorted(graph):
            if v not in index:
                visit(v)
        return found

    sys.setrecursionlimit(10000)
    # File by file, then at the level of the crate's top modules (drafter::model -> generator and
    # generator -> drafter make a cycle between `drafter` and `generator`).
    top = lambda m: m.split("::")[0]
    tops = {top(m): set() for m in modules}
    for a, bs in edges.items():
        tops[top(a)].update(top(b) for b in bs if top(b) != top(a))
    sccs = cycles(edges) + [c for c in cycles(tops) if c[0] not in [x[0] for x in cycles(edges)]]
    ok = True
    for comp, graph in sccs:
        ok = False
        inner = [f"{a} -> {b}" for a in comp for b in sorted(graph[a]) if b in comp]
        print("import cycle among " + ", ".join(comp) + ": " + "; ".join(inner))
    for leak in onnx_leaks:
        ok = False
        print("ONNX input/output named outside src/model/ and src/decoder.rs: " + leak)
    print(f"imports: {len(modules)} modules, {sum(len(e) for e in edges.values())} edges, "
          f"{len(sccs)} cycles, {len(onnx_leaks)} files naming ONNX inputs/outputs outside the model layer")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
