"""The configuration schema: typing, defaults, precedence and error messages."""

import json

import pytest

from rhemo.train import config


def test_defaults_follow_the_paper_per_script():
    rhemo = config.defaults("rhemo")
    ser = config.defaults("ser")
    assert (rhemo["batch_size"], rhemo["learning_rate"], rhemo["patience"]) == (50, 1e-3, 100)
    assert (ser["batch_size"], ser["learning_rate"], ser["patience"], ser["num_epochs"]) == (20, 1e-5, 20, 500)
    assert rhemo["label_view"] == "complete" and ser["label_view"] == "iemocap4"
    assert "use_r2he" in ser and "use_r2he" not in rhemo
    assert "loss_beta" in rhemo and "loss_beta" not in ser


@pytest.mark.parametrize("key, value, fragment", [
    ("use_cuda", "True", "write true or false without quotes"),
    ("batch_size", 2.5, "expects an integer"),
    ("batch_size", True, "expects an integer"),
    ("batch_size", 0, "must be >= 1"),
    ("learning_rate", "1e-3", "expects a number"),
    ("protocol", "loso", "among random, speaker"),
    ("split_fractions", [0.7, "0.3"], "a list of numbers"),
    ("load_pretrained", 3, "a path string or null"),
])
def test_wrong_types_name_source_key_and_expectation(key, value, fragment):
    with pytest.raises(config.ConfigError) as err:
        config.validate({key: value}, script="ser", source="experiments/9_x.txt run 2")
    message = str(err.value)
    assert message.startswith("experiments/9_x.txt run 2: key '" + key + "'")
    assert fragment in message


def test_unknown_key_and_wrong_script_key_are_rejected():
    with pytest.raises(config.ConfigError, match="unknown key\\(s\\) typo_key"):
        config.validate({"typo_key": 1}, script="rhemo", source="f")
    with pytest.raises(config.ConfigError, match="unknown key\\(s\\) loss_beta for training_SER.py"):
        config.validate({"loss_beta": 0.01}, script="ser", source="f")


def test_ints_are_accepted_where_numbers_are_expected():
    cfg = config.validate({"learning_rate": 1, "split_fractions": [1, 0, 0]}, script="rhemo", source="f")
    assert cfg["learning_rate"] == 1.0 and isinstance(cfg["learning_rate"], float)
    assert cfg["split_fractions"] == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("params, fragment", [
    ({"split_fractions": [0.7, 0.2]}, "three non-negative numbers summing to 1"),
    ({"split_fractions": [0.7, 0.2, 0.2]}, "three non-negative numbers summing to 1"),
    ({"fold": 5, "num_folds": 5}, "'fold' is 5 but num_folds is 5"),
    ({"model_quat": True, "use_r2he": False}, "needs use_r2he true"),
    ({"model_name": "simple_autoencoder_2_vad"}, "must be one of"),
    ({"train_fraction": 0.0}, "must be in (0, 1]"),
])
def test_inconsistent_combinations_are_rejected(params, fragment):
    with pytest.raises(config.ConfigError) as err:
        config.validate(params, script="ser", source="f")
    assert fragment in str(err.value)


def test_rhemo_needs_max_normalisation():
    with pytest.raises(config.ConfigError, match="'normalisation' must be 'max' for training_RHemo.py"):
        config.validate({"normalisation": "zscore"}, script="rhemo", source="f")


def test_command_line_overrides_config_file_which_overrides_defaults(tmp_path):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"batch_size": 7, "learning_rate": 0.5, "script": "training_SER.py",
                                "nproc": 2}))
    cfg = config.parse_args("ser", "test", ["--config", str(path), "--batch_size", "3",
                                            "--use_cuda", "false", "--r2he_model_path", "null",
                                            "--split_fractions", "[0.5, 0.25, 0.25]"])
    assert cfg["batch_size"] == 3
    assert cfg["learning_rate"] == 0.5
    assert cfg["use_cuda"] is False
    assert cfg["r2he_model_path"] is None
    assert cfg["split_fractions"] == [0.5, 0.25, 0.25]
    assert cfg["patience"] == 20
    assert "script" not in cfg and "nproc" not in cfg


def test_command_line_errors_exit_with_a_message(tmp_path, capsys):
    with pytest.raises(SystemExit):
        config.parse_args("ser", "test", ["--batch_size", "many"])
    assert "--batch_size expects an integer, got 'many'" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"batch_size": 3,}')
    with pytest.raises(SystemExit):
        config.parse_args("ser", "test", ["--config", str(bad)])
    assert "bad.json: invalid JSON at line 1" in capsys.readouterr().err


def test_markdown_table_lists_every_key_once():
    table = config.markdown_table()
    for name in config.OPTIONS:
        assert table.count(f"| `{name}` |") == 1
