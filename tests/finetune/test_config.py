"""Fine-tuning settings: TRL/PEFT names over working defaults; bad keys are clear errors naming them."""

from __future__ import annotations

from pathlib import Path

import pytest

from fmops.errors import UserError
from fmops.finetune.config import LORA_DEFAULTS, FinetuneConfig, Method, load_config


def test_defaults_work_on_cpu_and_user_values_win(tmp_path: Path) -> None:
    config = FinetuneConfig.from_dict({"learning_rate": 1e-3, "lora": {"r": 8}})
    values = config.to_dict()
    assert values["learning_rate"] == 1e-3
    assert values["bf16"] is False
    assert values["completion_only_loss"] is True
    assert values["lora"] == {**LORA_DEFAULTS, "r": 8}
    args = config.trl_args(tmp_path, use_cpu=True)
    assert type(args).__name__ == "SFTConfig"
    assert args.learning_rate == 1e-3
    assert args.gradient_checkpointing is False
    assert config.peft_config().r == 8


def test_yaml_file_with_trl_and_peft_names(tmp_path: Path) -> None:
    path = tmp_path / "ft.yaml"
    path.write_text(
        "max_steps: 7\nper_device_train_batch_size: 2\nbeta: 0.2\nlora:\n  r: 4\n  lora_alpha: 8\n"
    )
    config = load_config(path, Method.dpo)
    assert config.method == Method.dpo
    assert config.training == {"max_steps": 7, "per_device_train_batch_size": 2, "beta": 0.2}
    assert type(config.trl_args(tmp_path, use_cpu=True)).__name__ == "DPOConfig"


@pytest.mark.parametrize(
    ("raw", "param", "words"),
    [
        ({"learnin_rate": 1e-4}, "config.learnin_rate", "did you mean learning_rate"),
        ({"output_dir": "/tmp/x"}, "config.output_dir", "set by fmops"),
        ({"trust_remote_code": True}, "config.trust_remote_code", "set by fmops"),
        ({"lora": {"rank": 4}}, "config.lora.rank", "LoraConfig"),
        ({"num_train_epochs": "three"}, "config.num_train_epochs", "of type float"),
        ({"lora": {"r": "8"}}, "config.lora.r", "of type int"),
        ({"lr_scheduler_type": "sideways"}, "config", "SchedulerType"),
        ({"lora": [1, 2]}, "config.lora", "mapping"),
        ({"num_threads": 0}, "config.num_threads", "at least 1"),
    ],
)
def test_bad_settings_name_the_key(raw: dict[str, object], param: str, words: str) -> None:
    with pytest.raises(UserError) as caught:
        FinetuneConfig.from_dict(raw)
    assert caught.value.param == param
    assert words in caught.value.message


def test_dpo_only_settings_are_refused_for_sft() -> None:
    with pytest.raises(UserError, match="beta"):
        FinetuneConfig.from_dict({"beta": 0.1}, Method.sft)


def test_yaml_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "ft.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="mapping"):
        load_config(path)


@pytest.mark.parametrize("method", [Method.sft, Method.dpo])
def test_gradient_checkpointing_reaches_transformers_under_its_new_name(
    method: Method, tmp_path: Path
) -> None:
    """Users write TRL's `gradient_checkpointing`; transformers 5 calls it `activation_checkpointing`
    and warns on the old name: fmops passes the new one, so no FutureWarning, and the value holds."""
    import warnings

    for value in (True, False):
        config = FinetuneConfig.from_dict({"gradient_checkpointing": value}, method)
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            args = config.trl_args(tmp_path, use_cpu=True)
        assert args.gradient_checkpointing is value
        assert getattr(args, "activation_checkpointing", value) is value
        assert config.to_dict()["gradient_checkpointing"] is value  # the lineage keeps the name users wrote
    kwargs = {"use_reentrant": False}
    config = FinetuneConfig.from_dict({"gradient_checkpointing_kwargs": kwargs}, method)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        assert config.trl_args(tmp_path, use_cpu=True).gradient_checkpointing_kwargs == kwargs


def test_num_processes_is_fmops_own_setting() -> None:
    config = FinetuneConfig.from_dict({"num_processes": 2})
    assert config.num_processes == 2
    assert "num_processes" not in config.training  # not passed to TRL
    assert config.to_dict()["num_processes"] == 2
    for bad in (0, 65, "2", True):
        with pytest.raises(UserError) as caught:
            FinetuneConfig.from_dict({"num_processes": bad})
        assert caught.value.param == "config.num_processes"


def test_serve_as_is_fmops_own_setting() -> None:
    assert FinetuneConfig.from_dict({}).to_dict()["serve_as"] == "merged"  # the base's decode speed
    config = FinetuneConfig.from_dict({"serve_as": "lora"})
    assert config.serve_as == "lora"
    assert "serve_as" not in config.training  # not passed to TRL
    for bad in ("gguf", 1, None):
        with pytest.raises(UserError) as caught:
            FinetuneConfig.from_dict({"serve_as": bad})
        assert caught.value.param == "config.serve_as"
        assert "merged, lora" in str(caught.value)
