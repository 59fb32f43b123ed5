"""A small mutation tester: mutate one module with ``ast``, run a chosen test subset per mutant.

Why not mutmut 3: it copies the tree into ``mutants/`` and swaps functions in
through trampolines inside the test process, which the CLI tests (they start
``python -m misp_ti`` subprocesses) never see, and it wants the whole suite.
Here each mutant is a whole mutated copy of the module in a private copy of
``src/``, put first on ``PYTHONPATH``, so subprocesses run the mutant too.

Mutations (one per mutant): comparison swaps (``==``/``!=``, ``<``/``<=`` ...,
``in``/``not in``, ``is``/``is not``), ``and``/``or``, arithmetic swaps,
removed ``not``, negated ``if``/``while``/ternary conditions, constants
(integers +1, ``True``/``False``, short strings changed), and deleted
statements (an expression statement or assignment becomes ``pass``, a
``return x`` becomes ``return None``). Docstrings, annotations, f-string
text and logging calls are left alone.

    python benchmarks/mutation/mutate.py src/misp_ti/sinks/elasticsearch/bulk.py \
        tests/sinks/elasticsearch/test_es_bulk.py --out /tmp/bulk.json

A mutant is *killed* when the tests fail (or time out), *survived* when they pass.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_COMPARE_SWAP = {
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
    ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
}
_BIN_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.FloorDiv, ast.FloorDiv: ast.Mult, ast.Div: ast.Mult, ast.Mod: ast.Mult}
_SKIPPED_FIELDS = {"annotation", "returns", "decorator_list"}


def _skipped(node: ast.AST) -> bool:
    """Logging calls: their text is not behaviour the tests should pin."""
    if isinstance(node, ast.Expr):
        node = node.value
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
        return node.func.value.id == "log"
    return False


def _walk(node: ast.AST, path: tuple) -> Iterator[tuple[tuple, ast.AST]]:
    """Every node worth mutating with its path (field names and indexes) from the module."""
    if _skipped(node) or isinstance(node, ast.JoinedStr):
        return
    yield path, node
    for field, value in ast.iter_fields(node):
        if field in _SKIPPED_FIELDS:
            continue
        if isinstance(value, list):
            for index, child in enumerate(value):
                if isinstance(child, ast.AST):
                    if index == 0 and field == "body" and _is_docstring(child):
                        continue
                    yield from _walk(child, (*path, field, index))
        elif isinstance(value, ast.AST):
            yield from _walk(value, (*path, field))


def _is_docstring(node: ast.AST) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _mutations(node: ast.AST) -> Iterator[tuple[str, ast.AST]]:
    """``(description, replacement node)`` for each mutation of ``node``."""
    if isinstance(node, ast.Compare):
        for index, op in enumerate(node.ops):
            if type(op) in _COMPARE_SWAP:
                new = copy.deepcopy(node)
                new.ops[index] = _COMPARE_SWAP[type(op)]()
                yield f"{type(op).__name__} -> {type(new.ops[index]).__name__}", new
    elif isinstance(node, ast.BoolOp):
        yield f"{type(node.op).__name__} -> other", ast.BoolOp(op=ast.Or() if isinstance(node.op, ast.And) else ast.And(), values=node.values)
    elif isinstance(node, ast.BinOp) and type(node.op) in _BIN_SWAP:
        yield f"{type(node.op).__name__} -> {_BIN_SWAP[type(node.op)].__name__}", ast.BinOp(node.left, _BIN_SWAP[type(node.op)](), node.right)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield "not removed", node.operand
    elif isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool):
            yield f"{value} -> {not value}", ast.Constant(not value)
        elif isinstance(value, int):
            yield f"{value} -> {value + 1}", ast.Constant(value + 1)
        elif isinstance(value, str) and len(value) <= 30:
            yield f"{value!r} -> {value + 'XX'!r}", ast.Constant(value + "XX")
    if isinstance(node, (ast.If, ast.While, ast.IfExp)):
        new = copy.deepcopy(node)
        new.test = ast.UnaryOp(ast.Not(), new.test)
        yield "condition negated", new
    if isinstance(node, (ast.Expr, ast.Assign, ast.AugAssign, ast.AnnAssign)) and not _is_docstring(node):
        yield "statement deleted", ast.Pass()
    elif isinstance(node, ast.Return) and node.value is not None and not (isinstance(node.value, ast.Constant) and node.value.value is None):
        yield "return None", ast.Return(ast.Constant(None))


def _replace(tree: ast.Module, path: tuple, new: ast.AST) -> ast.Module:
    tree = copy.deepcopy(tree)
    parent: object = tree
    for step in path[:-1]:
        parent = parent[step] if isinstance(step, int) else getattr(parent, step)  # type: ignore[index]
    last = path[-1]
    if isinstance(last, int):
        parent[last] = new  # type: ignore[index]
    else:
        setattr(parent, last, new)
    return ast.fix_missing_locations(tree)


def _function_of(tree: ast.Module, path: tuple) -> str:
    node: object = tree
    name = "<module>"
    for step in path:
        node = node[step] if isinstance(step, int) else getattr(node, step)  # type: ignore[index]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = node.name if name == "<module>" else f"{name}.{node.name}"
    return name


def mutants(source: str, functions: set[str] | None) -> Iterator[dict]:
    tree = ast.parse(source)
    number = 0
    for path, node in _walk(tree, ()):
        for description, new in _mutations(node):
            function = _function_of(tree, path)
            if functions and function.split(".")[-1] not in functions:
                continue
            number += 1
            yield {"id": number, "line": getattr(node, "lineno", 0), "function": function, "mutation": description,
                   "source": ast.unparse(_replace(tree, path, new))}


def run_forked(src_copy: Path, tests: list[str], timeout: float) -> tuple[str, float]:
    """The tests in a forked child of this process, which has imported pytest and the
    heavy dependencies once (never ``misp_ti``: the child imports the mutant)."""
    import pytest  # noqa: F401  (imported before the fork on purpose)

    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 3
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            os.chdir(ROOT)
            os.environ["PYTHONPATH"] = str(src_copy)  # subprocesses the tests start
            sys.path.insert(0, str(src_copy))
            code = int(pytest.main(["-x", "-q", "-p", "no:cacheprovider", *tests]))
        finally:
            os._exit(code)
    deadline = started + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            outcome = "survived" if os.waitstatus_to_exitcode(status) == 0 else "killed"
            return outcome, time.monotonic() - started
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return "timeout", time.monotonic() - started
        time.sleep(0.05)


def run_tests(src_copy: Path, tests: list[str], timeout: float) -> tuple[str, float]:
    env = {**os.environ, "PYTHONPATH": str(src_copy), "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.monotonic()
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", *tests]
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - started
    return ("survived" if done.returncode == 0 else "killed"), time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module", help="the module to mutate, e.g. src/misp_ti/sinks/sqlite.py")
    parser.add_argument("tests", nargs="+", help="the test files or node ids run against each mutant")
    parser.add_argument("--functions", help="comma-separated function names: mutate only these")
    parser.add_argument("--ids", help="comma-separated mutant ids: run only these (e.g. the survivors of a previous run)")
    parser.add_argument("--timeout", type=float, default=0, help="seconds per mutant (default: 4 x the clean run, at least 60)")
    parser.add_argument("--out", type=Path, help="write every result as JSON here")
    parser.add_argument("--subprocess", action="store_true", help="a fresh interpreter per mutant (default: a fork of this one)")
    parser.add_argument("--list", action="store_true", help="list the mutants without running them")
    args = parser.parse_args()
    module = (ROOT / args.module).resolve()
    relative = module.relative_to(ROOT / "src")
    found = list(mutants(module.read_text(encoding="utf-8"), set(args.functions.split(",")) if args.functions else None))
    if args.ids:
        wanted = {int(i) for i in args.ids.split(",")}
        found = [m for m in found if m["id"] in wanted]
    if args.list:
        for m in found:
            print(f"{m['id']:4} {relative}:{m['line']} {m['function']}: {m['mutation']}")
        return 0
    with tempfile.TemporaryDirectory(prefix="mutate-") as tmp:
        src_copy = Path(tmp) / "src"
        shutil.copytree(ROOT / "src", src_copy, ignore=shutil.ignore_patterns("__pycache__"))
        run = run_tests if args.subprocess else run_forked
        if not args.subprocess:
            for heavy in ("elasticsearch", "httpx", "orjson", "pydantic", "click", "rich", "hypothesis", "pluggy"):
                __import__(heavy)
        outcome, seconds = run(src_copy, args.tests, timeout=3600)
        if outcome != "survived":
            print(f"the tests do not pass on the unmutated code ({outcome}); nothing measured", file=sys.stderr)
            return 2
        timeout = args.timeout or max(60.0, 4 * seconds)
        print(f"clean run {seconds:.1f} s; {len(found)} mutants, {timeout:.0f} s each at most", flush=True)
        target = src_copy / relative
        results = []
        for m in found:
            target.write_text(m["source"], encoding="utf-8")
            outcome, seconds = run(src_copy, args.tests, timeout)
            results.append({k: v for k, v in m.items() if k != "source"} | {"outcome": outcome, "seconds": round(seconds, 1)})
            if outcome == "survived":
                print(f"SURVIVED {m['id']:4} {relative}:{m['line']} {m['function']}: {m['mutation']}", flush=True)
        killed = sum(r["outcome"] != "survived" for r in results)
        print(f"{relative}: {len(results)} mutants, {killed} killed, {len(results) - killed} survived"
              + (f", score {100 * killed / len(results):.1f}%" if results else ""))
        if args.out:
            args.out.write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
