#!/usr/bin/env python3
"""The layering check (ARCHITECTURE.md): layers point one way.

Reads every `crate::…` path in src/ (comments and inline test modules
left out; `tests.rs` files and files under a `tests/`
folder are tests, not layers) and fails when:
1. two top-level modules import each other, directly or round a loop;
2. a phase of src/check/ imports a phase that runs after it (the order is
   PHASES below) or the pipeline that drives it;
3. a module imports a layer it must never see (NEVER below): the leaf
   types, config, metrics, telemetry and the store never import the
   check, the servers or the operator tools, and so on;
4. a module breaks the one file convention: a module with submodules is a
   directory with a `mod.rs`, never a `name.rs` beside a `name/`.

usage: python3 tests/layers.py [SRC_DIR]   (prints the module graph; exit 1 on a violation)
"""
import os
import re
import sys

# The check's phases, in pipeline order: each may import only those before it.
PHASES = ["request", "policy", "authn", "authz", "upstream", "response", "pipeline"]

# Top-level module -> top-level modules it must never import.
ABOVE_CHECK = {"check", "serve", "ops", "app"}
# The bottom of the stack: these import only what is listed.
LEAVES = {"clock": set(), "proto": set(), "secret": set(), "outbound": set(),
          "config": {"clock", "secret"}}
NEVER = {
    "model": ABOVE_CHECK | {"metrics", "telemetry", "store", "issuer", "proto"},
    "metrics": ABOVE_CHECK | {"telemetry", "store", "issuer"},
    "telemetry": ABOVE_CHECK | {"metrics", "store", "issuer"},
    "store": ABOVE_CHECK | {"telemetry", "issuer"},
    "issuer": ABOVE_CHECK | {"metrics", "telemetry", "store"},
    "tokens": ABOVE_CHECK | {"metrics", "telemetry", "issuer"},
    "sessions": ABOVE_CHECK | {"metrics", "telemetry", "issuer", "tokens"},
    "login": ABOVE_CHECK | {"metrics", "telemetry", "issuer", "tokens", "backends"},
    "backends": ABOVE_CHECK | {"metrics", "telemetry", "issuer", "tokens", "sessions"},
    "check": {"serve", "ops", "app"},
    "app": {"serve", "ops"},
    "serve": {"ops"},
}


def module_path(src, path):
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return tuple(p for p in rel if p)


def imports(src):
    """(importing module path, imported crate path, file) for every reference."""
    out = []
    for folder, _, files in os.walk(src):
        for name in files:
            in_tests = "tests" in os.path.relpath(folder, src).split(os.sep)
            if not name.endswith(".rs") or name == "tests.rs" or in_tests:
                continue
            path = os.path.join(folder, name)
            me = module_path(src, path)
            if not me or me[0] == "bin":
                continue
            text = open(path, encoding="utf-8", errors="replace").read()
            text = re.sub(r"//[^\n]*", "", text)
            text = re.sub(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{.*", "", text, flags=re.S)
            for m in re.finditer(r"crate::((?:\w+::)*\w+)", text):
                out.append((me, tuple(m.group(1).split("::")), path))
            for m in re.finditer(r"crate::\{([^}]*)\}", text):
                for part in m.group(1).split(","):
                    target = tuple(p for p in part.strip().split("::") if p)
                    if target:
                        out.append((me, target, path))
    return out


def sibling_style(src):
    """`name.rs` files that sit beside a `name/` directory."""
    found = []
    for folder, dirs, files in os.walk(src):
        for name in files:
            if name.endswith(".rs") and name[:-3] in dirs and name != "main.rs":
                found.append(os.path.join(folder, name))
    return sorted(found)


def cycles(adjacency):
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(adjacency.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted(adjacency):
        if v not in index:
            visit(v)
    return found


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "src")
    refs = imports(src)
    modules = {me[0] for me, _, _ in refs}
    errors = []
    top = {}
    for me, target, path in refs:
        a, b = me[0], target[0]
        if a == b or b not in modules | set(NEVER) | set(LEAVES):
            continue
        top.setdefault(a, set()).add(b)
        if a in LEAVES and b not in LEAVES[a]:
            errors.append(f"{path}: {a} is at the bottom and must not import {b}")
        elif b in NEVER.get(a, set()):
            errors.append(f"{path}: {a} must not import {b}")
    for component in cycles(top):
        errors.append("import cycle between top-level modules: " + " -> ".join(component))
    for me, target, path in refs:
        if me[:1] != ("check",) or len(me) < 2 or target[:1] != ("check",) or len(target) < 2:
            continue
        a, b = me[1], target[1]
        if a == b or a not in PHASES or b not in PHASES:
            continue
        if PHASES.index(b) > PHASES.index(a):
            errors.append(f"{path}: check::{a} imports check::{b}, which runs after it")
    for path in sibling_style(src):
        errors.append(f"{path}: a module with submodules is a directory with a mod.rs")
    for a in sorted(top):
        print(f"{a} -> {' '.join(sorted(top[a]))}")
    for e in sorted(set(errors)):
        print("LAYER VIOLATION:", e)
    print(f"layers: {len(set(errors))} violation(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
