"""The layers of docs/architecture.md, read from the source with ``ast``: every import points down or sideways,
never up, and no two modules import each other, directly or round a circle."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "intrinsic_dim"

LAYERS = {
    "version": 0, "rng": 0, "kernels": 0, "interrupts": 0, "fingerprint": 0, "machine": 0,
    "projection": 1, "quant": 1, "effective": 1, "lazyweights": 1,
    "groups": 2, "config": 2, "configfile": 2, "spec": 2, "specialise": 2,
    "subspace": 3, "adapter": 3, "results": 3, "tasks": 3,
    "models": 4, "generative": 4, "distributed": 4, "hf": 4, "membench": 4, "llamabench": 4,
    "train": 5,
    "store": 6, "executors": 6, "tracking": 6,
    "search": 7,
    "report": 8, "experiment": 8, "pretrain": 8, "runs": 8, "merge": 8, "plan": 8,
    "cli": 9, "cliargs": 9, "bench": 9, "kernelbench": 9, "sweepcost": 9,
}
"""Module (or package) -> layer: a module imports only from its own layer or below."""


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports() -> dict[str, set[str]]:
    """Module -> the intrinsic_dim modules it imports anywhere in its body (function-level imports included)."""
    out: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        name = _module_name(path)
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("intrinsic_dim"):
                base = node.module.removeprefix("intrinsic_dim").lstrip(".")
                for alias in node.names:
                    target = f"{base}.{alias.name}" if base else alias.name
                    found.add(target if (SRC / Path(*target.split("."))).with_suffix(".py").exists()
                              or (SRC / Path(*target.split("."))).is_dir() else base)
            elif isinstance(node, ast.Import):
                found |= {a.name.removeprefix("intrinsic_dim").lstrip(".") for a in node.names if a.name.startswith("intrinsic_dim")}
        out[name] = {f for f in found if f and f != name}
    return out


def _layer(module: str) -> int:
    top = module.split(".")[0] if module else ""
    assert top in LAYERS, f"module {module!r} has no layer in LAYERS (docs/architecture.md): add it"
    return LAYERS[top]


def test_every_import_points_down_or_sideways():
    up = [(m, t) for m, targets in _imports().items() if m for t in targets if _layer(t) > _layer(m)]
    assert up == [], f"imports that climb a layer (importer, imported): {up}"


def test_no_import_circles():
    imports = _imports()
    graph = {m: {t for t in ts if t in imports} for m, ts in imports.items()}

    def cycle_from(start: str) -> list[str] | None:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    return path + [start]
                if nxt not in seen and not (start.startswith(nxt + ".") or nxt == start.split(".")[0]):
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
        return None

    circles = [c for m in graph if m and (c := cycle_from(m))]
    assert circles == [], f"import circles: {circles[:3]}"


def test_no_module_is_over_the_size_that_reads_as_one_thing():
    sizes = {p.relative_to(SRC).as_posix(): len(p.read_text().splitlines()) for p in SRC.rglob("*.py")}
    big = {k: v for k, v in sizes.items() if v > 480}
    assert big == {}, f"modules over 480 lines: split them by what they do: {big}"


def test_every_module_has_its_sentence_in_docs_architecture():
    doc = (SRC.parents[1] / "docs" / "architecture.md").read_text()
    tops = {p.stem if p.is_file() else p.name + "/" for p in SRC.iterdir()
            if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())}
    missing = sorted(t for t in tops if f"`{t}.py`" not in doc and not (t.endswith("/") and f"`{t}" in doc))
    assert missing == [], f"modules with no line in docs/architecture.md's table: {missing}"
