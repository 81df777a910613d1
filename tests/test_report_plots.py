"""The plots of intrinsic_dim.report: plain ticks, legends off the data, runs above the grid and without a threshold,
unique labels, intervals that do not blend, gap plots of measured subspace runs only, and one committed plot rebuilt."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from intrinsic_dim.report import (curves_figure, d90_figure, gap_rows, knife_edge, plain_number, plot_d90_against,  # noqa: E402
                                  plot_gap_against_bound, run_label, unique_labels)
from intrinsic_dim.report.figure import plain_ticks  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def result(d90=300, interval=(250, 320), model="m", task="t", mean_at_d90=0.8, std=0.01, **extra):
    """A synthetic finished run: points at 100 (fails), 300 (d90) and 1,000, three seeds, threshold 0.72."""
    points = [{"d": d, "values": [m - 0.01, m, m + 0.01], "mean": m, "std": std, "n_ok": 3, "train_mean": None}
              for d, m in ((100, 0.6), (300, mean_at_d90), (1000, 0.85))]
    return {"model": model, "task": task, "metric": "accuracy", "fraction": 0.9, "baseline": 0.8, "threshold": 0.72,
            "baseline_values": [0.79, 0.8, 0.81], "chance": 0.4, "d90": d90, "interval": list(interval) if interval else None,
            "bracket": [100, 300], "crossing": 280, "status": "found", "points": points, "n_train": 1000,
            "baseline_source": "full fine-tuning", "seeds": 3, "budget": {}, "said": True, "method": "said"} | extra


def rows():
    """Summary rows of a trajectory: two checkpoints above the grid, one without a threshold, two measured, a knife edge."""
    base = {"method": "said", "task_short": "reuters", "size": "bert-tiny"}
    return [base | {"run": "r0", "step": 0, "status": "above_largest", "d90": None, "bracket": [15000, None]},
            base | {"run": "r100", "step": 100, "status": "no_baseline", "d90": None, "bracket": None},
            base | {"run": "r1200", "step": 1200, "status": "found", "d90": 66, "bracket": [57, 66], "interval": [50, 66]},
            base | {"run": "r2000", "step": 2000, "status": "found", "d90": 50, "bracket": [42, 50], "interval": [42, 50],
                    "knife_edge": True}]


def drawn(fig):
    """The figure drawn, so positions and tick labels are final."""
    fig.canvas.draw()
    return fig


def test_tick_labels_are_plain_numbers():
    assert [plain_number(v) for v in (300, 1000, 15000, 0.5, 2.5, 0)] == ["300", "1,000", "15,000", "0.5", "2.5", "0"]
    import matplotlib.pyplot as plt

    for lo, hi in ((150, 600), (40, 20000)):
        fig, ax = plt.subplots()
        ax.plot([lo, hi], [lo, hi])
        ax.set_xscale("log")
        ax.set_yscale("log")
        plain_ticks(ax)
        drawn(fig)
        labels = [t.get_text() for t in ax.get_yticklabels() + ax.get_yticklabels(minor=True) if t.get_text()]
        assert labels and not any("$" in t or "times" in t or "^" in t for t in labels), labels
        assert all(t.replace(",", "").replace(".", "").isdigit() for t in labels)
        plt.close(fig)


def test_a_run_above_the_grid_is_an_arrow_never_joined_to_the_measured_line():
    fig = drawn(d90_figure(rows(), {"x": "step", "series": "task_short", "logx": False}))
    ax = fig.axes[0]
    joined = [line for line in ax.lines if line.get_linestyle() not in ("None", "none", "") and len(line.get_xdata()) > 1]
    assert [list(line.get_xdata()) for line in joined] == [[1200, 2000]]
    assert all(15000 not in list(line.get_ydata()) for line in joined)
    arrows = [a for a in ax.texts if getattr(a, "arrow_patch", None) is not None]
    assert [(a.xy[0], a.xyann[1]) for a in arrows] == [(0, 15000)]  # from the largest d tried, upwards
    assert arrows[0].xy[1] > 15000


def test_a_run_without_a_threshold_is_listed_not_drawn_on_the_d90_axis():
    fig = drawn(d90_figure(rows(), {"x": "step", "series": "task_short", "logx": False}))
    ax = fig.axes[0]
    assert all(100 not in list(line.get_xdata()) for line in ax.lines)
    assert any("no threshold above chance: r100 (step 100)" in t.get_text() for t in fig.legends[0].get_texts())


def test_knife_edges_and_said_floors_are_marked():
    fig = drawn(d90_figure(rows(), {"x": "step", "series": "task_short", "logx": False, "floors": {"size": {"bert-tiny": 42}}}))
    ax = fig.axes[0]
    rings = [line for line in ax.lines if line.get_marker() == "o" and line.get_markerfacecolor() == "none"]
    assert [list(line.get_xdata()) for line in rings] == [[2000]]
    floors = [line for line in ax.lines if line.get_marker() == "_" and list(line.get_ydata()) == [42] * len(line.get_ydata())]
    assert floors and sorted(floors[0].get_xdata()) == [0, 100, 1200, 2000]
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("knife edge" in t for t in texts) and any("groups + 1" in t for t in texts)
    assert knife_edge(result(mean_at_d90=0.7201, std=0.02)) and not knife_edge(result(mean_at_d90=0.76, std=0.02))
    # a result that records the search's verdict (margin against its standard error, baseline seeds included) keeps it
    assert knife_edge(result(mean_at_d90=0.76, std=0.02, knife_edge=True))
    assert not knife_edge(result(mean_at_d90=0.7201, std=0.02, knife_edge=False))


def overlaps(a, b) -> bool:
    """Whether two display-space boxes overlap."""
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_legends_sit_outside_the_data():
    fig = drawn(d90_figure(rows(), {"x": "step", "series": "task_short", "logx": False, "y2": "step"}))
    renderer = fig.canvas.get_renderer()
    assert not overlaps(fig.legends[0].get_window_extent(renderer), fig.axes[0].get_window_extent(renderer))
    for n in (1, 2, 4):
        fig = drawn(curves_figure([result(model=f"m{k}") for k in range(n)]))
        legend = next(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)
        assert not overlaps(legend.get_window_extent(renderer), fig.axes[0].get_window_extent(fig.canvas.get_renderer()))


def test_a_legend_of_long_labels_stays_inside_the_figure():
    """Six labels as long as the MiniLM experiment's (run: model / task (method, projection, layout)) fit the saved image."""
    from intrinsic_dim.report.figure import legend_below, new_figure

    plt, fig, ax = new_figure()
    lines = [ax.plot([1, 2], [k, k])[0] for k in range(6)]
    legend_below(fig, lines, [f"tweets-said-pertensor-{k}: minilm-l6 / tweet-sentiment (SAID, fastfood, per_tensor/released)"
                              for k in range(6)])
    drawn(fig)
    box, frame = fig.legends[0].get_window_extent(fig.canvas.get_renderer()), fig.bbox
    plt.close(fig)
    assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0


def test_a_long_title_is_wrapped_inside_the_saved_figure(tmp_path):
    """A title that names the runs not run yet (curves_figure appends them) stays within the image's width."""
    from intrinsic_dim.report.figure import save_figure

    def figure():
        return curves_figure([result(model="m0")], title="SAID on tweet-sentiment: MPNet-base (109M) vs MiniLM-L6 (22.7M), same "
                             "budget", missing=["tweets-said-mpnet-base", "tweets-said-minilm-l6-and-a-longer-name"])

    fig = figure()
    save_figure(matplotlib.pyplot, fig, tmp_path / "long")
    assert "\n" in fig.axes[0].title.get_text()
    fig = figure()
    drawn(fig)
    box = fig.axes[0].title.get_window_extent(fig.canvas.get_renderer())
    assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 and box.y1 <= fig.bbox.y1  # and the layout made room for its lines


def test_the_budget_line_names_the_selection_subset_and_the_search_rules():
    from intrinsic_dim.report.labels import budget_text

    budget = {"select": "best", "n_val": 1000, "n_test": 1000, "steps_per_trial": 63, "batch_size": 32}
    new = budget_text(result(budget=budget | {"select_examples": 250}, seed_rule="sequential", placement="aim"))
    old = budget_text(result(budget=budget, seed_rule="all"))
    assert "checkpoint selected on validation (250 examples)" in new and new.endswith("sequential seed rule, aimed refinement")
    assert "examples)" not in old and "sequential" not in old and "aimed" not in old


def test_a_loss_plot_names_its_threshold_rule_and_no_chance_level():
    def texts(r):
        return [t.get_text() for ax in curves_figure([r]).axes if ax.get_legend() for t in ax.get_legend().get_texts()]

    loss = result() | {"lower_is_better": True, "chance": None}
    assert any("base - fraction" in t for t in texts(loss)) and not any("chance" in t for t in texts(loss))
    assert any("chance" in t for t in texts(result()))


def test_two_runs_that_would_share_a_label_get_their_names():
    a, b = result() | {"run_dir": "/x/run-a"}, result() | {"run_dir": "/x/run-b"}
    assert run_label(a) == run_label(b)
    labels = unique_labels([a, b, result(model="other")])
    assert labels[0].endswith("[run-a]") and labels[1].endswith("[run-b]") and "[" not in labels[2]
    texts = [t.get_text() for ax in curves_figure([a, b]).axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert len({t for t in texts if "d90 =" in t}) == 2


def test_titles_show_no_temporary_path(tmp_path):
    model = tmp_path / "checkpoint-2000"
    title = curves_figure([result(model=str(model))]).axes[0].get_title()
    assert "checkpoint-2000" in title and tmp_path.name not in title
    assert "pretrain-bert-tiny/checkpoint-2000" in run_label(result(model="runs/pretrain-bert-tiny/checkpoint-2000"))


def test_intervals_do_not_shade_and_are_named_only_when_there_is_one():
    def legend_texts(fig):
        return [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]

    with_interval = curves_figure([result(), result(model="n")])
    assert len(with_interval.axes[0].patches) == 0  # no axvspan / axhspan: nothing to blend
    assert any("interval" in t for t in legend_texts(with_interval))
    assert not any("interval" in t for t in legend_texts(curves_figure([result(interval=None)])))


def test_the_gap_plot_shows_only_measured_subspace_runs(tmp_path):
    said = {"run": "s", "method": "said", "d90": 200, "gap_at_d90": 0.03, "bound_sqrt_d90_over_n": 0.3}
    lora = {"run": "l", "method": "lora", "d90": 4, "gap_at_d90": 0.05, "bound_sqrt_d90_over_n": 0.04}
    unmeasured = {"run": "u", "method": "did", "d90": 500, "gap_at_d90": None, "bound_sqrt_d90_over_n": 0.5}
    assert [r["run"] for r in gap_rows([said, lora, unmeasured])] == ["s"]
    path = tmp_path / "generalisation_vs_d90.png"
    assert [p.name for p in plot_gap_against_bound([said, lora], path)] == [path.name, "generalisation_vs_d90.pdf"]
    assert plot_gap_against_bound([lora, unmeasured], path) == [] and not path.exists()  # the stale plot is removed


def test_a_figure_drawn_again_from_the_same_rows_is_the_same_file(tmp_path):
    """No creation date in the PDF: regenerating an experiment's plots from unchanged summaries changes no file."""
    said = {"run": "s", "method": "said", "d90": 200, "gap_at_d90": 0.03, "bound_sqrt_d90_over_n": 0.3}
    first = [p.read_bytes() for p in plot_gap_against_bound([said], tmp_path / "a.png")]
    assert first == [p.read_bytes() for p in plot_gap_against_bound([said], tmp_path / "a.png")]


def test_a_d90_plot_waits_for_a_run_of_its_own(tmp_path):
    """An experiment run in parts: a plot whose rows have not run yet is not drawn (matplotlib refused a log axis
    with no data), and one with a finished row is."""
    plot = {"x": "n_train", "series": "net", "where": {"data": "fashion"}}
    mnist = {"run": "m", "status": "found", "d90": 300, "bracket": [200, 300], "n_train": 1000, "data": "mnist", "net": "FC"}
    waiting = {"run": "f", "status": "not run", "d90": None, "n_train": None, "data": "fashion", "net": "FC"}
    path = tmp_path / "fashion.png"
    assert plot_d90_against([mnist, waiting], plot, path) == [] and not path.exists()
    assert len(plot_d90_against([mnist | {"data": "fashion"}, waiting], plot, path)) == 2 and path.exists()
    fig = drawn(d90_figure([mnist, mnist | {"n_train": 4000, "d90": 200}], {"x": "n_train", "series": "net"}))
    ax = fig.axes[0]
    assert ax.get_xlim()[0] < 1000 and ax.get_xlim()[1] > 4000  # the bars' ends are in the data limits
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1,000", "4,000"]  # a labelled tick at every value


def test_the_committed_trajectory_plot_draws_its_summary_rows():
    """d90_vs_step_own rebuilt from the committed summary.json and the experiment file's plot: the measured points are the
    rows with a d90, every run above the grid is an arrow, every run without a threshold is listed."""
    from intrinsic_dim.experiment import load_experiment

    folder = ROOT / "experiments" / "results" / "pretraining_trajectory"
    if not (folder / "summary.json").is_file():
        pytest.skip("the committed results are not in this checkout")
    summary = json.loads((folder / "summary.json").read_text())
    plot = next(p for p in load_experiment(ROOT / "experiments" / "pretraining_trajectory.yaml").plots if p["name"] == "d90_vs_step_own")
    fig = drawn(d90_figure(summary, plot))
    ax = fig.axes[0]
    chosen = [r for r in summary if r.get("baseline_rule") == "own"]
    for key in ("reuters", "tweets"):
        series = [r for r in chosen if r.get("task_short") == key]
        measured = sorted((r["step"], r["d90"]) for r in series if r.get("d90"))
        line = next(c for c in ax.containers if c.get_label() == key).lines[0]
        assert sorted(zip(line.get_xdata(), line.get_ydata())) == measured
    arrows = sorted((a.xy[0], a.xyann[1]) for a in ax.texts if getattr(a, "arrow_patch", None) is not None)
    assert arrows == sorted((r["step"], r["bracket"][0]) for r in chosen if r["status"] == "above_largest")
    listed = " ".join(t.get_text() for t in fig.legends[0].get_texts())
    assert all(r["run"] in listed for r in chosen if r["status"] == "no_baseline")
    assert all(isinstance(h, Line2D) for h in ax.lines)


def test_series_are_dodged_sideways_and_symlog_ticks_name_every_step():
    """Two methods at the same steps (DID and SAID both above the grid at step 0) are drawn apart, their data exact;
    a symlog x axis keeps step 0 and has a tick labelled at every step."""
    two = rows() + [r | {"method": "did", "run": r["run"] + "-did"} for r in rows()]
    fig = drawn(d90_figure(two, {"x": "step", "series": "method", "logx": "symlog"}))
    ax = fig.axes[0]
    arrows = [a for a in ax.texts if getattr(a, "arrow_patch", None) is not None]
    assert [a.xy[0] for a in arrows] == [0, 0]  # both at step 0 in data
    starts = [a.arrow_patch.get_path().vertices[0][0] for a in arrows]
    assert abs(starts[0] - starts[1]) > 3  # but drawn apart on the page
    assert ax.get_xscale() == "symlog" and [t.get_text() for t in ax.get_xticklabels()] == ["0", "100", "1,200", "2,000"]


def test_a_series_with_only_arrows_has_a_legend_entry_and_a_long_list_of_runs_not_drawn_fits_the_figure():
    said = rows()
    did = [r | {"method": "did", "run": f"{r['run']}-did-a-long-run-name-that-fills-the-line", "status": "above_largest",
                "d90": None, "bracket": [15000, None]} if r["status"] != "no_baseline" else
           r | {"method": "did", "run": f"{r['run']}-did-a-long-run-name-that-fills-the-line"} for r in said]
    extra = [said[1] | {"run": f"no-threshold-{k}-with-a-long-name", "step": 100 + k} for k in range(6)]
    fig = drawn(d90_figure(said + did + extra, {"x": "step", "series": "method", "logx": False}))
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "did" in texts and "said" in texts
    renderer = fig.canvas.get_renderer()
    assert fig.legends[0].get_window_extent(renderer).width <= fig.bbox.width
