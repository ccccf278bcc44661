from mrl.cli.main import main


def write_config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "dataset: digits\nbackbone: mlp\nembed_dim: 16\nmin_dim: 4\nepochs: 1\n"
        f"batch_size: 64\nprogress: false\nout_dir: {tmp_path / 'run'}\n"
    )
    return path


def test_train_prints_top1_per_size_and_resume_reuses(tmp_path, capsys):
    config = write_config(tmp_path)
    assert main(["train", "--config", str(config), "--lr=0.05", "--max_steps=5"]) == 0
    out = capsys.readouterr().out
    assert "dim   top-1 %" in out and "step 5" in out
    assert [line.split()[0] for line in out.splitlines()[2:]] == ["4", "8", "16"]
    # the finished run is reused; without --resume the folder is protected
    assert main(["train", "--config", str(config), "--lr=0.05", "--max_steps=5", "--resume"]) == 0
    assert "step 5" in capsys.readouterr().out
    assert main(["train", "--config", str(config), "--lr=0.05"]) == 1
    assert "already holds a checkpoint" in capsys.readouterr().err


def test_train_unknown_flag_names_it(tmp_path, capsys):
    assert main(["train", "--config", str(write_config(tmp_path)), "--lrr=0.1"]) == 2
    assert "unknown config key 'lrr' (did you mean 'lr'?)" in capsys.readouterr().err
