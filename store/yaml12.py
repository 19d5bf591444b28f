"""YAML 1.2, the one reading of config files and ``--set`` values (the CLI's and the benchmarks')."""

from __future__ import annotations

from typing import Any

from ruamel.yaml import YAML, YAMLError
from ruamel.yaml.constructor import SafeConstructor


class _Yaml12Constructor(SafeConstructor):
    """YAML 1.2 core values, and a date is its text: OmegaConf holds no dates, and a view or run
    named ``2024-05-01`` is a name."""


_Yaml12Constructor.add_constructor("tag:yaml.org,2002:timestamp", SafeConstructor.construct_yaml_str)


def read_yaml(text: str) -> Any:
    """``text`` as YAML 1.2, the one reading of config files and ``--set`` values. PyYAML's YAML 1.1
    reads ``010`` as 8, ``1:30`` as 90 and ``on``/``no`` as booleans, and keeps the last of two
    equal keys silently; YAML 1.2 reads decimals as decimals, only ``true``/``false`` as booleans,
    and refuses a repeated key. Raises ``ruamel.yaml.YAMLError``."""
    loader = YAML(typ="safe", pure=True)
    loader.Constructor = _Yaml12Constructor
    return loader.load(text)


def yaml_problem(exc: YAMLError) -> str:
    """The YAML error on one line: the problem and where (``line 2, column 1``)."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{getattr(exc, 'problem', None) or ' '.join(str(exc).split())}{where}"
