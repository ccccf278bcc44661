import pytest
import yaml

from mrl.training import TrainConfig, load_config


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
        ValueError, match="unknown config key 'zzz' \\(valid keys: dataset, data_root"
    ):
        load_config(None, ["--zzz=1"])


@pytest.mark.parametrize(
    "override, match",
    [
        ("--epochs=1.5", "config key 'epochs' expects int, got 1.5"),
        ("--lr=fast", "config key 'lr' expects float, got 'fast'"),
        ("--amp=2", "config key 'amp' expects bool, got 2"),
        ("--nesting=8", "config key 'nesting' expects list, got 8"),
        ("--head=mrle", "unknown head 'mrle'; choose one of mrl, mrl-e, ff"),
        ("--nesting=[16, 8, 64]", "nesting must be strictly increasing, got 16 then 8"),
        (
            "--nesting=[8, 16, 32]",
            r"nesting \[8, 16, 32\] ends at 32 but the embedding has 64 dims",
        ),
        ("--ff_dim=128", r"ff_dim 128 must be within 1..64"),
        ("--lr", "override '--lr' must look like --key=value"),
        ("--checkpoint_every=0", "checkpoint_every must be >= 1 or null, got 0"),
        ("--loss_check_every=0", "loss_check_every must be >= 1, got 0"),
    ],
)
def test_bad_values_are_clear(override, match):
    with pytest.raises(ValueError, match=match):
        load_config(None, [override])


def test_yaml_must_be_a_mapping(tmp_path):
    with pytest.raises(ValueError, match="must be a YAML mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"), [])


def test_saved_yaml_round_trips(tmp_path):
    config = load_config(None, ["--dataset=digits", "--nesting=[4,8,16,64]"])
    config.to_yaml(tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml", [])
    assert again == config
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["nesting"] == [4, 8, 16, 64]
