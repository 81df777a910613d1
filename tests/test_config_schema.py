"""Run configuration at the edge: every option's type, range and choices checked before any work,
for flags and config files alike; property-based over random configurations."""

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from intrinsic_dim.cli import RANGES, _parse


def _err(argv, capsys, extra=None):
    with pytest.raises(SystemExit) as e:
        _parse(argv, extra=extra)
    assert e.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--fraction", "nan"], "--fraction must be a number in (0, 1.5]"),
        (["--epochs", "nan"], "--epochs must be"),
        (["--epochs", "inf"], "--epochs must be"),
        (["--threads", "-1"], "--threads must be"),
        (["--threads", "0"], "--threads must be"),
        (["--baseline-seeds", "-2"], "--baseline-seeds must be"),
        (["--baseline-seeds", "0"], "--baseline-seeds must be"),
        (["--eval-every", "0"], "--eval-every must be"),
        (["--precision", "nan"], "--precision must be"),
        (["--baseline", "nan"], "--baseline must be"),
        (["--baseline", "-1"], "--baseline must be"),
        (["--baseline", "inf"], "--baseline must be"),
        (["--seeds", "0"], "--seeds must be"),
        (["--lr-search", "0.1,nan"], "--lr-search must be"),
        (["--dims", "0,10"], "--dims must be"),
    ],
)
def test_bad_flags_say_what_to_change(flags, message, capsys):
    assert message in _err(["measure", *flags], capsys)


def test_seed_and_d_ranges_for_train(capsys):
    assert "--seed must be an integer from 0 to 2**63 - 1" in _err(["train", "--seed", str(2**63)], capsys)
    assert "--d must be a positive integer" in _err(["train", "--d", "0"], capsys)


@pytest.mark.parametrize(
    "config, message",
    [
        ({"fraction": True}, "config option fraction: expected a number"),
        ({"dims": [10.7, 300.2]}, "config option dims: expected an integer"),
        ({"said": "no"}, "config option said: expected true or false"),
        ({"model": {"a": [1, 2]}}, "config option model: expected text"),
        ({"projection": "gaussian"}, "config option projection: expected one of"),
        ({"seeds": "3x"}, "config option seeds"),
        ({"max_train": 0}, "config option max_train"),
        ({"modle": "x"}, "unknown option(s)"),
        ({"epochs": None}, "config option epochs: expected a value"),
    ],
)
def test_bad_config_values_say_what_to_change(config, message, capsys):
    assert message in _err(["measure"], capsys, extra=config)


def test_good_config_values_are_converted(capsys):
    args = _parse(["measure"], extra={"dims": [100, 300], "max_train": "all", "seeds": "3", "said": False, "lr_search": 0.1})
    assert args.dims == [100, 300] and args.max_train is None and args.seeds == 3 and not args.said and args.lr_search == [0.1]


_values = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
    st.lists(st.one_of(st.integers(-5, 10**5), st.floats(allow_nan=True)), max_size=4), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
_keys = st.sampled_from(sorted(RANGES) + ["model", "task", "said", "projection", "layout", "groups", "max_train", "max_eval", "curve",
                                          "select", "run_dir", "quiet", "unknown_key"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=st.dictionaries(_keys, _values, max_size=4))
def test_any_config_parses_in_range_or_is_refused_with_a_usage_error(config, capsys):
    try:
        args = _parse(["measure"], extra=config)
    except SystemExit as e:
        assert e.code == 2
        return
    for dest, (ok, _) in RANGES.items():
        value = getattr(args, dest, None)
        assert value is None or ok(value)
    assert isinstance(args.said, bool) and args.projection in ("fastfood", "sparse", "dense")
    assert args.max_train is None or (isinstance(args.max_train, int) and args.max_train >= 1)
    for v in (args.fraction, args.epochs, args.precision):
        assert math.isfinite(v)


def test_a_yaml_alias_bomb_is_refused_in_a_short_message(tmp_path, capsys):
    """Nine levels of nine aliases (387 million strings if expanded) under a valid key: refused at
    once with a message of a few hundred bytes, never expanded or printed."""
    levels = ['&l0 ["x","x","x","x","x","x","x","x","x"]'] + [
        f"&l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)
    ]
    config = tmp_path / "bomb.yaml"
    config.write_text("model:\n" + "".join(f"  - {line}\n" for line in levels))
    err = _err(["measure", "--config", str(config)], capsys)
    assert "config option model: expected text" in err and len(err) < 1000
