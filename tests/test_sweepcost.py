"""The sweep-cost benchmark on a tiny reference: both settings run in one process, costs in today's full fine-tunings."""

from intrinsic_dim import machine, sweepcost


def test_both_settings_are_measured_side_by_side(tmp_path, monkeypatch, capsys):
    tiny = {"model": "fc-784-200-200-10", "task": "mnist-5k", "max_train": 200, "max_eval": 60, "max_steps": 20, "batch_size": 50,
            "seeds": 3, "precision": 0.3, "dims": [30, 300], "method": "did"}
    monkeypatch.setattr(sweepcost, "REFERENCES", {"tiny": tiny})
    out = tmp_path / "cost.json"
    assert sweepcost.main(["tiny", "--threads", "1", "--json", str(out)]) == 0
    import json

    records = json.loads(out.read_text())
    assert [r["setting"] for r in records] == ["today", "cheaper"]
    today, cheaper = records
    assert today["wall_ratio_to_today"] == 1.0 and today["cost_full_trials_today"] >= today["trials"] * 0.2
    assert cheaper["options"]["seed_rule"] == "sequential" and cheaper["trials"] <= today["trials"]
    assert today["machine"] == cheaper["machine"] == machine.describe()  # which hardware the wall times are of
    printed = capsys.readouterr().out
    assert "cheaper" in printed and f"machine: {machine.describe()}" in printed
