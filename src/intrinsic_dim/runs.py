"""The application layer: what a command does, callable from Python. ``run_measure`` (a d90 into a run
directory, with its files and plots), ``run_train`` (one subspace fine-tune saved as an adapter),
``run_experiment`` (an experiment file's runs and summary) and ``run_pretrain``. The command line only
parses, calls these and prints; a library user calls them the same way."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from intrinsic_dim.kernels.toolchain import native_bf16
from intrinsic_dim.spec import MeasureSpec

Log = Callable[[str], None]


def _say(s: str) -> None:
    """A line of output that does not tear the progress bars (tqdm.write moves them below it)."""
    from tqdm.auto import tqdm

    tqdm.write(s)
    sys.stdout.flush()


def apply_threads(spec: MeasureSpec) -> MeasureSpec:
    """Set torch's thread count as the spec asks (``workers`` > 1 splits the cores when threads is not given),
    check Ray where it is the executor, and return the spec with the threads it runs at filled in."""
    r = spec.run
    if r.report_to != "none":
        from intrinsic_dim.tracking import check_available

        check_available(r.report_to)
    threads = r.threads
    if r.executor == "ray":
        from intrinsic_dim.executors import TrialResources, import_ray

        import_ray()
        threads = threads or max(1, int(r.trial_cpus or 1))
        TrialResources(r.trial_cpus or float(threads), r.trial_gpus)
    elif r.workers > 1 and not threads:
        threads = max(1, (os.cpu_count() or 1) // r.workers)
    if threads:
        torch.set_num_threads(threads)
    return spec.replace(threads=threads) if threads != r.threads else spec


def make_executor(spec: MeasureSpec):
    """The executor the spec's run part names: None (in this process), local worker processes, or Ray."""
    from intrinsic_dim.executors import LoadOptions, LocalWorkers, RayExecutor, TrialResources

    d, r = spec.data, spec.run
    load = LoadOptions(d.model, d.task, d.max_train, d.max_eval, d.max_length, torch.get_num_threads(), d.metric, d.text_columns,
                       d.label_column)
    if r.executor == "ray":
        return RayExecutor(load, TrialResources(r.trial_cpus or float(torch.get_num_threads()), r.trial_gpus), r.ray_address)
    return LocalWorkers(load, r.workers) if r.workers > 1 else None


@dataclass
class MeasureOutcome:
    """What ``run_measure`` produced: the result and the files it wrote."""

    result: Any
    run_dir: Path
    plots: list[Path]
    report: Path
    task_notes: list[str]


def run_measure(spec: MeasureSpec, run_dir: str | Path | None = None, *, progress: bool = True, log: Log = _say) -> MeasureOutcome:
    """Measure d90 as ``spec`` says into ``run_dir`` (default runs/<model>-<task>-<method>): the store (resumable),
    d90.json, trials.csv, curve.png/pdf and report.md. The task is loaded, and so refused, before the directory is made."""
    from intrinsic_dim.report import plot_curves, write_report
    from intrinsic_dim.report.figure import drop_figure
    from intrinsic_dim.search import BaselineError, measure_d90
    from intrinsic_dim.search.measure import spec_factory
    from intrinsic_dim.store import DB_NAME, Store, atomic_write_text, check_store, check_writable
    from intrinsic_dim.tracking import make_tracker

    spec = apply_threads(spec)
    run_dir = check_writable(run_dir or spec.default_run_dir(), create=False)
    check_store(run_dir)  # a store it cannot read is refused before the task and model load
    task, factory = spec_factory(spec)
    if spec.trial.method == "lora":
        from intrinsic_dim.train import check_lora_targets

        check_lora_targets(factory(0).model, spec.trial.lora_targets)
    made = _first_missing(run_dir)
    check_writable(run_dir)
    executor = make_executor(spec)
    method, d = spec.trial.method, spec.data
    what = ("the full fine-tuning baseline" if spec.search.baseline_only
            else f"{'r' if method == 'lora' else 'd'}{round(100 * spec.search.fraction)}")
    how = ("" if spec.search.baseline_only else
           f"{'LoRA (PEFT), searching the rank' if method == 'lora' else f'{method.upper()} with {spec.trial.projection}'}, "
           f"{'every --dims point' if spec.search.curve else 'search'}; ")
    log(f"{what} of {d.model} on {task.name} ({len(task.train):,} train / {len(task.eval):,} validation / "
        f"{len(task.report_split):,} test, metric {task.metric}), {how}results in {run_dir}/")
    for n in task.notes:
        log(f"note: {n}")
    if spec.trial.autocast == "bf16" and not native_bf16():
        log("note: this CPU has no native bfloat16 (AVX512-BF16 or AMX), so --autocast bf16 is emulated: a trial runs "
            "several times slower than in float32 (8x on a MiniLM SAID trial, benchmarks/RESULTS.md); leave it out here")
    siblings = [] if spec.run.private_baseline else sorted(p for p in run_dir.parent.iterdir()
                                                           if p != run_dir and p.is_dir() and (p / DB_NAME).is_file())
    try:
        result = measure_d90(spec, task, run_dir=run_dir, progress=progress, log=log, executor=executor,
                             tracker=make_tracker(spec.run.report_to, run_dir, task.metric), shared=siblings)
    except BaselineError as e:
        atomic_write_text(run_dir / "d90.json", json.dumps({"status": "no_baseline", "reason": str(e), "notes": task.notes}, indent=2) + "\n")
        raise
    except Exception:
        if made is not None:
            _drop_if_no_trials(run_dir, made)
        raise
    finally:
        if executor is not None:
            executor.close()
        if (run_dir / DB_NAME).is_file():
            store = Store(run_dir, read_only=True)
            store.export_csv(run_dir / "trials.csv")
            store.close()
    result.save(run_dir / "d90.json")
    res = result.to_dict()
    plots = plot_curves([res], run_dir / "curve.png") if res["points"] else drop_figure(run_dir / "curve.png")
    return MeasureOutcome(result, run_dir, plots, write_report([res], run_dir / "report.md"), list(task.notes))


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` (itself included) that does not exist yet: what making it would create."""
    missing = [p for p in (path, *path.absolute().parents) if not p.exists()]
    return missing[-1] if missing else None


def _drop_made(path: Path, top: Path) -> None:
    """Remove ``path`` and then its parents up to ``top`` (folders a failed command made) while they are empty."""
    shutil.rmtree(path, ignore_errors=True)
    for folder in (path.absolute(), *path.absolute().parents):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        if folder == top.absolute() or folder.exists():
            break


def _drop_if_no_trials(run_dir: Path, top: Path) -> None:
    """Remove a run directory this command made (with the parents it made, ``top`` the outermost) when it failed before
    storing any trial (a d above D, a model that does not load), so nothing of it stands in the corrected command's way."""
    from intrinsic_dim.store import DB_NAME, Store

    if (run_dir / DB_NAME).is_file():
        store = Store(run_dir, read_only=True)
        try:
            if store.rows():
                return
        finally:
            store.close()
    _drop_made(run_dir, top)


@dataclass
class TrainOutcome:
    """What ``run_train`` produced: the trial's result, where the adapter went, the metric's name and the process count."""

    result: Any
    out: Path
    metric: str
    processes: int
    rank: int


def run_train(spec: MeasureSpec, d: int, seed: int, out: str | Path, *, progress: bool = True) -> TrainOutcome:
    """One subspace (or LoRA) fine-tune at ``d`` and ``seed`` as ``spec``'s data and trial parts say, saved to ``out``
    (to a temporary folder, which is said, when ``out`` cannot be written). Data-parallel under torchrun."""
    from intrinsic_dim.distributed import init_from_env, leave, world
    from intrinsic_dim.search.measure import spec_factory, trial_templates
    from intrinsic_dim.tracking import make_tracker
    from intrinsic_dim.train import train_model

    spec = apply_threads(spec)
    task, factory = spec_factory(spec)
    cfg = replace(trial_templates(spec)[0], d=d, seed=seed)
    loaded = factory(seed)
    joined = init_from_env()  # under torchrun / accelerate launch: one trial, data-parallel over the processes
    rank, size = world()
    try:
        sm, result = train_model(loaded, task, cfg, progress=progress and rank == 0)
    finally:
        if joined:
            leave()
    out = Path(out)
    if rank > 0 or not result.ok:
        return TrainOutcome(result, out, task.metric, size, rank)
    tracker = make_tracker(spec.run.report_to, out, task.metric)
    if tracker is not None:
        tracker.log_trial("train", result)
    data = spec.data
    meta = {"model": data.model, "task": data.task, "seed": seed, "max_length": data.max_length,
            "metric": task.metric, "validation": result.val_metric, "test": result.metric}
    meta |= {k: v for k, v in (("text_columns", list(data.text_columns or ())), ("label_column", data.label_column)) if v}
    return TrainOutcome(result, save_adapter(sm, out, meta), task.metric, size, rank)


def save_adapter(sm: Any, out: Path, meta: dict[str, Any]) -> Path:
    """Save a trained adapter to ``out`` through a folder filled beside it and moved in file by file, so a full disk or
    an unwritable ``out`` leaves ``out`` as it was (no empty or half-written folder); the adapter then goes to a
    temporary folder, which is said, so the training is not lost. Returns where it went."""
    from safetensors import SafetensorError

    from intrinsic_dim.store import OutputError

    made = _first_missing(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{out.name}.", suffix=".tmp", dir=out) as tmp:
            sm.save_pretrained(tmp, metadata=meta)
            for f in sorted(Path(tmp).iterdir(), key=lambda f: f.name == "adapter_config.json"):  # the config, which vouches for the weights, last
                os.replace(f, out / f.name)
        return out
    except (OSError, SafetensorError) as e:
        if made is not None:
            _drop_made(out, made)
        first = f"could not write the adapter to {out} ({e})"
    rescue = None
    try:
        rescue = Path(tempfile.mkdtemp(prefix="intrinsic-dim-adapter-"))
        sm.save_pretrained(rescue, metadata=meta)
    except (OSError, SafetensorError) as e:
        if rescue is not None:
            shutil.rmtree(rescue, ignore_errors=True)
        raise OutputError(f"{first}, nor to a temporary folder ({e}): the trained adapter is lost; free disk space (or pass "
                          "another --out) and train again") from None
    print(f"{first}; the trained adapter was saved to {rescue}/ instead: move it where you want it", file=sys.stderr)
    return rescue


def run_evaluate(spec: MeasureSpec, adapter: str | Path | None = None, *, given: set[str] = frozenset(), seed: int | None = None,
                 batch_size: int = 128) -> dict[str, Any]:
    """The test-split metrics of the base model, or base model + ``adapter``; the adapter's model, task, seed and
    max_length stand in for the data fields not ``given`` explicitly."""
    from intrinsic_dim.adapter import open_adapter
    from intrinsic_dim.models import load_model
    from intrinsic_dim.subspace import SubspaceModel
    from intrinsic_dim.tasks import load_task
    from intrinsic_dim.train import evaluate

    spec = apply_threads(spec)
    meta = (open_adapter(adapter)[0].get("metadata") or {}) if adapter else {}
    d = spec.data

    def pick(name: str) -> Any:
        return getattr(d, name) if name in given or meta.get(name) is None else meta[name]

    seed = seed if seed is not None else meta.get("seed", 0)
    if "model" not in given:
        _check_adapter_model(adapter, pick("model"))
    task = load_task(pick("task"), seed=0, **(d.task_options() | _task_columns(meta, given)))
    loaded = load_model(pick("model"), task, seed=seed, max_length=pick("max_length"))
    model = SubspaceModel.from_pretrained(loaded.model, adapter) if adapter else loaded.model
    metrics = evaluate(model, loaded, task, task.report_split, batch_size=batch_size)
    return {"task": task.name, "model": pick("model"), "adapter": None if adapter is None else str(adapter), "split": "test",
            "examples": len(task.report_split), **metrics}


def run_merge(adapter: str | Path, out: str | Path, *, model: str | None = None, task: str | None = None, seed: int | None = None,
              max_length: int | None = None) -> Path:
    """Merge an adapter made by ``train`` into its base model (the adapter's model, task and seed unless given) and
    write a plain model folder (config, weights, tokenizer, card) to ``out``; refused before loading if ``out`` cannot take it."""
    from intrinsic_dim.adapter import open_adapter
    from intrinsic_dim.merge import check_out_dir, merge_adapter
    from intrinsic_dim.models import load_model
    from intrinsic_dim.tasks import load_task

    check_out_dir(out)
    meta = open_adapter(adapter)[0].get("metadata") or {}
    model_name, task_name = model or meta.get("model"), task or meta.get("task")
    seed = seed if seed is not None else meta.get("seed")
    if model_name is None or task_name is None or seed is None:
        raise ValueError(f"{adapter} does not say which model, task and seed it was trained with (made outside `intrinsic-dim "
                         "train`): pass --model, --task and --seed")
    if model is None:
        _check_adapter_model(adapter, model_name)
    columns = _task_columns(meta, {"task"} if task else set())
    loaded = load_model(model_name, load_task(task_name, max_train=1, max_eval=1, seed=0, **columns), seed=seed,
                        max_length=max_length or meta.get("max_length", 128))
    return merge_adapter(loaded.model, adapter, out, tokenizer=loaded.tokenizer)


def _task_columns(meta: dict[str, Any], given: set[str]) -> dict[str, Any]:
    """The dataset columns an adapter's metadata records, for the task it names (none where the task was ``given``)."""
    if "task" in given or "text_columns" in given or "label_column" in given:
        return {}
    columns = meta.get("text_columns")
    return {"text_columns": tuple(columns) if isinstance(columns, list) else columns, "label_column": meta.get("label_column")}


def _check_adapter_model(adapter: str | Path | None, name: str) -> None:
    """Refuse a base model named only by an adapter's metadata that is neither registered nor a folder here: the hub is
    asked for a model only when the user names it (--model), never on the strength of a file's contents."""
    from intrinsic_dim.models import ModelError
    from intrinsic_dim.models.registry import is_local

    if adapter is not None and not is_local(name):
        raise ModelError(f"{adapter} was trained on model {name!r}, which is neither a registered name nor a folder here: "
                         "pass --model (that model's folder, or its hub id to download it)")


def run_experiment(path: str | Path, *, out: str | Path | None = None, only: Sequence[str] | None = None, threads: int | None = None,
                   report_to: str | None = None, progress: bool = True, summary_only: bool = False, command: str = "",
                   log: Log = _say) -> Path:
    """Run an experiment file's runs (``only`` some: a part; each resumes), then write its summary and plots;
    ``threads`` and ``report_to`` override every run's own. Returns the summary's path."""
    from intrinsic_dim.experiment import RESULTS, ExperimentRun, load_experiment, run_runs, summarise

    exp = load_experiment(path)
    out = Path(out or Path(RESULTS) / exp.name)
    command = command or f"intrinsic-dim experiment {path}"
    if summary_only:
        return summarise(exp, out, command=command)
    forced = ({"threads": threads} if threads else {}) | ({"report_to": report_to} if report_to else {})

    def measure(run: ExperimentRun, spec: MeasureSpec, run_dir: Path) -> None:
        run_measure(spec.replace(**forced) if forced else spec, run_dir, progress=progress and not run.quiet, log=log)

    made = _first_missing(out)
    try:
        return run_runs(exp, measure, out, only=only, command=command, log=log)
    except Exception:
        if made is not None and not any(p.is_file() for p in made.rglob("*")):
            _drop_made(out, made)
        raise


def plan_experiment(path: str | Path) -> list[dict[str, Any]]:
    """An experiment file checked whole and costed without running anything (``experiment --dry-run``)."""
    from intrinsic_dim.experiment import load_experiment
    from intrinsic_dim.plan import plan

    return plan(load_experiment(path))


def run_pretrain(cfg: Any, *, progress: bool = True, log: Log = _say) -> dict[str, Any]:
    """MLM pre-training as the :class:`~intrinsic_dim.pretrain.PretrainConfig` ``cfg`` says (resumable); its summary."""
    from intrinsic_dim.pretrain import pretrain

    return pretrain(cfg, progress=progress, log=log)
