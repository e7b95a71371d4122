"""The README cannot drift from the command lines: every flag of each console script's parser
appears in that command's section of the README, and each command's "Exit codes" paragraph
names exactly the codes the command has (runtime/errors.EXIT_CODES), which its --help prints.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from edge_classify.runtime.errors import EXIT_CODES, exit_codes_help

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
# command -> (module with build_parser, the README headings of its sections)
COMMANDS = {
    "export-model": ("edge_classify.export.cli", ["### export-model", "## Your own model"]),
    "edge-classify": ("edge_classify.runtime.apps.classify", ["### edge-classify"]),
    "edge-classify-bulk": ("edge_classify.runtime.apps.bulk", ["### Many machines: `edge-classify-bulk` on Ray Data"]),
    "edge-doctor": ("edge_classify.runtime.apps.doctor", ["## Is this device ready? `edge-doctor`"]),
    "edge-serve": ("edge_classify.runtime.apps.serve", ["### A service: `edge-serve`"]),
    "edge-bench": ("edge_classify.benchmarks.run", ["## Performance"]),
}


def section(heading: str, text: str = README) -> str:
    """From ``heading`` to the next heading of the same or a higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = text.splitlines()
    start = lines.index(heading)
    end = next((i for i in range(start + 1, len(lines))
                if re.match(rf"#{{1,{level}}} ", lines[i])), len(lines))
    return "\n".join(lines[start:end])


def sections(command: str) -> str:
    return "\n".join(section(h) for h in COMMANDS[command][1])


def flags(command: str) -> list[str]:
    parser = importlib.import_module(COMMANDS[command][0]).build_parser()
    return sorted({o for a in parser._actions for o in a.option_strings if o.startswith("--") and o != "--help"})


def undocumented(names: list[str], text: str) -> list[str]:
    return [f for f in names if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", text)]


def exit_codes_documented(text: str) -> set[int]:
    """The codes named from each "Exit codes" to the end of its paragraph or list item."""
    spans = [re.split(r"\n\s*\n|\n\s*- ", text[m.start():], maxsplit=1)[0]
             for m in re.finditer(r"Exit codes", text, re.I)]
    assert spans, "no Exit codes paragraph"
    return {int(n) for p in spans for n in re.findall(r"(?<![\w.-])(\d{1,3})(?=\s[a-z(])", p)}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_flag_is_in_the_readme(command):
    assert undocumented(flags(command), sections(command)) == []


@pytest.mark.parametrize("command", sorted(EXIT_CODES))
def test_every_exit_code_is_in_the_readme_and_the_help(command):
    assert exit_codes_documented(sections(command)) == set(EXIT_CODES[command])
    epilog = importlib.import_module(COMMANDS[command][0]).build_parser().epilog
    assert " ".join(exit_codes_help(command).split()) in " ".join(epilog.split())


def test_the_checks_can_fail():
    text = ("### x\nOptions: `--top-k N`, `--json`.\n\nExit codes: 0 done, 2 usage, 70\ninternal error.\n\n"
            "- 3 items\n### y\n--gone")
    assert undocumented(["--top-k", "--json", "--gone", "--top"], section("### x", text)) == ["--gone", "--top"]
    assert exit_codes_documented(section("### x", text)) == {0, 2, 70}
