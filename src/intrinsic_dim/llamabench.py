"""Memory and time of one training step of a Llama-shaped model at 125M - 7B parameters (``bench --memory --shape``).

The model is built with its parameters on the meta device and read in the spec's dtype from random values made per
name (no float32 copy; for an int8 base, read tensor by tensor while wrapping), then wrapped (DID, SAID, their int8
bases, LoRA through PEFT, or nothing for full fine-tuning) and stepped once with AdamW on ``tokens`` tokens, in a fresh
child process (``python -m intrinsic_dim.llamabench SPEC``). Reported: peak resident (CPU) or allocated (CUDA) memory,
the extra over the weights in units of the largest tensor, and the step's time split into projection and the rest.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
import zlib
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import nn

from intrinsic_dim.lazyweights import read_into, unread
from intrinsic_dim.membench import DTYPES, MALLOC, status_kb


LLAMA_SHAPES = {
    "llama-125m": {"hidden": 768, "layers": 12, "intermediate": 3072, "heads": 12, "kv_heads": 12},
    "llama-1b": {"hidden": 2048, "layers": 22, "intermediate": 5632, "heads": 32, "kv_heads": 4},
    "llama-7b": {"hidden": 4096, "layers": 32, "intermediate": 11008, "heads": 32, "kv_heads": 32},
}
LLAMA_METHODS = ("did", "said", "did-int8", "said-int8", "lora", "full")
"""DID and SAID on the model's own weights or on int8 codes of them (``base_quant="int8"``), LoRA (PEFT) and full fine-tuning."""
FULL_ADAMW_BYTES = 8  # bf16 weight, gradient and AdamW's two states: what torch's AdamW keeps per parameter
MIXED_ADAMW_BYTES = 16  # the usual mixed-precision recipe: bf16 weight and gradient, float32 master and states
FILL_POOL = 1 << 22  # values of the random pool a Llama bench model is filled from


@dataclass(frozen=True)
class LlamaSpec:
    """One step of one method on a random Llama-shaped model (vocabulary untied)."""

    method: str
    hidden: int = 768
    layers: int = 12
    intermediate: int = 3072
    heads: int = 12
    kv_heads: int = 12
    vocab: int = 32_000
    tokens: int = 64
    d: int = 1000
    lora_r: int = 8
    dtype: str = "bfloat16"
    device: str = "cpu"
    seed: int = 0
    threads: int = 1


def llama_spec(method: str, shape: str | None = None, **overrides: int | str) -> LlamaSpec:
    """The spec of a named shape (``LLAMA_SHAPES``), with explicit fields overriding it."""
    fields = dict(LLAMA_SHAPES[shape]) if shape else {}
    fields.update({k: v for k, v in overrides.items() if v is not None})
    if "heads" not in fields and "hidden" in fields:  # explicit shapes: 64-wide heads
        fields["heads"] = fields["kv_heads"] = max(1, fields["hidden"] // 64)
    return LlamaSpec(method, **fields)


def llama_parameters(spec: LlamaSpec) -> tuple[int, int]:
    """(parameter count, largest tensor's numel) of the spec's model, without building it."""
    h, i, v = spec.hidden, spec.intermediate, spec.vocab
    kv = h * spec.kv_heads // spec.heads
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h
    return 2 * v * h + spec.layers * per_layer + h, max(v * h, h * i)


class RandomLlamaWeights(Mapping[str, torch.Tensor]):
    """N(0, 0.02) values for each parameter of a bench Llama, by name, made when asked: runs of a seeded pool at
    offsets seeded by the spec's seed and the name, so a tensor's values do not depend on the order tensors are read
    in (a benchmark needs realistic values, not independent ones, and copying is some 30 times faster than drawing
    7B normals); norms are 1."""

    def __init__(self, model: nn.Module, spec: LlamaSpec) -> None:
        self._shapes = {name: (p.shape, p.dtype) for name, p in model.named_parameters()}
        self._device, self._seed = spec.device, spec.seed
        g = torch.Generator().manual_seed(spec.seed)
        self._pool = torch.randn(2 * FILL_POOL, generator=g).mul_(0.02).to(device=spec.device, dtype=DTYPES[spec.dtype])

    def __getitem__(self, name: str) -> torch.Tensor:
        shape, dtype = self._shapes[name]
        if name.endswith("norm.weight"):
            return torch.ones(shape, dtype=dtype, device=self._device)
        out = torch.empty(shape, dtype=dtype, device=self._device)
        flat = out.view(-1)
        g = torch.Generator().manual_seed(self._seed * 1_000_003 + zlib.crc32(name.encode()))
        for s in range(0, flat.numel(), FILL_POOL):
            off = int(torch.randint(0, FILL_POOL, (), generator=g))
            flat[s : s + FILL_POOL].copy_(self._pool[off : off + min(FILL_POOL, flat.numel() - s)])
        return out

    def __iter__(self) -> Iterator[str]:
        return iter(self._shapes)

    def __len__(self) -> int:
        return len(self._shapes)


def empty_llama(spec: LlamaSpec) -> tuple[nn.Module, RandomLlamaWeights]:
    """A LlamaForCausalLM whose parameters are on the meta device in the spec's dtype (buffers real, on the spec's
    device), and the mapping its random values are read from: nothing of the weights' size is allocated yet."""
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    cfg = LlamaConfig(hidden_size=spec.hidden, intermediate_size=spec.intermediate, num_hidden_layers=spec.layers,
                      num_attention_heads=spec.heads, num_key_value_heads=spec.kv_heads, vocab_size=spec.vocab,
                      max_position_embeddings=2048, tie_word_embeddings=False)
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg).to(DTYPES[spec.dtype])
    for mod in model.modules():  # its only buffers, computed at construction: made again off the meta device
        if isinstance(mod, LlamaRotaryEmbedding):
            fresh = LlamaRotaryEmbedding(cfg)
            mod.inv_freq = fresh.inv_freq.to(spec.device)
            mod.original_inv_freq = fresh.original_inv_freq.to(spec.device)
    return model, RandomLlamaWeights(model, spec)


def build_llama(spec: LlamaSpec) -> nn.Module:
    """A random LlamaForCausalLM in the spec's dtype, never holding a float32 copy: :func:`empty_llama`, every
    parameter then read in its dtype."""
    model, weights = empty_llama(spec)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in unread(model):
            read_into(params[name], name, weights)
    return model


def _prepare_llama(spec: LlamaSpec) -> tuple[nn.Module, RandomLlamaWeights | None]:
    """The model before wrapping: built whole, or for an int8 base empty, with the mapping it is read from while
    wrapping (tensor by tensor, so that the process never holds the model whole in the spec's dtype)."""
    return empty_llama(spec) if spec.method.endswith("-int8") else (build_llama(spec), None)


def _wrap_llama(spec: LlamaSpec, model: nn.Module, weights: RandomLlamaWeights | None) -> tuple[nn.Module, list[nn.Parameter]]:
    """The model to step and the parameters AdamW trains, for the spec's method (``weights``: the mapping an empty
    model is read from while wrapping, from :func:`_prepare_llama`)."""
    if spec.method == "full":
        return model, list(model.parameters())
    if spec.method == "lora":
        from peft import LoraConfig, get_peft_model

        wrapped = get_peft_model(model, LoraConfig(r=spec.lora_r, lora_alpha=2 * spec.lora_r, task_type="CAUSAL_LM"))
        return wrapped, [p for p in wrapped.parameters() if p.requires_grad]
    from intrinsic_dim.subspace import SubspaceModel

    method, _, quant = spec.method.partition("-")
    sm = SubspaceModel(model, d=spec.d, said=method == "said", base_quant=quant or None, base_weights=weights)
    return sm, sm.trainable_parameters()


def stored_bytes(model: nn.Module) -> int:
    """Bytes of the model's parameters and buffers (each storage once): int8 codes count one byte a number."""
    seen: dict[int, int] = {}
    for t in [*model.parameters(), *model.buffers()]:
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(seen.values())


class _ProjectionTimer:
    """Wall time spent in a projection's per-tensor methods (instance attributes shadow them; a call
    made inside another is not counted twice), so that a step's time splits into projection and the rest."""

    NAMES = ("forward_part", "transpose_part", "forward_piece", "transpose_piece")

    def __init__(self, proj: Any) -> None:
        self.seconds, self._depth = 0.0, 0
        for name in self.NAMES:
            if hasattr(proj, name):
                setattr(proj, name, self._timed(getattr(proj, name)))

    def _timed(self, fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        def call(*args: Any) -> torch.Tensor:
            self._depth += 1
            t = time.perf_counter()
            try:
                return fn(*args)
            finally:
                self._depth -= 1
                if not self._depth:
                    self.seconds += time.perf_counter() - t

        return call


class _Peak:
    """Peak memory from a reset point: resident (VmHWM) on the CPU, allocated on CUDA."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")

    def now(self) -> int:
        if self.cuda:
            torch.cuda.synchronize()
            return torch.cuda.memory_allocated()
        return status_kb("VmRSS") * 1024

    def reset(self) -> int:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        else:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
                f.write("5")
        return self.now()

    def peak(self) -> int:
        if self.cuda:
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated()
        return status_kb("VmHWM") * 1024


def _llama_step(model: nn.Module, opt: torch.optim.Optimizer, ids: torch.Tensor) -> None:
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def measure_llama_here(spec: LlamaSpec) -> dict:
    """Build, wrap and step the spec's model in this process (a fresh child: see :func:`measure_llama`)."""
    torch.set_num_threads(spec.threads)
    tiny = dataclasses.replace(spec, hidden=64, layers=1, intermediate=128, heads=2, kv_heads=2, vocab=512, tokens=8)
    m, params = _wrap_llama(tiny, *_prepare_llama(tiny))  # load kernels, start autograd and the optimiser code
    _llama_step(m, torch.optim.AdamW(params, lr=1e-3), torch.randint(0, tiny.vocab, (1, tiny.tokens)))
    del m, params
    n, largest = llama_parameters(spec)
    elem = torch.tensor([], dtype=DTYPES[spec.dtype]).element_size()
    peak = _Peak(spec.device)
    start = peak.reset()
    t = time.perf_counter()
    model, weights = _prepare_llama(spec)
    build_s = time.perf_counter() - t
    assert sum(p.numel() for p in model.parameters()) == n
    build_peak = peak.peak()
    before_wrap = peak.reset()
    t = time.perf_counter()
    wrapped, params = _wrap_llama(spec, model, weights)
    wrap_s = time.perf_counter() - t
    wrap_peak = peak.peak()
    wrap_extra = wrap_peak - before_wrap
    timer = _ProjectionTimer(wrapped.projection) if spec.method not in ("lora", "full") else None
    opt = torch.optim.AdamW(params, lr=1e-3)
    ids = torch.randint(0, spec.vocab, (1, spec.tokens), generator=torch.Generator().manual_seed(spec.seed)).to(spec.device)
    before = peak.reset()
    t = time.perf_counter()
    _llama_step(wrapped, opt, ids)
    step_s = time.perf_counter() - t
    top = peak.peak()
    proj_s = timer.seconds if timer else 0.0
    return asdict(spec) | {
        "parameters": n, "largest": largest, "weights_bytes": stored_bytes(wrapped), "build_s": build_s, "wrap_s": wrap_s,
        "start_bytes": start, "build_peak_bytes": build_peak, "wrap_extra_bytes": wrap_extra,
        "load_peak_bytes": max(build_peak, wrap_peak), "before_step_bytes": before, "peak_bytes": top, "extra_bytes": top - before,
        "extra_per_largest": (top - before) / (largest * elem), "step_s": step_s, "projection_s": proj_s,
        "rest_s": step_s - proj_s,
    }


def available_bytes() -> int:
    """MemAvailable of this machine (Linux)."""
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/meminfo has no MemAvailable")


def full_finetune_need(spec: LlamaSpec) -> dict:
    """Memory full fine-tuning with AdamW needs for the spec, in bytes: torch's AdamW on the spec's
    dtype (weights, gradients, two states) and the mixed-precision recipe (>= 16 bytes a parameter)."""
    n, _ = llama_parameters(spec)
    return {"adamw_bytes": FULL_ADAMW_BYTES * n, "mixed_precision_bytes": MIXED_ADAMW_BYTES * n}


def measure_llama(spec: LlamaSpec, malloc: str = "mmap64k", margin: float = 0.85) -> dict:
    """Measure ``spec`` in a fresh child process (peak memory per method); a full fine-tuning spec
    that would not fit in ``margin`` of the available memory is not run, its needs are returned."""
    if spec.method == "full" and spec.device == "cpu":
        need = full_finetune_need(spec)
        if need["adamw_bytes"] > margin * available_bytes():
            return asdict(spec) | need | {"skipped": "does not fit", "parameters": llama_parameters(spec)[0]}
    out = subprocess.run(
        [sys.executable, "-m", "intrinsic_dim.llamabench", json.dumps(asdict(spec))],
        env=os.environ | MALLOC[malloc], capture_output=True, text=True,
    )
    if out.returncode != 0:
        return asdict(spec) | {"skipped": f"failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1]) | {"malloc": malloc}


def format_llama(records: list[dict]) -> str:
    """The Llama records as an aligned text table (GiB; extra in units of the largest tensor)."""
    gib = 2**30
    rows = [["method", "params", "weights GiB", "load peak GiB", "peak GiB", "extra GiB", "extra/largest", "wrap s", "step s",
             "projection s", "rest s"]]
    for r in records:
        if "skipped" in r:
            need = f"needs {r['adamw_bytes'] / gib:.1f} GiB (16 B/param: {r['mixed_precision_bytes'] / gib:.1f})" \
                if "adamw_bytes" in r else ""
            rows.append([r["method"], f"{r['parameters'] / 1e9:.2f}B" if "parameters" in r else "-", "-", "-", "-", "-", "-",
                         "-", "-", "-", f"{r['skipped']} {need}".strip()])
            continue
        rows.append([r["method"], f"{r['parameters'] / 1e9:.2f}B", f"{r['weights_bytes'] / gib:.2f}",
                     f"{r['load_peak_bytes'] / gib:.2f}" if "load_peak_bytes" in r else "-", f"{r['peak_bytes'] / gib:.2f}", f"{r['extra_bytes'] / gib:.2f}", f"{r['extra_per_largest']:.2f}",
                     f"{r['wrap_s']:.2f}", f"{r['step_s']:.2f}", f"{r['projection_s']:.2f}", f"{r['rest_s']:.2f}"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths)) + "  " + row[-1].rjust(6) for row in rows)


if __name__ == "__main__":
    print(json.dumps(measure_llama_here(LlamaSpec(**json.loads(sys.argv[1])))))
