"""TRL's fused LM head scoring only the labelled positions on a CPU: the plain loss and gradients."""

from __future__ import annotations

from pathlib import Path

import pytest

from finetune.tiny import make_tiny_model
from fmops.finetune.trainer import _score_labelled_positions_only


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "base")


def test_compact_lm_head_matches_the_plain_loss_and_gradients(base: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    ids = torch.randint(4, model.config.vocab_size, (3, 24))
    attention = torch.ones_like(ids)
    attention[2, 18:] = 0  # a padded row
    labels = ids.clone()
    labels[:, :15] = -100  # the prompt
    labels[attention == 0] = -100

    plain = model(input_ids=ids, attention_mask=attention, labels=labels).loss
    plain.backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()

    _score_labelled_positions_only()
    import trl.trainer.utils as trl_utils

    assert trl_utils._use_triton(torch.device("cpu"))  # the compact path: only labelled positions
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    fused = model(input_ids=ids, attention_mask=attention, labels=labels, fused_lm_head=True)
    assert int(fused.label_mask.sum()) == int((labels[:, 1:] != -100).sum())
    fused.loss.backward()
    torch.testing.assert_close(fused.loss, plain, rtol=1e-5, atol=1e-6)
    for name, grad in expected.items():
        got = dict(model.named_parameters())[name].grad
        assert got is not None, name
        torch.testing.assert_close(got, grad, rtol=1e-4, atol=1e-6)
