"""The benchmark's target check reads the records it writes."""

import pytest

from intrinsic_dim.kernelbench import check_targets


def _rec(name, ours, base, floor=None, **extra):
    return {"name": name, "ours_ms": ours, "baseline_ms": base, "floor_ms": floor, "speedup": base / ours,
            "ours_over_floor": ours / floor if floor else None, **extra}


def test_check_targets_reports_misses_with_their_size():
    records = [
        _rec("fwht_2^20", 1.0, 20.0, 0.25, peer_fht_cpu_ms=0.8),
        _rec("fwht_2^16", 0.02, 0.2, 0.01, peer_fht_cpu_ms=0.03),
        _rec("fastfood_fwd_bwd_D22.7M_d100", 80.0, 500.0),
        _rec("train_step_minilm_16x128", 1200.0, 1700.0, full_finetune_step_ms=700.0),
    ]
    lines = check_targets(records)
    assert any("fwht_2^20: 4.00x its floor" in line for line in lines)
    assert any("fht_cpu is 1.25x faster" in line for line in lines)
    assert any("6.2x the pure-torch path" in line and "short by 1.60x" in line for line in lines)
    assert any("11% of a MiniLM-L6 step" in line for line in lines)
    assert not any("fwht_2^16" in line for line in lines)
    assert check_targets([_rec("fwht_2^16", 0.02, 0.2, 0.01)]) == ["all targets met"]


@pytest.mark.parametrize("argv, message", [
    (["--json", "{tmp}"], "is a folder"),
    (["--json", "{tmp}/no/such/folder/out.json"], "does not exist"),
    (["--memory", "--json", "{tmp}"], "is a folder"),
    (["--threads", "0"], "--threads must be"),
    (["--sweep-cost", "--json", "{tmp}"], "is a folder"),
])
def test_bench_refuses_an_output_it_could_not_write_before_measuring(argv, message, tmp_path, capsys):
    from intrinsic_dim.bench import main

    with pytest.raises(SystemExit) as e:
        main([a.format(tmp=tmp_path) for a in argv])
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
