"""Reading a user's YAML or JSON options file with bounded cost: size, nesting and alias-expansion limits
are checked before any value is built, so a small hostile file (an alias bomb, 10^5 nested brackets, bytes
that are not UTF-8) is one clear error instead of gigabytes of memory or a traceback."""

from __future__ import annotations

import reprlib
import stat
from pathlib import Path
from typing import Any

MAX_BYTES = 1 << 20
MAX_NODES = 100_000
"""Nodes a file may describe once its aliases are expanded (a config of options has a few hundred)."""
MAX_DEPTH = 32

_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 2, 4, 4, 60, 60


class ConfigFileError(ValueError):
    """An options file that cannot be read; the message names the file and what to change."""


def show(value: Any) -> str:
    """A short repr for error messages: a file's value can be an arbitrarily large (aliased) structure."""
    return _SHORT.repr(value)


def _check_tree(node: Any, where: str) -> None:
    """Refuse a YAML node graph deeper than MAX_DEPTH or larger than MAX_NODES with aliases expanded (iterative)."""
    import yaml

    seen, stack = 0, [(node, 1)]
    while stack:
        n, depth = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            raise ConfigFileError(f"{where} expands to over {MAX_NODES:,} values (YAML aliases?): write the options out plainly")
        if depth > MAX_DEPTH:
            raise ConfigFileError(f"{where} is nested deeper than {MAX_DEPTH} levels: options files are flat mappings")
        if isinstance(n, yaml.SequenceNode):
            stack += [(c, depth + 1) for c in n.value]
        elif isinstance(n, yaml.MappingNode):
            stack += [(c, depth + 1) for kv in n.value for c in kv]


def load_mapping(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """The mapping a YAML (or JSON, a subset of YAML) file holds, read within the limits above."""
    import yaml

    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        raise ConfigFileError(f"{what} {p} not found") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigFileError(f"{what} {p} is not a regular file")
    if st.st_size > MAX_BYTES:
        raise ConfigFileError(f"{what} {p} is {st.st_size:,} bytes, over the {MAX_BYTES:,} an options file may have")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigFileError(f"{what} {p} is not UTF-8 text (byte {e.start}): save it as UTF-8") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is None:
            raise ConfigFileError(f"{what} {p} is empty: it must hold a mapping of option names to values")
        _check_tree(node, f"{what} {p}")
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigFileError(f"cannot parse {what} {p}{at}: {getattr(e, 'problem', None) or e}") from None
    except RecursionError:
        raise ConfigFileError(f"{what} {p} is nested too deeply: options files are flat mappings") from None
    if not isinstance(data, dict):
        raise ConfigFileError(f"{what} {p} must hold a mapping of option names to values, not {type(data).__name__}")
    return data
