import dataclasses

import numpy as np
import pytest
import yaml

from mrl.errors import ConfigError, MissingPathError, PathError
from mrl.training import RUN_ONLY_KEYS, TrainConfig, load_config
from mrl.training.config import model_changes, parse_overrides


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_yaml_then_overrides_with_types(tmp_path):
    path = write(tmp_path, "dataset: digits\nlr: 1.0e-2\nnesting: [8, 16, 32]\nembed_dim: 32\n")
    config = load_config(
        path, ["--lr=3e-3", "--batch-size=32", "--amp=false", "--max_steps=null", "--epochs=4.0"]
    )
    assert (config.dataset, config.lr, config.batch_size, config.amp) == ("digits", 3e-3, 32, False)
    assert config.max_steps is None and config.epochs == 4 and isinstance(config.epochs, int)
    assert config.nesting == [8, 16, 32] and config.get_nesting().dims == (8, 16, 32)


def test_default_nesting_is_halving():
    assert TrainConfig(embed_dim=64, min_dim=4).get_nesting().dims == (4, 8, 16, 32, 64)
    weighted = load_config(None, ["--embed_dim=16", "--min_dim=4", "--nesting_weights=[2, 1, 1]"])
    assert weighted.get_nesting().weights == (2.0, 1.0, 1.0)


def test_unknown_key_is_named_with_the_nearest(tmp_path):
    with pytest.raises(ValueError, match=r"unknown config key 'lrr' \(did you mean 'lr'\?\)"):
        load_config(None, ["--lrr=0.1"])
    with pytest.raises(
        ValueError, match=r"unknown config key 'batchsize' \(did you mean 'batch_size'\?\)"
    ):
        load_config(write(tmp_path, "batchsize: 32\n"), [])
    with pytest.raises(
        ValueError, match="unknown config key 'zzz'; choose one of dataset, data_root"
    ):
        load_config(None, ["--zzz=1"])


@pytest.mark.parametrize(
    "override, match",
    [
        ("--epochs=1.5", r"epochs must be an int, got 1.5 \(float\)"),
        ("--lr=fast", r"lr must be a number, got 'fast' \(str\)"),
        ("--amp=2", r"amp must be a bool, got 2 \(int\)"),
        ("--nesting=8", r"nesting must be a list of int, got 8 \(int\)"),
        (
            "--head=mrle",
            r"unknown head 'mrle' \(did you mean 'mrl-e'\?\); choose one of mrl, mrl-e",
        ),
        ("--dataset=mnist", r"unknown dataset 'mnist' \(did you mean 'mnist5k'\?\)"),
        ("--ff_dim=8", "ff_dim applies to head 'ff' only \\(head is 'mrl'\\); remove ff_dim"),
        ("--out_dir=", "out_dir is empty; name the run folder"),
        ("--nesting=[16, 8, 64]", "nesting must be strictly increasing, got 16 then 8"),
        (
            "--nesting=[8, 16, 32]",
            r"nesting \[8, 16, 32\] ends at 32 but the embedding has 64 dims",
        ),
        (["--head=ff", "--ff_dim=128"], r"ff_dim 128 must be within 1..64"),
        ("--lr", "override '--lr' has no value; write --lr=VALUE or --lr VALUE"),
        ("lr=0.1", "override 'lr=0.1' must look like --key=value or --key value"),
        ("--checkpoint_every=0", r"checkpoint_every \(an int or null\) must be >= 1, got 0"),
        ("--loss_check_every=0", "loss_check_every must be >= 1, got 0"),
        ("--lr=0", r"lr must be a finite number in \(0, inf\], got 0.0"),
        ("--momentum=1", r"momentum must be in \[0, 1\), got 1.0"),
        ("--num_workers=-1", "num_workers must be >= 0, got -1"),
        (
            "--distill_weight=0.5",
            "distill_weight 0.5 distils the contrastive loss, and contrastive_weight is 0",
        ),
        ("--distill_weight=-1", r"distill_weight must be a finite number in \[0, inf\]"),
        ("--distill_temperature=0", r"distill_temperature must be a finite number in \(0,"),
    ],
)
def test_bad_values_are_clear(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, override if isinstance(override, list) else [override])


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"epochs": "3"}, r"epochs must be an int, got '3' \(str\)"),
        ({"batch_size": 12.5}, r"batch_size must be an int, got 12.5 \(float\)"),
        ({"nesting": "8,16"}, r"nesting must be a list of int, got '8,16' \(str\)"),
        ({"nesting": [8, 16.0]}, r"nesting\[1\] must be an int, got 16.0 \(float\)"),
        ({"nesting_weights": "12"}, "nesting_weights must be a list of float, got '12'"),
        ({"lr": "0.1"}, r"lr must be a number, got '0.1' \(str\)"),
        ({"amp": "false"}, r"amp must be a bool, got 'false' \(str\)"),
        ({"amp": 1}, r"amp must be a bool, got 1 \(int\)"),
        ({"max_steps": True}, r"max_steps must be an int, got True \(bool\)"),
        ({"dataset": 5}, r"dataset must be a str, got 5 \(int\)"),
        ({"out_dir": None}, r"out_dir must be a str, got None"),
        ({"ff_dim": 8.0}, r"ff_dim must be an int, got 8.0 \(float\)"),
    ],
)
def test_fields_are_typed_at_construction(kw, match):
    # the API does not convert: "3" for epochs is a caller's mistake, named with the field
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**kw)


def test_construction_keeps_sound_values_and_normalises_them():
    config = TrainConfig(lr=1, nesting=(8, 16, 32, 64), warmup_epochs=0, max_steps=np.int64(3))
    assert config.lr == 1.0 and isinstance(config.lr, float)
    assert config.nesting == [8, 16, 32, 64] and type(config.max_steps) is int


@pytest.mark.parametrize(
    "text, error, match",
    [
        ("- 1\n- 2\n", ConfigError, "c.yaml must be a YAML mapping"),
        ("lr: 0.1\nepochs: [1, 2\n", ConfigError, r"c.yaml line 3, column 1: YAML syntax error"),
        ("lr: 0.1\n  epochs: 3\n", ConfigError, r"c.yaml line 2, column 9: YAML syntax error"),
        (b"\xff\xfe\x00binary", ConfigError, "c.yaml is not a text file; give a YAML file"),
        (None, MissingPathError, "config file .*missing.yaml does not exist; check the path"),
        ("folder", PathError, "config .* is a folder; give a YAML file"),
    ],
)
def test_bad_config_files_are_named(tmp_path, text, error, match):
    if text is None:
        path = tmp_path / "missing.yaml"
    elif text == "folder":
        path = tmp_path
    else:
        path = tmp_path / "c.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(error, match=match):
        load_config(path, [])


def test_overrides_take_key_value_pairs_and_bare_flags():
    argv = ["--out_dir", "/tmp/x", "--lr", "0.05", "--amp", "false", "--batch-size", "32"]
    argv += ["--nesting", "[8, 16, 32, 64]", "--sync_bn", "--progress=false"]
    config = load_config(None, argv)
    assert (config.out_dir, config.lr, config.amp, config.batch_size) == ("/tmp/x", 0.05, False, 32)
    assert config.nesting == [8, 16, 32, 64] and config.sync_bn and not config.progress


def test_override_values_may_be_negative_and_only_bools_go_bare():
    assert parse_overrides(["--x", "-1", "--f"], flags=["f"]) == [("x", -1), ("f", True)]
    with pytest.raises(ConfigError, match="override '--x' has no value"):
        parse_overrides(["--x", "--f"], flags=["f"])


def test_run_only_keys_are_fields_and_the_rest_change_the_model():
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert RUN_ONLY_KEYS < fields
    saved = TrainConfig().to_dict()
    for key in sorted(fields):
        changed = {**saved, key: "something else"}
        assert model_changes(saved, changed) == ([] if key in RUN_ONLY_KEYS else [key]), key


def test_saved_yaml_round_trips(tmp_path):
    config = load_config(None, ["--dataset=digits", "--nesting=[4,8,16,64]"])
    config.to_yaml(tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml", [])
    assert again == config
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["nesting"] == [4, 8, 16, 64]
