"""The commands in the README and docs/ run as written: every CLI call parses with the real parser, every
``make`` target exists, every ``python -m`` module can be found, and every relative link points at a file."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import re
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# Each console script and the function that builds its argparse parser (pyproject.toml's [project.scripts]).
PARSERS: dict[str, str] = {
    "ssdkd-distill": "distill.cli:build_parser",
    "ssdkd-export": "export.cli:get_args_parser",
    "ssdkd-bench": "benchmarks.cli:get_args_parser",
}
FENCE = re.compile(r"^```bash\n(.*?)^```", re.M | re.S)


def _commands(doc: Path) -> list[list[str]]:
    """Every command line of the doc's ```bash blocks: continuations joined, comments dropped, shell-split, and the
    ``$B/`` / ``.venv/bin/`` prefix removed from the program name."""
    out = []
    for block in FENCE.findall(doc.read_text()):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and "=" not in words[0]:
                words[0] = words[0].removeprefix("$B/").removeprefix(".venv/bin/")
                out.append(words)
    return out


def _build(spec: str) -> argparse.ArgumentParser:
    """The parser that ``module:function`` builds."""
    module, name = spec.split(":")
    build: Callable[[], argparse.ArgumentParser] = getattr(importlib.import_module(module), name)
    return build()


def _parser(script: str) -> argparse.ArgumentParser:
    return _build(PARSERS[script])


CLI_CALLS = [(doc.name, words) for doc in DOCS for words in _commands(doc) if words[0] in PARSERS]


def test_the_docs_show_every_cli() -> None:
    assert {words[0] for _, words in CLI_CALLS} == set(PARSERS)


@pytest.mark.parametrize(("doc", "words"), CLI_CALLS, ids=[f"{d}:{' '.join(w)[:60]}" for d, w in CLI_CALLS])
def test_cli_calls_in_the_docs_parse(doc: str, words: list[str]) -> None:
    parser = _parser(words[0])
    parser.exit_on_error = False
    try:
        parser.parse_args(words[1:])
    except (argparse.ArgumentError, SystemExit) as e:
        pytest.fail(f"{doc}: `{' '.join(words)}` does not parse: {e}")


def test_make_targets_and_python_modules_in_the_docs_exist() -> None:
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, re.M))
    for doc in DOCS:
        text = doc.read_text()
        for target in re.findall(r"`make ([\w-]+)", text):
            assert target in targets, f"{doc.name}: `make {target}` is not a Makefile target"
        for module in re.findall(r"python -m ([\w.]+)", text):
            assert importlib.util.find_spec(module) is not None, f"{doc.name}: no module {module}"


def test_relative_links_in_the_docs_point_at_files() -> None:
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" in target:
                continue
            assert (doc.parent / target).exists(), f"{doc.name}: broken link {target}"


# Flags the docs quote that belong to other tools (pip, torchrun, TF's benchmark_model); the python -m tools'
# flags come from their parsers.
OTHER_TOOLS_FLAGS = {"--no-deps", "--nproc_per_node", "--report_peak_memory_footprint", "--size", "--batch"}
TOOL_PARSERS = ("benchmarks.zoo_table:get_args_parser",)  # python -m tools whose flags the docs quote


def _options(parser: argparse.ArgumentParser) -> set[str]:
    found = set(parser._option_string_actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _options(sub)
    return found


def test_every_flag_the_docs_quote_exists() -> None:
    parsers = [*PARSERS.values(), *TOOL_PARSERS]
    known = set().union(*(_options(_build(spec)) for spec in parsers)) | OTHER_TOOLS_FLAGS
    for doc in DOCS:
        quoted = " ".join(re.findall(r"`[^`]+`", doc.read_text())) + " ".join(FENCE.findall(doc.read_text()))
        unknown = set(re.findall(r"(?<![\w-])--[a-z][\w-]*", quoted)) - known
        assert not unknown, f"{doc.name} quotes flags no CLI has: {sorted(unknown)}"
