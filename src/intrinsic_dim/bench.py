"""The ``intrinsic-dim bench`` command: its options and what each mode prints and writes.

``python -m intrinsic_dim.bench [--quick] [--json FILE] [--threads N]`` runs the kernel benchmarks
(kernelbench.py); ``--memory`` the training-step memory benchmarks (membench.py), of a Llama-shaped model
with ``--shape`` or ``--hidden`` (llamabench.py); ``--sweep-cost`` the cost of whole d90 sweeps (sweepcost.py).
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from intrinsic_dim.kernelbench import bench_step_ratio, check_targets, format_projection_table, format_table, run_bench
from intrinsic_dim.kernels import native
from intrinsic_dim.llamabench import LLAMA_METHODS, LLAMA_SHAPES, format_llama, llama_spec, measure_llama
from intrinsic_dim.membench import MALLOC
from intrinsic_dim.store import output_file_problem


def main(argv: list[str] | None = None) -> int:
    """Command line: run the benchmarks, print the table, optionally write the JSON records."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--sweep-cost"]:  # its own options: reference names, --threads, --json
        from intrinsic_dim.sweepcost import main as sweep_cost

        return sweep_cost(argv[1:])
    ap = argparse.ArgumentParser(prog="intrinsic-dim bench", description="Benchmarks of the kernels, of a training step's memory and of whole d90 sweeps.")
    ap.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats (under a minute)")
    ap.add_argument("--sweep-cost", action="store_true", help="instead (first option): the cost of whole d90 sweeps, today's "
                    "settings against the cheaper ones; see `intrinsic-dim bench --sweep-cost --help`")
    ap.add_argument("--json", metavar="FILE", help="write the records to FILE as JSON")
    ap.add_argument("--threads", type=int, help="torch (and kernel) threads (default: torch's)")
    ap.add_argument("--memory", action="store_true",
                    help="instead: peak extra memory of a training step (full, DID, SAID at growing D) and the "
                         "MiniLM-L6 subspace / full step-time ratio; with --shape or --hidden, of a Llama-shaped model")
    llama = ap.add_argument_group("Llama-shaped memory benchmark (with --memory)")
    llama.add_argument("--shape", choices=sorted(LLAMA_SHAPES), help="a named Llama shape (vocabulary 32000, untied)")
    for flag in ("hidden", "layers", "intermediate", "vocab", "heads", "kv-heads"):
        llama.add_argument(f"--{flag}", type=int, help=f"the model's {flag.replace('-', ' ')} (overrides --shape)")
    llama.add_argument("--tokens", type=int, default=64, help="tokens in the measured step (default 64)")
    llama.add_argument("--d", type=int, default=1000, help="subspace dimension of DID and SAID (default 1000)")
    llama.add_argument("--methods", default=",".join(LLAMA_METHODS), help=f"comma-separated, of {', '.join(LLAMA_METHODS)}")
    llama.add_argument("--device", default="cpu", help="cpu, or cuda (peak allocated memory instead of resident)")
    llama.add_argument("--malloc", choices=sorted(MALLOC), default="mmap64k",
                       help="glibc setting of the children (default mmap64k: freed large blocks return at once)")
    args = ap.parse_args(argv)
    if args.threads is not None and not 1 <= args.threads <= 1024:
        ap.error(f"--threads must be an integer from 1 to 1024, got {args.threads}")
    if args.json:
        problem = output_file_problem(args.json)
        if problem:
            ap.error(f"--json {args.json}: {problem}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory and (args.shape or args.hidden):
        return _llama_main(args)
    if args.memory:
        return _memory_main(args)
    records = run_bench(quick=args.quick)
    lib = native.load()
    print(f"native kernel: {lib.isa}; threads: {torch.get_num_threads()}; "
          f"copy bandwidth {records[0]['bandwidth_gbs']:.1f} GB/s; add rate {records[0]['add_rate_gadds']:.1f} G/s; "
          f"hash rate {records[0]['hash_rate_g']:.2f} G/s")
    print(format_table(records))
    print(format_projection_table(records))
    step = next((r for r in records if r["name"].startswith("train_step")), None)
    if step is not None:
        print(f"projection share of a subspace step: {step['projection_share']:.0%} native, "
              f"{step['projection_torch_share']:.0%} pure torch (full fine-tuning step {step['full_finetune_step_ms']:.0f} ms)")
    print("targets: " + "\n         ".join(check_targets(records)))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(records, f, indent=2)
    return 0


def _memory_main(args: argparse.Namespace) -> int:
    from intrinsic_dim.membench import format_memory, run_memory_bench

    records = run_memory_bench((4, 8) if args.quick else (4, 8, 16))
    print("peak extra memory of one forward + backward, d = 1000, layers x Linear(1024, 1024), 1 thread:")
    print(format_memory(records))
    ratio = bench_step_ratio(4, 64, 1000, 1) if args.quick else bench_step_ratio(16, 128, 1000, 3)
    for r in ratio or []:
        print(f"{r['name']}: {r['ours_ms']:.0f} ms, full fine-tuning {r['baseline_ms']:.0f} ms, ratio {r['step_over_full']:.2f} "
              f"(CPU time {r['cpu_ms']:.0f} / {r['full_cpu_ms']:.0f} ms, ratio {r['step_over_full_cpu']:.2f})")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"memory": records, "step_ratio": ratio}, f, indent=2)
    return 0


def _llama_main(args: argparse.Namespace) -> int:
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(LLAMA_METHODS))
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; choose from {LLAMA_METHODS}")
    records = []
    for method in methods:
        spec = llama_spec(method, args.shape, hidden=args.hidden, layers=args.layers, intermediate=args.intermediate,
                          vocab=args.vocab, heads=args.heads, kv_heads=args.kv_heads, tokens=args.tokens, d=args.d,
                          device=args.device, threads=torch.get_num_threads())
        records.append(measure_llama(spec, args.malloc))
        print(f"{method}: done", file=sys.stderr, flush=True)
    s = records[0]
    print(f"{args.shape or 'llama'} (hidden {s['hidden']}, {s['layers']} layers, intermediate {s['intermediate']}, "
          f"vocab {s['vocab']}), {s['dtype']} on {s['device']}, one step on {s['tokens']} tokens (forward, backward, "
          f"AdamW), d = {s['d']}, LoRA r = {s['lora_r']}, {s['threads']} thread(s), malloc {args.malloc}; "
          "peak = resident (CPU) or allocated (CUDA); extra = peak above the memory before the step")
    print(format_llama(records))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(records, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
