"""Adapters you can trust: a fuzz over adapter files (truncations, byte and header edits, dtype, shape
and value changes, edits of every config key) in which every case ends in an AdapterError naming the
file, or, for an edit that changes no value (key order, white space), loads identically. Config
edits are drawn by hypothesis with a fixed seed and a bounded number of examples. Each test prints
its counts (pytest -s); docs/reliability.md quotes them."""

import hashlib
import json
import warnings
from collections import Counter
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load, save
from torch import nn

import intrinsic_dim as idim
from intrinsic_dim.adapter import CONFIG_NAME, MAX_DEPTH, WEIGHTS_NAME, config_checksum, read_adapter, write_adapter

OLD = Path(__file__).parent / "data" / "adapter_v0_1_0"
X = torch.linspace(-1, 1, 12).reshape(2, 6)
OLD_KEYS = {("projection", "kind"): "projection", ("projection", "seed"): "seed", ("projection", "layout"): "layout",
            ("projection", "d"): None, ("projection", "D"): None, ("projection",): None, ("method",): None}
PATTERN_KEYS = ("include", "exclude", "train_directly")
SUBSPACE_KEYS = ("d", "projection", "layout", "normalisation", "said", "groups", "seed", *PATTERN_KEYS, "dense_max_elements")
BAD_REGEXES = ["(", "[a-", "a{99999999999}", "(?P<", "(" * 500 + ")" * 500, "(?<=a+)b", "x" * 2000]
NEEDS_THE_MODEL = {"direct as torch.float64", "direct as torch.float16", "direct 2-D", "no direct", "extra direct"}
SETTINGS = settings(max_examples=12, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([2**64, 2**64 - 1, 2**63, -1, 0, 1, 12, 10**30, 1e308, -0.0]), st.text(max_size=12),
    st.sampled_from(BAD_REGEXES + ["fastfood", "dense", "sparse", "per_tensor", "unit", "module", "block", "said", "did", "^0\\."]),
)
VALUES = st.recursive(SCALARS, lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.text(max_size=6), c, max_size=3)),
                      max_leaves=6)


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    """A trained SAID adapter with a directly trained tensor, its config, weights and outputs."""
    sm = idim.SubspaceModel(_mlp(), d=12, said=True, seed=4, train_directly=r"^2\.bias")
    with torch.no_grad():
        sm.z.normal_(generator=torch.Generator().manual_seed(1))
        sm.lam.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(2))
        sm.base[2].bias.add_(0.5)
    path = tmp_path_factory.mktemp("adapter")
    sm.save_pretrained(path, metadata={"model": "mlp", "task": "toy", "seed": 0, "max_length": 8})
    return json.loads((path / CONFIG_NAME).read_text()), (path / WEIGHTS_NAME).read_bytes(), sm(X).detach()


def _write(path: Path, config: dict | str, weights: bytes, resign: bool = False) -> Path:
    """The adapter files; ``resign``: checksums recomputed, as a writer with a bug (or a deliberate edit) would."""
    path.mkdir(parents=True, exist_ok=True)
    (path / WEIGHTS_NAME).write_bytes(weights)
    if resign:
        config = dict(config) | ({"weights_sha256": hashlib.sha256(weights).hexdigest()} if "weights_sha256" in config else {})
        config["config_sha256"] = config_checksum(config)
    (path / CONFIG_NAME).write_text(config if isinstance(config, str) else json.dumps(config, indent=2))
    return path


def _load(path: Path):
    """The loaded SubspaceModel, or None after an AdapterError that names the file; anything else fails the test."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return idim.SubspaceModel.from_pretrained(_mlp(), path)
    except idim.AdapterError as e:
        assert str(path) in str(e), e
        return None


def _edited(config: dict, path: tuple, value=None, delete: bool = False) -> dict:
    out = json.loads(json.dumps(config))
    parent = out
    for k in path[:-1]:
        parent = parent[k]
    if delete:
        parent.pop(path[-1], None)
    else:
        parent[path[-1]] = value
    return out


def _literal(sm, key: str, value) -> bool:
    """A loaded edit of ``key`` is taken as written: no cast, no alias (a pattern text becomes a one-item list)."""
    got = sm.subspace_config.to_dict()[key]
    want = ([value] if isinstance(value, str) else (list(value) or None)) if key in PATTERN_KEYS and value is not None else value
    return got == want and type(got) is type(want) and bool(torch.isfinite(sm(X)).all())


def test_neutral_edits_load_identically(adapter, tmp_path):
    config, weights, out = adapter
    for i, order in enumerate([sorted(config), sorted(config, reverse=True)]):
        for indent in (None, 0, 7):
            text = json.dumps({k: config[k] for k in order}, indent=indent)
            assert torch.equal(_load(_write(tmp_path / f"{i}-{indent}", text, weights))(X), out)


def test_weights_truncations_and_byte_flips(adapter, tmp_path):
    """Every truncation and every byte flip of the weights file, as found (checksum) and re-signed (parser and checks)."""
    config, weights, out = adapter
    outcomes = Counter()
    cases = [weights[:n] for n in range(len(weights))] + [
        weights[:i] + bytes([weights[i] ^ 0xFF]) + weights[i + 1 :] for i in range(len(weights))
    ]
    for i, data in enumerate(cases):
        assert _load(_write(tmp_path / "a", config, data)) is None
        outcomes["as found: AdapterError"] += 1
        sm = _load(_write(tmp_path / "a", config, data, resign=True))
        if sm is not None:  # a flipped byte in a value: another adapter, finite, of the same shapes
            assert i >= len(weights) and torch.isfinite(sm(X)).all()
        outcomes["re-signed: " + ("loaded (other finite values)" if sm is not None else "AdapterError")] += 1
    print(f"\nweights file, {len(cases)} truncations and byte flips x (as found, re-signed): {dict(outcomes)}")
    assert outcomes["re-signed: AdapterError"] >= len(weights)


def _tensor_cases(weights: bytes) -> dict[str, bytes]:
    t = load(weights)
    z, lam, bias = t["z"], t["lambda"], t["direct.2.bias"]

    def with_(z=z, lam=lam, direct=bias, **extra):
        return save({"z": z, "lambda": lam, "direct.2.bias": direct} | extra)

    cases = {f"z as {dt}": with_(z=(z * 100).to(dt)) for dt in (torch.int32, torch.int64, torch.int8, torch.uint8, torch.bool,
                                                                  torch.float16, torch.bfloat16)}
    cases |= {f"lambda as {dt}": with_(lam=lam.to(dt)) for dt in (torch.int32, torch.float16)}
    cases |= {f"direct as {dt}": with_(direct=bias.to(dt)) for dt in (torch.float64, torch.float16, torch.int32)}
    for name, bad in [("nan", float("nan")), ("inf", float("inf")), ("-inf", float("-inf"))]:
        cases |= {f"z {name}": with_(z=torch.cat([z[:-1], torch.tensor([bad])])),
                  f"lambda {name}": with_(lam=torch.cat([lam[:-1], torch.tensor([bad])])),
                  f"direct {name}": with_(direct=torch.cat([bias[:-1], torch.tensor([bad])]))}
    cases |= {"z one longer": with_(z=torch.cat([z, z[:1]])), "z one shorter": with_(z=z[:-1]), "z 2-D": with_(z=z[None]),
              "z scalar": with_(z=z[0]), "lambda one longer": with_(lam=torch.cat([lam, lam[:1]])), "direct 2-D": with_(direct=bias[None]),
              "no lambda": save({"z": z, "direct.2.bias": bias}), "no z": save({"lambda": lam, "direct.2.bias": bias}),
              "no direct": save({"z": z, "lambda": lam}), "extra tensor": with_(extra=z.clone()),
              "extra direct": save({"z": z, "lambda": lam, "direct.2.bias": bias, "direct.0.bias": bias.clone()}), "empty file": save({})}
    header_len = int.from_bytes(weights[:8], "little")
    header = weights[8 : 8 + header_len].decode()
    for old, new in [('"F32"', '"I32"'), ('"F32"', '"F64"'), ('"F32"', '"XX9"'), ("[9]", "[10]"), ("[9]", "[3,3]"), ("[9]", "[-9]"),
                     ('"data_offsets":[0,', '"data_offsets":[4,'), ("{", "[")]:
        edited = header.replace(old, new, 1).encode()
        cases[f"header {old}->{new}"] = len(edited).to_bytes(8, "little") + edited + weights[8 + header_len :]
    cases |= {"header length huge": (2**62).to_bytes(8, "little") + weights[8:], "header length 0": bytes(8) + weights[8:],
              "header not JSON": weights[:8] + b"x" * header_len + weights[8 + header_len :]}
    return cases


def test_tensor_dtype_shape_value_and_header_edits_are_refused(adapter, tmp_path):
    """Re-signed weights files whose tensors are of another dtype or shape, hold NaN/inf, or whose header is edited."""
    config, weights, out = adapter
    cases = _tensor_cases(weights)
    for name, data in cases.items():
        assert _load(_write(tmp_path / "a", config, data, resign=True)) is None, name
        if name not in NEEDS_THE_MODEL:  # read_adapter alone (as evaluate and merge use it) refuses it too
            with pytest.raises(idim.AdapterError):
                read_adapter(tmp_path / "a")
    as_float64 = save({k: v.double() if k in ("z", "lambda") else v for k, v in load(weights).items()})
    assert torch.equal(_load(_write(tmp_path / "b", config, as_float64, resign=True))(X), out)  # float64 z and lambda: documented
    print(f"\ntensor and header edits (re-signed): {len(cases)} cases, {len(cases)} AdapterError; float64 z/lambda loads identically")


def _config_paths(config: dict) -> list[tuple]:
    return [(k,) for k in config] + [("metadata", k) for k in config["metadata"]] + [("unknown_key",), ("metadata", "new")]


def test_config_edits_as_found_are_refused(adapter, tmp_path):
    """Every key of adapter_config.json replaced by random JSON values or deleted, without recomputing checksums."""
    config, weights, out = adapter
    outcomes = Counter()
    for path in _config_paths(config):

        @SETTINGS
        @given(value=st.one_of(VALUES, st.floats()), delete=st.booleans())
        def run(value, delete):
            edited = _edited(config, path, value, delete)
            sm = _load(_write(tmp_path / "a", edited, weights))
            if json.dumps(edited, sort_keys=True) == json.dumps(config, sort_keys=True):  # 0 -> 0.0 is a change
                assert torch.equal(sm(X), out)
                outcomes["unchanged value: loads identically"] += 1
            else:
                assert sm is None, (path, value, delete)
                outcomes["AdapterError"] += 1

        run()
    print(f"\nconfig edits as found, {len(_config_paths(config))} keys: {dict(outcomes)}")
    assert outcomes["AdapterError"] >= 10 * len(_config_paths(config))


def _resigned_edits(config: dict, weights: bytes, tmp_path: Path, paths: list[tuple]) -> Counter:
    outcomes, protected = Counter(), "config_sha256" in config
    for path in paths:

        @SETTINGS
        @given(value=VALUES, delete=st.booleans())
        def run(value, delete):
            sm = _load(_write(tmp_path / "a", _edited(config, path, value, delete), weights, resign=protected))
            key = None if path[0] == "metadata" else (path[-1] if protected else OLD_KEYS.get(path, path[-1]))
            if sm is None:
                outcomes["AdapterError"] += 1
            elif key in SUBSPACE_KEYS:
                assert not (delete and (protected or key in ("d", "seed"))), path  # no default stands in for a written value
                old_tensor = not protected and key == "groups" and value is None  # 0.1.0 wrote null for 'tensor'
                assert delete or old_tensor or _literal(sm, key, value), (path, value, sm.subspace_config)
                outcomes["loaded, value taken as written"] += 1
            else:
                assert torch.isfinite(sm(X)).all()
                outcomes["loaded (a key the weights do not depend on)"] += 1

        run()
    return outcomes


def test_config_edits_resigned_are_refused_or_taken_literally(adapter, tmp_path):
    """The schema's job, with checksums recomputed: a value of the wrong type, out of range or a bad regex is an
    AdapterError; a valid one is loaded as written, never cast or aliased."""
    config, weights, _ = adapter
    paths = [p for p in _config_paths(config) if p[-1] not in ("weights_sha256", "config_sha256")]
    outcomes = _resigned_edits(config, weights, tmp_path, paths)
    print(f"\nconfig edits re-signed, {len(paths)} keys: {dict(outcomes)}")
    assert outcomes["AdapterError"] >= 8 * len(paths)


def test_old_adapter_loads_with_a_warning_and_edits_are_checked(tmp_path):
    """Format 1 (0.1.0) has no config checksum: it loads with a warning; its config still goes through the schema."""
    with pytest.warns(UserWarning, match="format version 1 .written before configs had a checksum"):
        idim.SubspaceModel.from_pretrained(_mlp(), OLD)
    config = json.loads((OLD / CONFIG_NAME).read_text())
    weights = (OLD / WEIGHTS_NAME).read_bytes()
    paths = [(k,) for k in config if k not in ("weights_sha256", "format_version")] + [("projection", k) for k in config["projection"]]
    outcomes = _resigned_edits(config, weights, tmp_path, paths)
    print(f"\n0.1.0 adapter config edits, {len(paths)} keys: {dict(outcomes)}")
    assert outcomes["AdapterError"] >= 5 * len(paths)


@pytest.mark.parametrize(
    "path, value, message",
    [
        (("seed",), 2**64, "seed must be an integer from 0 to 2\\*\\*64 - 1"),
        (("seed",), -1, "seed must be"), (("seed",), 4.0, "seed must be"), (("seed",), "4", "seed must be"), (("seed",), True, "seed must be"),
        (("d",), 0, "d must be"), (("d",), 10**30, "d = "), (("d",), 3, "must exceed the 3 SAID groups"), (("d",), "12", "d must be"),
        (("d",), None, "d must be"), (("d",), [12], "d must be"), (("d",), 12.5, "d must be"), (("d",), True, "d must be"),
        (("projection",), "gaussian", "unknown projection"), (("projection",), ["fastfood"], "unknown projection"),
        (("layout",), "diagonal", "unknown layout"), (("normalisation",), 1, "normalisation"),
        (("said",), "no", "said must be true or false"), (("said",), 1, "said must be"), (("said",), None, "said must be"),
        (("groups",), "layer", "unknown SAID grouping"), (("groups",), {"0.weight": 1}, "grouping dict"),
        (("groups",), {"0.weight": "a"}, "no group for"), (("groups",), 7, "unknown SAID grouping"),
        (("include",), 5, "include must be"), (("train_directly",), [1], "train_directly must hold"),
        (("exclude",), {"a": "b"}, "exclude must be"), (("dense_max_elements",), 0, "dense_max_elements"),
        (("dense_max_elements",), 2.5, "dense_max_elements"), (("D",), 51, "D must be"), (("D",), "50", "D must be"),
        (("projected",), [], "projected must be"), (("projected",), [["0.weight", [5, -6]]], "projected must be"),
        (("projected",), [["0.weight", [5, 6]], ["0.weight", [5, 6]]], "twice"), (("projected",), "all", "projected must be"),
        (("base_fingerprint",), "abc", "base_fingerprint must be"), (("base_model_name",), 3, "base_model_name"),
        (("library_version",), [0, 1], "library_version"), (("metadata",), [], "metadata must be"),
        (("metadata", "seed"), 2**63, "metadata seed"), (("metadata", "seed"), "0", "metadata seed"),
        (("metadata", "model"), None, "metadata model"), (("metadata", "max_length"), 0, "metadata max_length"),
        (("format_version",), 3, "format version"), (("format_version",), True, "format version"),
    ]
    + [(("include",), r, "not a valid regular expression|longer than") for r in BAD_REGEXES if r != "x" * 2000]
    + [(("train_directly",), ["^2\\.bias", "x" * 2000], "longer than")],
)
def test_each_bad_config_value_gets_a_clear_error(adapter, tmp_path, path, value, message):
    config, weights, _ = adapter
    with pytest.raises(idim.AdapterError, match=message) as e:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            idim.SubspaceModel.from_pretrained(_mlp(), _write(tmp_path, _edited(config, path, value), weights, resign=True))
    assert str(tmp_path / CONFIG_NAME) in str(e.value) and "save the adapter again" in str(e.value)


@pytest.mark.parametrize("key", ["format_version", "d", "weights_sha256", "base_fingerprint", "base_model_name", "projected", "config_sha256"])
def test_missing_keys_are_refused(adapter, tmp_path, key):
    config, weights, _ = adapter
    edited = _edited(config, (key,), delete=True)
    assert _load(_write(tmp_path, edited, weights, resign=key != "config_sha256")) is None


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100, 1000, 10**5, 10**6])
@pytest.mark.parametrize("where", ["metadata", "groups", "top"])
def test_deep_nesting_is_refused_without_recursion(adapter, tmp_path, depth, where):
    config, weights, _ = adapter
    deep = "[" * depth + "]" * depth
    text = json.dumps(config)
    text = {"metadata": text.replace('"metadata": {', f'"metadata": {{"deep": {deep}, ', 1),
            "groups": text.replace('"groups": "tensor"', f'"groups": {deep}', 1), "top": deep}[where]
    with pytest.raises(idim.AdapterError, match="nested .* levels deep"):
        idim.SubspaceModel.from_pretrained(_mlp(), _write(tmp_path, text, weights))
    with pytest.raises(idim.AdapterError, match="nested"):
        idim.adapter.load_config(tmp_path)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace('"seed": 4', '"seed": ' + "9" * 5000), "not valid JSON"),
        (lambda t: t.replace('"seed": 4', '"seed": 1e999'), "out of range"),
        (lambda t: t.replace('"seed": 4', '"seed": NaN'), "not a JSON number"),
        (lambda t: t.replace('"seed": 4', '"seed": -Infinity'), "not a JSON number"),
        (lambda t: t.replace('"seed": 4', '"seed": 4, "seed": 4'), "appears twice"),
        (lambda t: t.replace('"seed": 4', '"seed": 5, "seed": 4'), "appears twice"),
        (lambda t: t[: len(t) // 2], "not valid JSON"),
        (lambda t: "", "not valid JSON"),
        (lambda t: "[1, 2]", "must hold a JSON object"),
        (lambda t: '"text"', "must hold a JSON object"),
        (lambda t: t + " " * (16 << 20), "more than the"),
    ],
)
def test_json_hazards_are_refused(adapter, tmp_path, edit, message):
    config, weights, _ = adapter
    with pytest.raises(idim.AdapterError, match=message):
        idim.SubspaceModel.from_pretrained(_mlp(), _write(tmp_path, edit(json.dumps(config, indent=2)), weights))


def test_non_utf8_config_and_missing_files(adapter, tmp_path):
    config, weights, _ = adapter
    _write(tmp_path, config, weights)
    (tmp_path / CONFIG_NAME).write_bytes(b'{"d": "\xff\xfe"}')
    with pytest.raises(idim.AdapterError, match="not valid JSON"):
        idim.SubspaceModel.from_pretrained(_mlp(), tmp_path)
    (tmp_path / CONFIG_NAME).unlink()
    with pytest.raises(idim.AdapterError, match="missing"):
        idim.SubspaceModel.from_pretrained(_mlp(), tmp_path)


def test_writing_refuses_a_config_it_could_not_read_back(tmp_path):
    z = {"z": torch.zeros(3)}
    with pytest.raises(ValueError, match="could not be read back"):
        write_adapter(tmp_path / "a", {"metadata": {"loss": float("nan")}}, z)
    nested: list = []
    for _ in range(MAX_DEPTH + 1):
        nested = [nested]
    with pytest.raises(ValueError, match="nested"):
        write_adapter(tmp_path / "b", {"metadata": {"deep": nested}}, z)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_format_downgrade_needs_the_checksum_removed_and_then_warns(adapter, tmp_path):
    """Claiming format 1 keeps a config_sha256 that no longer matches; removing it too gives format 1's warning
    (the checksum detects edits and corruption; it is not a signature)."""
    config, weights, out = adapter
    downgraded = _edited(config, ("format_version",), 1)
    assert _load(_write(tmp_path, downgraded, weights)) is None
    with pytest.warns(UserWarning, match="format version 1"):
        sm = idim.SubspaceModel.from_pretrained(_mlp(), _write(tmp_path, _edited(downgraded, ("config_sha256",), delete=True), weights))
    assert torch.equal(sm(X), out)
