#!/usr/bin/python3
"""The file-level call graph, and the loops in it.

Reads each object file's global symbols with nm(1): a file A has an arrow
to file B when A uses (undefined, `U`) a symbol that B defines. The
graph is built per program, as the linker sees it: steadyfs is fs/ and
lib/, steadyfs-probe is probe/ and lib/, steadyfs-recover is recover/ and
lib/. A loop is a strongly connected component of more than one file
(A -> B -> ... -> A, of any length, not only pairs); each is printed with
one cycle through all its arrows' files and the arrows that close it.

Rule (docs/architecture.md, "The call graph"): no program has a loop.
fs/ is layered, a lower part reaching up only through a hooks struct or
a function pointer it is given (issue 16), so any loop is a new upward
call: it fails, printed with the arrows that close it. The same holds one
level up: fs/'s folders (fs/transport, fs/vfs, ...), the files at fs/'s
top, and lib/ call each other one way only, so a loop between two
folders fails even when no loop of files is in it.

usage: test/callgraph.py OBJ_DIR [--print]
  --print  also print every arrow of every program (for reading).
Exit status 0 when the rules hold, 1 when not, 2 on a usage error.
"""

import argparse
import os
import subprocess
import sys

PROGRAMS = {
    "steadyfs": ["fs", "lib"],
    "steadyfs-probe": ["probe", "lib"],
    "steadyfs-recover": ["recover", "lib"],
}
DEFINED = set("ABCDGRSTVWi")   # nm -P types of a symbol the file defines


def read_symbols(obj_dir, folders):
    """{source path: (defined set, undefined set)} for the folders' objects."""
    files = {}
    for folder in folders:
        d = os.path.join(obj_dir, folder)
        # Subfolders too (a part of fs/ in its own folder).
        objs = sorted(os.path.relpath(os.path.join(top, n), d)
                      for top, _, names in os.walk(d) for n in names
                      if n.endswith(".o"))
        for name in objs:
            out = subprocess.run(["nm", "-P", "-g", os.path.join(d, name)],
                                 check=True, capture_output=True, text=True).stdout
            defined, undefined = set(), set()
            for line in out.splitlines():
                parts = line.split()
                if len(parts) < 2:
                    continue
                sym, kind = parts[0], parts[1]
                if kind == "U":
                    undefined.add(sym)
                elif kind in DEFINED:
                    defined.add(sym)
            files[f"{folder}/{name[:-2]}.c"] = (defined, undefined)
    return files


def build_graph(files):
    """{file: {file it calls: sorted symbols}}, arrows to itself left out."""
    owner = {}
    for f, (defined, _) in files.items():
        for sym in defined:
            owner.setdefault(sym, f)
    graph = {f: {} for f in files}
    for f, (_, undefined) in files.items():
        for sym in undefined:
            g = owner.get(sym)
            if g and g != f:
                graph[f].setdefault(g, []).append(sym)
    for f in graph:
        for g in graph[f]:
            graph[f][g].sort()
    return graph


def components(graph):
    """Strongly connected components of more than one file (Tarjan,
    iterative), each sorted, in a stable order."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = [0]

    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    advanced = True
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return sorted(out)


def one_cycle(graph, comp):
    """A shortest cycle through the component's first file, as a list."""
    members = set(comp)
    start = comp[0]
    prev = {start: None}
    queue = [start]
    while queue:
        nxt = []
        for v in queue:
            for w in sorted(graph[v]):
                if w not in members:
                    continue
                if w == start:
                    path = [v]
                    while prev[path[-1]] is not None:
                        path.append(prev[path[-1]])
                    return list(reversed(path)) + [start]
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        queue = nxt
    return [start]


def loop_arrows(graph, comp):
    """Every arrow between two files of the component: each lies on a loop."""
    members = set(comp)
    return [(a, b) for a in comp for b in sorted(graph[a]) if b in members]


def part_of(f):
    """The part a file belongs to: its folder under fs/ (fs/vfs, fs/keeper,
    ...), fs itself for the files at its top, else the top folder."""
    bits = f.split("/")
    if bits[0] == "fs" and len(bits) > 2:
        return "/".join(bits[:2])
    return bits[0]


def part_graph(graph):
    """{part: {part it calls: [file arrows]}}: the folders' own graph."""
    parts = {}
    for a in graph:
        pa = part_of(a)
        parts.setdefault(pa, {})
        for b in graph[a]:
            pb = part_of(b)
            parts.setdefault(pb, {})
            if pa != pb:
                parts[pa].setdefault(pb, []).append(f"{a} -> {b}")
    return parts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("obj_dir")
    ap.add_argument("--print", action="store_true", dest="print_all")
    args = ap.parse_args()
    if not os.path.isdir(args.obj_dir):
        print(f"callgraph: no object folder '{args.obj_dir}' (build first)", file=sys.stderr)
        return 2

    failures = []
    seen_files = set()
    for prog, folders in PROGRAMS.items():
        files = read_symbols(args.obj_dir, folders)
        seen_files.update(files)
        graph = build_graph(files)
        if args.print_all:
            for a in sorted(graph):
                for b in sorted(graph[a]):
                    print(f"{prog}: {a} -> {b}  ({', '.join(graph[a][b][:4])}"
                          f"{', ...' if len(graph[a][b]) > 4 else ''})")
        for comp in components(graph):
            cycle = one_cycle(graph, comp)
            print(f"callgraph: {prog}: loop of {len(comp)} files: "
                  f"{' -> '.join(cycle)}")
            for a, b in loop_arrows(graph, comp):
                syms = graph[a][b]
                print(f"    {a} -> {b}  ({', '.join(syms[:3])}"
                      f"{', ...' if len(syms) > 3 else ''})")
            failures.append(f"{prog}: a loop through {', '.join(comp)}")
        # The parts (fs/'s folders) call each other in one direction only:
        # a loop between two folders fails even when no file loop is in it.
        parts = part_graph(graph)
        for comp in components(parts):
            cycle = one_cycle(parts, comp)
            print(f"callgraph: {prog}: loop of folders: {' -> '.join(cycle)}")
            for a, b in loop_arrows(parts, comp):
                for arrow in parts[a][b][:3]:
                    print(f"    {arrow}")
            failures.append(f"{prog}: a loop between the folders {', '.join(comp)}")
    if failures:
        for f in failures:
            print(f"callgraph: FAIL: {f}", file=sys.stderr)
        return 1
    print(f"callgraph: {len(seen_files)} object files read; no program has a loop, "
          "and no loop between its folders")
    return 0


if __name__ == "__main__":
    sys.exit(main())
