"""What README.md, docs/ and configs/ tell a user stays what the code does: every shipped config loads,
the demo's config file is the demo's config, every option of README's command block exists, every
``--set`` override the docs show is a real config key, and ``--help`` shows its ``[default: ...]`` notes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from flows.cli import app
from flows.demo import demo_config
from stages.config import load_config

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
# docs whose `--set` examples are emoflow's own (results.md's are mostly benchmark script arguments)
SET_DOCS = ["README.md", *(f"docs/{n}.md" for n in (
    "alignment", "architecture", "datasets", "extraction", "operations", "performance", "reports", "store",
    "training"))]
runner = CliRunner()


def _help(*command: str) -> str:
    result = runner.invoke(app, [*command, "--help"], terminal_width=400, env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads_and_its_extractor_configs_validate(path: Path) -> None:
    from features.extractors.base import get_extractor_class

    cfg = load_config(path)
    for name, settings in cfg.extract.extractors.items():
        get_extractor_class(name).config_cls.model_validate(settings)


def test_configs_demo_yaml_is_what_emoflow_demo_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    from features.extractors.base import get_extractor_class

    monkeypatch.chdir(ROOT)  # both resolve work/demo against the working directory
    from_file, demo = load_config(ROOT / "configs" / "demo.yaml"), demo_config(Path("work/demo"))
    assert from_file.model_dump(exclude={"extract"}) == demo.model_dump(exclude={"extract"})
    assert from_file.extract.model_dump(exclude={"extractors"}) == demo.extract.model_dump(exclude={"extractors"})
    assert sorted(from_file.extract.extractors) == sorted(demo.extract.extractors)
    for name, settings in demo.extract.extractors.items():  # explicit defaults in the file are the same config
        validate = get_extractor_class(name).config_cls.model_validate
        assert validate(from_file.extract.extractors[name]) == validate(settings)


def _readme_commands() -> list[tuple[list[str], set[str]]]:
    """(command path, options) per line of README's "Command line" block; ``a|b`` subcommands expand."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("## Command line\n```\n", 1)[1].split("```", 1)[0]
    out: list[tuple[list[str], set[str]]] = []
    words: list[str] = []
    for line in block.splitlines():
        line = line.split("   #", 1)[0]
        if line.startswith("emoflow "):
            words = line.split()[1:3]
        options = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*|-e)\b", line))
        command = [words[0]] + ([words[1]] if words[0] in ("store", "export") else [])
        for sub in command[-1].split("|"):
            out.append((command[:-1] + [sub], options))
    return out


def test_every_option_in_the_readme_command_block_exists_in_that_commands_help() -> None:
    commands = _readme_commands()
    assert {c[0] for c, _ in commands} >= {"ingest", "extract", "align", "stats", "train", "evaluate", "predict",
                                           "pipeline", "demo", "store", "export"}
    for command, options in commands:
        shown = _help(*command)
        missing = sorted(o for o in options if not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", shown))
        assert not missing, f"README names {missing} for `emoflow {' '.join(command)}`, which has no such option"


def _set_examples() -> list[tuple[str, str]]:
    found = []
    for name in SET_DOCS:
        text = re.sub(r"```.*?```", "", (ROOT / name).read_text(encoding="utf-8"), flags=re.S)  # fenced blocks
        for span in re.findall(r"`([^`]+)`", text):
            if "benchmarks/" in span:  # a benchmark script's --set takes its own keys (TrainConfig's)
                continue
            for item in re.findall(r"--set\s+'?([A-Za-z_][^\s'`]*=[^\s'`]*)", span):
                if not item.startswith("key="):
                    found.append((name, item))
    return found


def test_every_set_override_the_docs_show_names_a_real_config_key() -> None:
    """A value may be refused on purpose (``train.weight_decay=inf`` is shown as a config error); a key never."""
    from features.extractors.base import create_extractor
    from store.errors import ConfigError

    examples = _set_examples()
    assert len(examples) >= 5  # the scan still finds them
    for name, item in examples:
        try:  # extractor settings are checked when an extractor is made from them, not by the config
            for extractor, settings in load_config(None, [item]).extract.extractors.items():
                create_extractor(extractor, settings)
        except ConfigError as exc:
            assert "Extra inputs are not permitted" not in str(exc), f"{name}: `--set {item}`: {exc}"


def test_help_shows_every_default_note_its_options_carry() -> None:
    """Rich markup eats an unescaped ``[default: x]``: the note must be escaped to reach the user."""
    group = typer.main.get_command(app)
    checked = 0
    for name, command in group.commands.items():  # type: ignore[attr-defined]  # a group (typer's vendored click)
        for param in command.params:
            help_text = getattr(param, "help", None) or ""
            for note in re.findall(r"\\?\[default: [^\]]*\]", help_text):
                assert note.startswith("\\"), f"{name} {param.name}: {note!r} is not escaped"
                assert note[1:] in " ".join(_help(name).split()), f"{name} --help does not show {note[1:]!r}"
                checked += 1
    assert checked >= 10
