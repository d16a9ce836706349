#!/usr/bin/env python3
"""Binding coverage: every function and status code of the C header in every binding.

Reads each `specdec_*` function and each `SPECDEC_STATUS_*` value from include/specdec.h and
looks for it in
  go      bindings/go/specdec/*.go (not _test.go): calls `C.specdec_x`; statuses as
          `C.SPECDEC_STATUS_X` or as a `Status = <value>` constant;
  csharp  bindings/csharp/*.cs: [DllImport]/[LibraryImport] entry points (EntryPoint = "..." or
          the method's name); statuses as members of `enum Status` (by value or by name);
  cpp     bindings/cpp/*.hpp: any use of `specdec_x` in code (calls, deleters); the wrapper uses
          the header's own `specdec_status` enum, so it has every status when it includes
          specdec.h and defines no status enum of its own (then that enum is checked);
  c tests tests/c/*.c: every status is named (the status-name test lists them all).
Comments are ignored everywhere. A binding that lacks something fails the check unless
bindings/coverage-allow.txt allows it: one `binding symbol  # reason` per line (binding: go,
csharp or cpp; symbol: a function or SPECDEC_STATUS_* name; the reason is required). An entry
that is not needed any more (the binding has the symbol, or the header does not) also fails the
check, so the list only shrinks.

Usage: scripts/check-bindings.py [--root DIR]   (Python 3 standard library only)
"""

import argparse
import os
import re
import sys

BINDINGS = ("go", "csharp", "cpp")
ALLOW = "bindings/coverage-allow.txt"


def strip_comments(text, lang):
    """`text` without // and /* */ comments (string and character literals are kept)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        two = text[i : i + 2]
        if two == "//":
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif two == "/*":
            j = text.find("*/", i + 2)
            # Keep the line count: Go's cgo preamble and C comments may span lines.
            body = text[i : n if j < 0 else j + 2]
            out.append("\n" * body.count("\n"))
            i = n if j < 0 else j + 2
        elif lang == "csharp" and two == '@"':
            j = i + 2
            while j < n:
                if text[j] == '"' and text[j + 1 : j + 2] == '"':
                    j += 2
                elif text[j] == '"':
                    break
                else:
                    j += 1
            out.append(text[i : j + 1])
            i = j + 1
        elif lang == "go" and c == "`":
            j = text.find("`", i + 1)
            j = n - 1 if j < 0 else j
            out.append(text[i : j + 1])
            i = j + 1
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def read(root, path):
    with open(os.path.join(root, path), encoding="utf-8") as f:
        return f.read()


def files(root, folder, suffix, exclude_suffix=None):
    d = os.path.join(root, folder)
    names = sorted(f for f in os.listdir(d) if f.endswith(suffix) and not (exclude_suffix and f.endswith(exclude_suffix)))
    return [os.path.join(folder, f) for f in names]


def header_symbols(root):
    text = strip_comments(read(root, "include/specdec.h"), "c")
    functions = sorted(set(re.findall(r"^(?!typedef\b)[A-Za-z_].*?\b(specdec_[a-z0-9_]+)\(", text, re.M)))
    statuses = {m.group(1): int(m.group(2)) for m in re.finditer(r"^\s*(SPECDEC_STATUS_[A-Z0-9_]+)\s*=\s*(\d+)\s*,?\s*$", text, re.M)}
    if not functions or not statuses:
        sys.exit("check-bindings: found no functions or no statuses in include/specdec.h")
    return functions, statuses


def screaming(camel):
    return "SPECDEC_STATUS_" + re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", camel).upper()


def status_names(found_names, found_values, statuses):
    """Header status names present by name or by value."""
    return {name for name, value in statuses.items() if name in found_names or value in found_values}


def go_symbols(root, statuses):
    code = "\n".join(strip_comments(read(root, p), "go") for p in files(root, "bindings/go/specdec", ".go", "_test.go"))
    fns = set(re.findall(r"\bC\.(specdec_[a-z0-9_]+)\b", code))
    names = set(re.findall(r"\bC\.(SPECDEC_STATUS_[A-Z0-9_]+)\b", code))
    values = {int(v) for v in re.findall(r"\bStatus\s*=\s*(?:Status\()?(\d+)\)?", code)}
    return fns, status_names(names, values, statuses), "Status constants"


def csharp_symbols(root, statuses):
    code = "\n".join(strip_comments(read(root, p), "csharp") for p in files(root, "bindings/csharp", ".cs"))
    fns = set()
    for m in re.finditer(r"\[\s*(?:DllImport|LibraryImport)\s*\(([^\]]*)\)\s*\]((?:\s*\[[^\]]*\])*)\s*([^;{}()\[\]]*?)\b(\w+)\s*\(", code):
        entry = re.search(r'EntryPoint\s*=\s*"(\w+)"', m.group(1))
        fns.add(entry.group(1) if entry else m.group(4))
    fns = {f for f in fns if f.startswith("specdec_")}
    enum = re.search(r"\benum\s+Status\b[^{]*\{([^}]*)\}", code)
    names, values = set(), set()
    if enum:
        for name, value in re.findall(r"\b([A-Z]\w*)\s*=\s*(\d+)", enum.group(1)):
            names.add(screaming(name))
            values.add(int(value))
    return fns, status_names(names, values, statuses), "enum Status"


def cpp_symbols(root, statuses):
    code = "\n".join(strip_comments(read(root, p), "cpp") for p in files(root, "bindings/cpp", ".hpp"))
    fns = set(re.findall(r"\b(specdec_[a-z0-9_]+)\b", code))
    own_enum = re.search(r"\benum\s+(?:class\s+)?(\w*[Ss]tatus\w*)\b[^{;]*\{([^}]*)\}", code)
    if own_enum:
        names = {screaming(n) for n in re.findall(r"\b([A-Z]\w*)\s*=", own_enum.group(2))}
        names |= set(re.findall(r"\b(SPECDEC_STATUS_[A-Z0-9_]+)\b", own_enum.group(2)))
        values = {int(v) for v in re.findall(r"=\s*(\d+)", own_enum.group(2))}
        return fns, status_names(names, values, statuses), "enum " + own_enum.group(1)
    if re.search(r'#\s*include\s*[<"]specdec\.h[>"]', code):
        return fns, set(statuses), "the C enum (specdec.h)"
    return fns, set(), "no status enum"


def read_allow(root, problems):
    allowed = {}
    path = os.path.join(root, ALLOW)
    if not os.path.exists(path):
        return allowed
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            entry, _, reason = line.partition("#")
            parts = entry.split()
            where = f"{ALLOW}:{lineno}"
            if len(parts) != 2 or not reason.strip():
                problems.append(f"{where}: expected `binding symbol  # reason`, got `{line}`")
                continue
            binding, symbol = parts
            if binding not in BINDINGS:
                problems.append(f"{where}: unknown binding `{binding}` (one of {', '.join(BINDINGS)})")
            elif (binding, symbol) in allowed:
                problems.append(f"{where}: `{binding} {symbol}` is listed twice")
            else:
                allowed[(binding, symbol)] = where
    return allowed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    root = ap.parse_args().root

    functions, statuses = header_symbols(root)
    problems = []
    allowed = read_allow(root, problems)
    found = {
        "go": go_symbols(root, statuses),
        "csharp": csharp_symbols(root, statuses),
        "cpp": cpp_symbols(root, statuses),
    }
    header = set(functions) | set(statuses)
    summary_fns, summary_sts = [], []
    for binding in BINDINGS:
        fns, sts, status_source = found[binding]
        missing = [f for f in functions if f not in fns] + [s for s in statuses if s not in sts]
        unallowed = [m for m in missing if (binding, m) not in allowed]
        if unallowed:
            problems.append(f"{binding} lacks {len(unallowed)}: " + ", ".join(unallowed))
        for (b, symbol), where in sorted(allowed.items()):
            if b != binding:
                continue
            if symbol not in header:
                problems.append(f"{where}: stale: `{symbol}` is not in include/specdec.h; remove the line")
            elif symbol not in missing:
                problems.append(f"{where}: stale: {binding} has `{symbol}` now; remove the line")
        summary_fns.append(f"{binding} {sum(f in fns for f in functions)}/{len(functions)}")
        summary_sts.append(f"{binding} {sum(s in sts for s in statuses)}/{len(statuses)} ({status_source})")

    # The C tests' status-name table (tests/c) must name every status too.
    ctests = "\n".join(strip_comments(read(root, p), "c") for p in files(root, "tests/c", ".c"))
    unnamed = [s for s in statuses if not re.search(r"\b" + s + r"\b", ctests)]
    if unnamed:
        problems.append("tests/c names no " + ", ".join(unnamed) + " (add it to the status-name test)")

    print(f"bindings: {', '.join(summary_fns)} functions; {len(allowed)} allowed gaps")
    print(f"statuses: {', '.join(summary_sts)}; c tests {len(statuses) - len(unnamed)}/{len(statuses)}")
    if problems:
        sys.stdout.flush()
        for p in problems:
            print("check-bindings: " + p, file=sys.stderr)
        print(f"check-bindings: FAILED ({len(problems)} problem(s)); a binding that cannot have a symbol yet "
              f"goes into {ALLOW} with its reason", file=sys.stderr)
        return 1
    print("check-bindings: every header function and status is bound or allowed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
