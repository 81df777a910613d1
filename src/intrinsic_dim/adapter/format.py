"""Adapter files: ``adapter_config.json`` + ``adapter_model.safetensors`` (PEFT layout).

The weights file holds only the trained numbers (z, lambda, directly trained tensors); the config
says how to rebuild the projection and carries SHA-256 checksums of the frozen weights theta0, of
the weights file and of the config itself (``config_sha256``, over its canonical JSON), so a
different base model, a corrupt file or an edited config is refused. Before use, the config is
checked against a schema (types, ranges, choices, regular expressions, nesting depth) and the
tensors against it (names, floating dtypes, shapes, finite values). Every failure is an
:class:`AdapterError` naming the file and what to do. Nothing is unpickled. See docs/reliability.md.

Format 2 (this version) has ``config_sha256``; format 1 (intrinsic-dim 0.1.0 and the versions
before format 2) has not, and still loads, with a warning that its config is not protected.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file

from intrinsic_dim.config import FILE_KEYS, SubspaceConfig, _is_int
from intrinsic_dim.groups import assign_groups

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
FORMAT_VERSION = 2
UNPROTECTED_VERSION = 1  # written before the config had a checksum
MAX_CONFIG_BYTES = 16 << 20
MAX_DEPTH = 32
MAX_HEADER_BYTES = 16 << 20
"""The longest safetensors header read (an adapter's is a few hundred bytes)."""
SUBSPACE_DTYPES = (torch.float32, torch.float64)
"""The dtypes z and lambda may be stored in (SubspaceModel writes float32)."""
_FIX = "restore the original file, or save the adapter again with SubspaceModel.save_pretrained"
_SHA256 = re.compile(r"[0-9a-f]{64}")
SUBSPACE_FIELDS = frozenset(SubspaceConfig.__dataclass_fields__) - {"extra"}
WRITTEN_WHEN_SET = frozenset({"base_quant"})
"""Subspace fields an adapter holds only when they are not None (adapters of an unquantised base are as before)."""


class AdapterError(ValueError):
    """An adapter that cannot be used with this base model: missing, corrupt, edited or mismatched."""


def fingerprint(named: Iterable[tuple[str, torch.Tensor]]) -> str:
    """SHA-256 over the names, shapes, dtypes and exact bytes of the given tensors."""
    h = hashlib.sha256()
    for name, t in named:
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}\n".encode())
        flat = t.detach().to("cpu").contiguous().reshape(-1)
        h.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return h.hexdigest()


def config_checksum(config: dict[str, Any]) -> str:
    """SHA-256 of the config's canonical JSON (sorted keys, no spaces), ``config_sha256`` left out:
    reordering keys or changing white space keeps it, any change of a value does not."""
    body = {k: v for k, v in config.items() if k != "config_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()).hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_adapter(path: str | Path, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Path:
    """Write the two adapter files into directory ``path`` (created if needed)."""
    out = Path(path)
    full = {"format_version": FORMAT_VERSION, **config}
    try:
        _depth_ok(json.dumps(full, allow_nan=False))
    except (ValueError, RecursionError) as e:
        raise ValueError(f"cannot save an adapter whose config could not be read back: {e}") from None
    out.mkdir(parents=True, exist_ok=True)
    weights = out / WEIGHTS_NAME
    save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(weights))
    full["weights_sha256"] = _file_sha256(weights)
    full["config_sha256"] = config_checksum(full)
    (out / CONFIG_NAME).write_text(json.dumps(full, indent=2) + "\n")
    return out


# ---- reading the config -------------------------------------------------------------------
_ESCAPE, _STRING = re.compile(r"\\.", re.S), re.compile(r'"[^"]*"')


def _depth_ok(text: str) -> None:
    """Refuse JSON text nested deeper than MAX_DEPTH, before a recursive parser sees it (linear time)."""
    brackets = np.frombuffer(_STRING.sub("", _ESCAPE.sub("", text)).encode(), dtype=np.uint8)
    steps = np.isin(brackets, (ord("["), ord("{"))).astype(np.int64) - np.isin(brackets, (ord("]"), ord("}")))
    depth = int(np.cumsum(steps).max(initial=0))
    if depth > MAX_DEPTH:
        raise ValueError(f"it is nested {depth} levels deep, more than the {MAX_DEPTH} an adapter config may have")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _no_constant(text: str) -> None:
    raise ValueError(f"{text} is not a JSON number")


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError(f"a key appears twice in one object (keys {sorted(k for k, _ in pairs)[:10]})")
    return out


def _parse_json(data: bytes, where: Path) -> Any:
    """Strict JSON: UTF-8, depth at most MAX_DEPTH, finite numbers, no NaN/Infinity, no duplicate keys."""
    if len(data) > MAX_CONFIG_BYTES:
        raise AdapterError(f"{where} holds {len(data):,} bytes of JSON, more than the {MAX_CONFIG_BYTES:,} allowed; {_FIX}")
    try:
        text = data.decode("utf-8")
        _depth_ok(text)
        return json.loads(text, parse_float=_finite, parse_constant=_no_constant, object_pairs_hook=_unique)
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, int digit limits, the hooks above
        raise AdapterError(f"{where} is not valid JSON ({e}); the adapter is corrupt: {_FIX}") from None


def _check_checksum(config: dict[str, Any], where: Path) -> None:
    version = config.get("format_version")
    if not (_is_int(version) and version in (UNPROTECTED_VERSION, FORMAT_VERSION)):
        raise AdapterError(
            f"{where} is not an intrinsic-dim adapter config of format version {UNPROTECTED_VERSION} or {FORMAT_VERSION} "
            f"(format_version {version!r}); {_FIX}"
        )
    stored = config.get("config_sha256")
    if stored is None and version == UNPROTECTED_VERSION:
        warnings.warn(
            f"{where} is of format version 1 (written before configs had a checksum), so an edit of it "
            "cannot be detected; save the adapter again (SubspaceModel.from_pretrained then save_pretrained) to add one",
            UserWarning, stacklevel=3,
        )
    elif stored != config_checksum(config):
        what = "has no config_sha256 checksum" if stored is None else "does not match its config_sha256 checksum"
        raise AdapterError(f"{where} {what}: it was edited or is corrupt, and an edited adapter means other weights; {_FIX}")


def _check_file_keys(config: dict[str, Any]) -> list[tuple[str, list[int]]]:
    """The file's own keys checked; returns the projected tensors' (name, shape) list."""
    for key in ("weights_sha256", "base_fingerprint"):
        if not (isinstance(config.get(key), str) and _SHA256.fullmatch(config[key])):
            raise ValueError(f"{key} must be 64 lowercase hexadecimal digits (a SHA-256), got {config.get(key)!r}")
    quant = config.get("base_quant_fingerprint")
    if (quant is None) != (config.get("base_quant") is None) or not (quant is None or (isinstance(quant, str) and _SHA256.fullmatch(quant))):
        raise ValueError(f"base_quant_fingerprint must be a SHA-256 exactly when base_quant is set, got {quant!r}")
    if not isinstance(config.get("base_model_name"), str) or not isinstance(config.get("library_version", ""), str):
        raise ValueError(f"base_model_name and library_version must be text, got {config.get('base_model_name')!r}, "
                         f"{config.get('library_version')!r}")
    projected = config.get("projected")
    if not (isinstance(projected, list) and projected and all(
        isinstance(e, list) and len(e) == 2 and isinstance(e[0], str) and isinstance(e[1], list)
        and all(_is_int(s) and s >= 0 for s in e[1]) for e in projected
    )):
        raise ValueError("projected must be a non-empty list of [parameter name, shape] pairs")
    names = [e[0] for e in projected]
    if len(set(names)) != len(names):
        raise ValueError("projected names a parameter twice")
    D = sum(math.prod(e[1]) for e in projected)
    if "D" in config and not (_is_int(config["D"]) and config["D"] == D):
        raise ValueError(f"D must be the projected tensors' total size {D}, got {config['D']!r}")
    metadata = config.get("metadata", {})
    if not isinstance(metadata, dict):
        raise ValueError(f"metadata must be a mapping, got {metadata!r}")
    for key, ok, what in (("model", lambda v: isinstance(v, str), "text"), ("task", lambda v: isinstance(v, str), "text"),
                          ("seed", lambda v: _is_int(v) and 0 <= v < 2**63, "an integer from 0 to 2**63 - 1"),
                          ("max_length", lambda v: _is_int(v) and v >= 1, "a positive integer")):
        if key in metadata and not ok(metadata[key]):
            raise ValueError(f"metadata {key} must be {what}, got {metadata[key]!r}")
    return projected


def _validate(config: Any, where: Path) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    """The config checked against the schema, unknown keys dropped (with a warning), and the shapes
    of z and lambda it implies."""
    if not isinstance(config, dict):
        raise AdapterError(f"{where} must hold a JSON object, not {type(config).__name__}; {_FIX}")
    _check_checksum(config, where)
    try:
        projected = _check_file_keys(config)
        known = SUBSPACE_FIELDS | FILE_KEYS | {"method"}
        unknown = sorted(set(config) - known)
        if unknown:
            warnings.warn(f"{where}: ignoring keys this version does not know: {unknown}", UserWarning, stacklevel=3)
            config = {k: v for k, v in config.items() if k not in unknown}
        missing = sorted(SUBSPACE_FIELDS - WRITTEN_WHEN_SET - set(config)) if config["format_version"] == FORMAT_VERSION else []
        if missing:
            raise ValueError(f"it has no {missing} (format {FORMAT_VERSION} writes every field, so no default stands in)")
        sub = SubspaceConfig.from_dict(config)
        names = [n for n, _ in projected]
        if sub.said and isinstance(sub.groups, dict) and not set(names) <= set(sub.groups):
            raise ValueError(f"groups gives no group for {sorted(set(names) - set(sub.groups))[:5]}")
        m = len(assign_groups(names, sub.groups)[1]) if sub.said else 0
        D = sum(math.prod(s) for _, s in projected)
        if not m < sub.d <= D + m:
            raise ValueError(f"d = {sub.d} must exceed the {m} SAID groups and leave at most D = {D} numbers for z")
    except ValueError as e:
        raise AdapterError(f"{where} is not a valid adapter config: {e}; {_FIX}") from None
    return config, {"z": (sub.d - m,)} | ({"lambda": (m,)} if sub.said else {})


def read_config(path: str | Path) -> dict[str, Any]:
    """Read, verify and validate an ``adapter_config.json``; raises AdapterError saying what is wrong."""
    return _read_config(Path(path))[0]


def _read_config(where: Path) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    if not where.is_file():
        raise AdapterError(f"{where} is missing: an adapter directory holds {CONFIG_NAME} and {WEIGHTS_NAME}")
    return _validate(_parse_json(where.read_bytes(), where), where)


# ---- reading the weights ------------------------------------------------------------------
def _check_tensors(tensors: dict[str, torch.Tensor], shapes: dict[str, tuple[int, ...]], where: Path) -> None:
    """Names, dtypes, shapes and finiteness of the stored tensors against the config."""
    names = set(tensors) - {k for k in tensors if k.startswith("direct.")}
    if names != set(shapes):
        raise AdapterError(f"{where} holds tensors {sorted(names)} besides direct.*, expected {sorted(shapes)}; {_FIX}")
    for k, t in tensors.items():
        if k in shapes and t.dtype not in SUBSPACE_DTYPES:
            raise AdapterError(f"{where}: {k} is {t.dtype}, expected one of {SUBSPACE_DTYPES} (values are not cast); {_FIX}")
        if not t.is_floating_point():
            raise AdapterError(f"{where}: {k} is {t.dtype}, expected a floating-point tensor; {_FIX}")
        if k in shapes and tuple(t.shape) != shapes[k]:
            raise AdapterError(f"{where}: {k} has shape {tuple(t.shape)}, but the config's d and groups give {shapes[k]}; {_FIX}")
        if not bool(torch.isfinite(t).all()):
            raise AdapterError(f"{where}: {k} holds NaN or infinite values; {_FIX}")


def _header_entries(weights: Path, size: int) -> dict[str, int]:
    """The byte length of each tensor the safetensors header of ``weights`` declares, after checking that the
    header is bounded and that the file is exactly as long as the header says (reads only the header)."""
    with open(weights, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 2 <= n <= min(MAX_HEADER_BYTES, size - 8):
            raise AdapterError(f"{weights} cannot be read as safetensors (its header length {n:,} does not fit a "
                               f"{size:,}-byte file and the {MAX_HEADER_BYTES:,}-byte bound); {_FIX}")
        text = f.read(n)
    try:
        decoded = text.decode("utf-8")
        _depth_ok(decoded)
        header = json.loads(decoded)
        entries = {k: v["data_offsets"] for k, v in header.items() if k != "__metadata__"}
        if not all(isinstance(o, list) and len(o) == 2 and all(_is_int(b) and b >= 0 for b in o) and o[0] <= o[1]
                   for o in entries.values()):
            raise ValueError("a tensor's data_offsets are not two ascending byte offsets")
    except (ValueError, RecursionError, TypeError, KeyError, AttributeError) as e:
        raise AdapterError(f"{weights} cannot be read as safetensors (its header: {type(e).__name__} {e}); {_FIX}") from None
    end = max((o[1] for o in entries.values()), default=0)
    if 8 + n + end != size:
        raise AdapterError(f"{weights} is {size:,} bytes, but its header describes {8 + n + end:,}: the file is corrupt or truncated, or "
                           f"has bytes appended; {_FIX}")
    return {k: o[1] - o[0] for k, o in entries.items()}


def _check_sizes(lengths: dict[str, int], shapes: dict[str, tuple[int, ...]], direct: dict[str, tuple[tuple[int, ...], torch.dtype]] | None,
                 where: Path) -> None:
    """Refuse a header whose z and lambda take more bytes than float64 values of the config's shapes, or whose direct
    tensors (when the model is known) are not exactly the model's: before the file's data is read."""
    for k, length in lengths.items():
        if k in shapes and length > 8 * math.prod(shapes[k]):
            raise AdapterError(f"{where}: {k} takes {length:,} bytes, more than {math.prod(shapes[k]):,} float64 values "
                               f"the config's d and groups give; {_FIX}")
    if direct is None:
        return
    stored = {k for k in lengths if k.startswith("direct.")}
    if stored != set(direct):
        raise AdapterError(f"{where} holds directly trained tensors {sorted(stored)}, but this model trains {sorted(direct)} "
                           f"directly; load it on the base model it was made for")
    for k, (shape, dtype) in direct.items():
        if lengths[k] != math.prod(shape) * dtype.itemsize:
            raise AdapterError(f"{where}: {k} takes {lengths[k]:,} bytes, but the model's {k[7:]} is {tuple(shape)} of {dtype} "
                               f"({math.prod(shape) * dtype.itemsize:,} bytes); load it on the base model it was made for")


def open_adapter(path: str | Path) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    """The verified config of the adapter folder ``path`` and the shapes of z and lambda it implies (weights not read)."""
    src = Path(path)
    for p in (src / CONFIG_NAME, src / WEIGHTS_NAME):
        if not p.is_file():
            raise AdapterError(f"{p} is missing: an adapter directory holds {CONFIG_NAME} and {WEIGHTS_NAME}")
    return _read_config(src / CONFIG_NAME)


def read_weights(path: str | Path, config: dict[str, Any], shapes: dict[str, tuple[int, ...]],
                 direct: dict[str, tuple[tuple[int, ...], torch.dtype]] | None = None) -> dict[str, torch.Tensor]:
    """The verified tensors of the adapter folder ``path`` whose config :func:`open_adapter` gave: the file's size is
    checked against its header and the config (and ``direct``, the model's directly trained tensors' shapes and
    dtypes, when known), then its checksum in chunks, before the data is read into memory."""
    weights = Path(path) / WEIGHTS_NAME
    _check_sizes(_header_entries(weights, weights.stat().st_size), shapes, direct, weights)
    stale = (f"{weights} does not match the checksum in {CONFIG_NAME}: the file is corrupt or truncated, "
             "or was replaced; save the adapter again")
    if _file_sha256(weights) != config["weights_sha256"]:
        raise AdapterError(stale)
    data = weights.read_bytes()
    if hashlib.sha256(data).hexdigest() != config["weights_sha256"]:  # replaced between the two reads
        raise AdapterError(stale)
    try:
        tensors = load_safetensors(data)
    except (SafetensorError, ValueError, TypeError, RuntimeError) as e:
        raise AdapterError(f"{weights} cannot be read as safetensors ({e}); {_FIX}") from None
    _check_tensors(tensors, shapes, weights)
    return tensors


def read_adapter(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read and verify an adapter directory; raises AdapterError saying what is wrong."""
    config, shapes = open_adapter(path)
    return config, read_weights(path, config, shapes)
