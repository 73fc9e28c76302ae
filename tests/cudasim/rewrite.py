"""Rewrites a CUDA source file into C++ that cudasim can compile with g++, keeping line numbers.

Only what C++ cannot parse, or what the simulator must see, is changed; every other character
of the kernel and its host code is compiled as written:

* ``kernel<<<grid, block, shm, stream>>>(args)`` becomes
  ``::cudasim::launch(kernel, ::cudasim::LaunchSite{__FILE__, __LINE__, "kernel"}, grid, block, shm, stream)(args)``;
* ``extern __shared__ T name[];`` becomes a pointer to the block's dynamic shared memory;
* a static ``__shared__ T name;`` in a kernel body becomes a function-local ``static`` (blocks
  run one after another) followed by a call that lets the simulator learn its address, size and
  alignment (to fill it with NaN bytes at every block start and to report the kernel's static
  shared memory as ptxas lays it out);
* each kernel body starts with an entry hook (its name, ``__launch_bounds__`` and whether the file
  declares dynamic shared memory) and, after its
  last ``__shared__`` declaration, returns early when the simulator runs it only to learn its
  shared memory. So static ``__shared__`` declarations must come first in a kernel body, before
  any statement that reads an argument (checked here).

The output starts with ``#line 1 "<label>"`` so that ``__FILE__``/``__LINE__`` (and compiler
errors) name the original file and line.
"""

from __future__ import annotations

import re
import sys

# What may precede the last __shared__ declaration of a kernel (it runs during discovery).
_DECLARATION_PREFIXES = ("__shared__", "extern __shared__", "using ", "typedef ", "static_assert", "constexpr ",
                         "static constexpr ")


class RewriteError(ValueError):
    """The source uses a construct the simulator cannot run; the message names the file and line."""


def _mask(text: str) -> str:
    """The text with comments, string and character literals blanked (newlines kept)."""
    out = list(text)
    i, n = 0, len(text)

    def blank(a: int, b: int) -> None:
        for j in range(a, b):
            if out[j] != "\n":
                out[j] = " "

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            blank(i, j)
            i = j
        elif c == 'R' and text.startswith('R"', i) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'R"([^(\s]*)\(', text[i:])
            if not m:
                i += 1
                continue
            end = text.find(")" + m.group(1) + '"', i)
            j = n if end < 0 else end + len(m.group(1)) + 2
            blank(i + 1, j)
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            blank(i + 1, j)
            i = j + 1
        else:
            i += 1
    return "".join(out)


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _match_forward(masked: str, pos: int, open_: str, close: str) -> int:
    """Index of the bracket closing the one at ``pos``."""
    depth = 0
    for j in range(pos, len(masked)):
        if masked[j] == open_:
            depth += 1
        elif masked[j] == close:
            depth -= 1
            if depth == 0:
                return j
    raise RewriteError(f"unbalanced {open_}{close}")


def _callee_start(masked: str, end: int) -> int:
    """Start of the postfix expression (``ns::kernel<A, B>``) that ends just before ``end``."""
    i = end
    while i > 0 and masked[i - 1].isspace():
        i -= 1
    while True:
        if i > 0 and masked[i - 1] == ">":  # template arguments, matched backwards
            depth = 0
            j = i - 1
            while j >= 0:
                if masked[j] == ">":
                    depth += 1
                elif masked[j] == "<":
                    depth -= 1
                    if depth == 0:
                        break
                j -= 1
            i = j
            while i > 0 and masked[i - 1].isspace():
                i -= 1
        j = i
        while j > 0 and (masked[j - 1].isalnum() or masked[j - 1] == "_"):
            j -= 1
        if j == i:
            raise RewriteError("cannot find the kernel before <<<")
        i = j
        k = i
        while k > 0 and masked[k - 1].isspace():
            k -= 1
        if k >= 2 and masked[k - 2:k] == "::":
            i = k - 2
            while i > 0 and masked[i - 1].isspace():
                i -= 1
            if i == 0 or not (masked[i - 1].isalnum() or masked[i - 1] in "_>"):
                return i  # a leading ::
            continue
        return i


def _statements(masked: str, start: int, end: int):
    """(start, end) of the top-level statements (``;``-terminated, braces skipped) in [start, end)."""
    depth = 0
    s = start
    for j in range(start, end):
        c = masked[j]
        if c in "{([":
            depth += 1
        elif c in "})]":
            depth -= 1
        elif c == ";" and depth == 0:
            yield s, j + 1
            s = j + 1


def rewrite(text: str, label: str) -> str:
    """The rewritten source of ``text`` (a .cu file) whose diagnostics will name ``label``."""
    masked = _mask(text)
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement), non-overlapping

    def fail(pos: int, why: str) -> None:
        raise RewriteError(f"{label}:{_line(text, pos)}: {why}")

    # --- kernels: entry hook, __shared__ declarations, discovery point -------------------------
    shared_positions: set[int] = set()
    # ptxas pads every kernel's static shared memory to 16 bytes in a module that declares
    # dynamic shared memory anywhere (the dynamic buffer starts after the static part, 16-aligned).
    module_dynamic = "true" if re.search(r"\bextern\s+__shared__\b", masked) else "false"
    for m in re.finditer(r"\b__global__\b", masked):
        # The signature runs to the body's '{' (or to ';' for a declaration).
        j = m.end()
        depth = 0
        while j < len(masked) and not (depth == 0 and masked[j] in "{;"):
            depth += masked[j] == "("
            depth -= masked[j] == ")"
            j += 1
        if j >= len(masked) or masked[j] == ";":
            continue
        signature = masked[m.end():j]
        name = _kernel_name(signature) or "?"
        bounds = "0"
        lb = re.search(r"__launch_bounds__\s*\(", signature)
        if lb:
            close = _match_forward(signature, lb.end() - 1, "(", ")")
            bounds = signature[lb.end():close].split(",")[0].strip() or "0"
        body_open = j
        body_close = _match_forward(masked, body_open, "{", "}")
        entry = f" ::cudasim::detail::KernelEntry({bounds}, __PRETTY_FUNCTION__, {module_dynamic});"
        discovery_after = body_open + 1  # where the early return goes (after the last __shared__)
        for stmt_start, stmt_end in _statements(masked, body_open + 1, body_close):
            stmt = masked[stmt_start:stmt_end].strip()
            if "__shared__" not in stmt:
                continue
            if not re.match(r"(extern\s+)?__shared__\b", stmt):
                fail(stmt_start, f"kernel {name}: __shared__ must start a declaration directly in the kernel body")
            lead = stmt_start + (len(masked[stmt_start:stmt_end]) - len(masked[stmt_start:stmt_end].lstrip()))
            shared_positions.add(lead)
            if stmt.startswith("extern"):
                d = re.fullmatch(r"extern\s+__shared__\s+(.*?)\s*\b(\w+)\s*\[\s*\]\s*;", stmt, re.S)
                if not d:
                    fail(lead, f"kernel {name}: expected `extern __shared__ T name[];`")
                type_ = re.sub(r"__align__\s*\(\s*\d+\s*\)|alignas\s*\(\s*\d+\s*\)", "", d.group(1)).strip()
                newlines = "\n" * text.count("\n", lead, stmt_end)
                pointer = f"::cudasim::detail::dynamic_shared<{type_}>(__FILE__, __LINE__);"
                edits.append((lead, stmt_end, f"{type_} *const {d.group(2)} = {pointer}{newlines}"))
            else:
                declarator = stmt[stmt.rfind("}") + 1:] if "}" in stmt else stmt[len("__shared__"):]
                declarator = re.sub(r"\[[^\]]*\]", "", declarator).rstrip(";").strip()
                if _has_top_level_comma(declarator):
                    fail(lead, f"kernel {name}: one variable per __shared__ declaration, please")
                v = re.search(r"(\w+)\s*$", declarator)
                if not v or "=" in declarator:
                    fail(lead, f"kernel {name}: cannot parse the __shared__ declaration (no initializers allowed)")
                var = v.group(1)
                edits.append((lead, lead + len("__shared__"), "static"))
                edits.append((stmt_end, stmt_end, f" ::cudasim::detail::static_shared(&{var}, sizeof({var}), "
                                                  f"alignof(decltype({var})), __FILE__, __LINE__);"))
            discovery_after = stmt_end
        # Everything before the discovery point runs during discovery: declarations only.
        for stmt_start, stmt_end in _statements(masked, body_open + 1, discovery_after):
            stmt = " ".join(masked[stmt_start:stmt_end].split())
            if not stmt.startswith(_DECLARATION_PREFIXES):
                fail(stmt_start + len(masked[stmt_start:stmt_end]) - len(masked[stmt_start:stmt_end].lstrip()),
                     f"kernel {name}: put the __shared__ declarations first in the body (cudasim runs the kernel "
                     f"up to its last __shared__ declaration to learn its shared memory, so nothing before it may "
                     f"read an argument): `{stmt[:60]}`")
        edits.append((body_open + 1, body_open + 1, entry + (" if (::cudasim::detail::discovery_return()) return;"
                                                             if discovery_after == body_open + 1 else "")))
        if discovery_after != body_open + 1:
            edits.append((discovery_after, discovery_after, " if (::cudasim::detail::discovery_return()) return;"))

    for m in re.finditer(r"\b__shared__\b", masked):
        if m.start() not in shared_positions and not masked[:m.start()].rstrip().endswith("extern"):
            fail(m.start(), "__shared__ outside a kernel body's leading declarations is not simulated")

    # --- launches -----------------------------------------------------------------------------------
    for m in re.finditer(r"<<<", masked):
        close = masked.find(">>>", m.end())
        if close < 0:
            fail(m.start(), "<<< without >>>")
        start = _callee_start(masked, m.start())
        callee = " ".join(text[start:m.start()].split())
        config = text[m.end():close]
        edits.append((start, close + 3, f"::cudasim::launch({text[start:m.start()].rstrip()}, "
                                        f"::cudasim::LaunchSite{{__FILE__, __LINE__, \"{callee}\"}}, {config})"))

    edits.sort()
    for (a0, a1, _), (b0, _, _) in zip(edits, edits[1:]):
        if b0 < a1:
            raise RewriteError(f"{label}: overlapping rewrites at line {_line(text, b0)}")
    out = []
    last = 0
    for a, b, replacement in edits:
        out.append(text[last:a])
        out.append(replacement)
        last = b
    out.append(text[last:])
    result = "".join(out)
    assert result.count("\n") == text.count("\n"), "the rewrite must keep line numbers"
    return f'#include <cudasim/core.h>\n#line 1 "{label}"\n' + result


def _kernel_name(signature: str) -> str | None:
    """The function name in a kernel signature (the identifier before its parameter list)."""
    # Drop __launch_bounds__(...) and find the last `name (` whose parenthesis closes at the end.
    sig = re.sub(r"__launch_bounds__\s*\([^()]*(\([^()]*\)[^()]*)*\)", " ", signature)
    m = re.search(r"(\w+)\s*\((?:[^()]|\([^()]*\))*\)\s*$", sig, re.S)
    return m.group(1) if m else None


def _has_top_level_comma(s: str) -> bool:
    depth = 0
    for c in s:
        if c in "<([{":
            depth += 1
        elif c in ">)]}":
            depth -= 1
        elif c == "," and depth == 0:
            return True
    return False


def main(argv: list[str]) -> int:
    """``rewrite.py SOURCE LABEL OUTPUT``: writes the rewritten SOURCE to OUTPUT."""
    source, label, output = argv
    with open(source, encoding="utf-8") as f:
        text = f.read()
    try:
        result = rewrite(text, label)
    except RewriteError as e:
        print(f"rewrite.py: {e}", file=sys.stderr)
        return 1
    with open(output, "w", encoding="utf-8") as f:
        f.write(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
