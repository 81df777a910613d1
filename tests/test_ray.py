"""--executor ray: trials as Ray tasks on a local Ray instance (loopback), the same answer as in-process, and resumes across executors."""

import json

import pytest
import torch

from intrinsic_dim.cli import main
from intrinsic_dim.executors import TrialResources
from test_cli import _common, data_dir  # noqa: F401 - the fixture is used by name

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'intrinsic-dim[ray]')")

BASE = ["--seeds", "2", "--dims", "100,1000", "--max-steps", "6", "--lr", "0.3", "--baseline", "0.9", "--threads", "1"]


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray of 2 CPUs and one logical GPU (a label the scheduler counts; no device is used)."""
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False, object_store_memory=80 * 2**20,
             _node_ip_address="127.0.0.1")
    yield ray
    ray.shutdown()


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_a_sweep_begun_in_process_resumes_on_ray_to_the_same_answer(local_ray, tmp_path, data_dir, threads, capsys):  # noqa: F811
    assert main(["measure", *_common(data_dir), *BASE, "--run-dir", str(tmp_path / "local")]) == 0
    part = ["measure", *_common(data_dir), *BASE[:2], "--dims", "100", *BASE[4:], "--curve", "--run-dir", str(tmp_path / "mixed")]
    assert main(part) == 0  # part of the sweep in this process: the d = 100 trials
    capsys.readouterr()
    assert main(["measure", *_common(data_dir), *BASE, "--run-dir", str(tmp_path / "mixed"), "--executor", "ray",
                 "--trial-gpus", "0.5"]) == 0
    assert capsys.readouterr().out.count("resumed") == 2
    local, mixed = (json.loads((tmp_path / d / "d90.json").read_text()) for d in ("local", "mixed"))
    assert mixed["points"] == local["points"] and mixed["d90"] == local["d90"]
    strip = [{k: v for k, v in t.items() if k != "wall_s"} for t in local["trials"]]
    assert [{k: v for k, v in t.items() if k != "wall_s"} for t in mixed["trials"]] == strip
    capsys.readouterr()
    assert main(["measure", *_common(data_dir), *BASE, "--run-dir", str(tmp_path / "mixed")]) == 0  # and back in-process
    assert capsys.readouterr().out.count("resumed") == len(mixed["trials"])


def test_trial_resources_beyond_the_cluster_are_refused(local_ray, tmp_path, data_dir, threads, capsys):  # noqa: F811
    run = tmp_path / "run"
    assert main(["measure", *_common(data_dir), *BASE, "--run-dir", str(run), "--executor", "ray", "--trial-gpus", "2"]) == 2
    assert "the Ray cluster has 2 CPUs and 1 GPUs" in capsys.readouterr().err
    assert not (run / "trials.sqlite").exists()


def test_bad_executor_options_are_refused_before_any_work(tmp_path, data_dir, capsys):  # noqa: F811
    run = tmp_path / "run"
    for extra, message in ((["--executor", "ray", "--workers", "2"], "workers is for executor local"),
                           (["--trial-gpus", "1"], "only apply to executor ray"),
                           (["--ray-address", "auto"], "only apply to executor ray")):
        assert main(["measure", *_common(data_dir), *BASE, "--run-dir", str(run), *extra]) == 2, extra
        assert message in capsys.readouterr().err
    assert main(["measure", *_common(data_dir), *BASE, "--run-dir", str(run), "--executor", "ray", "--trial-gpus", "-1"]) == 2
    assert "trial_gpus must be a number >= 0" in capsys.readouterr().err
    assert not run.exists()
    with pytest.raises(ValueError, match="whole number"):
        TrialResources(1, 1.5)
