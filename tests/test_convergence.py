"""Slow: the default NTM and DNC learn copy to < 0.1 bits per sequence (run by hand).

python -m pytest -m slow tests/test_convergence.py     # ~15-30 CPU minutes
"""

import pytest
import torch

from torchmem.train import TrainConfig, evaluate, train


@pytest.mark.slow
@pytest.mark.parametrize("model", ["dnc", "ntm"])
def test_copy_converges_with_defaults(model, tmp_path):
    torch.set_num_threads(1)
    train(TrainConfig(model=model, task="copy"), tmp_path / model, quiet=True)
    held_out = evaluate(tmp_path / model, batches=8, batch_size=64)
    assert held_out["bit_errors_per_sequence"] < 0.1
    longer = evaluate(tmp_path / model, length=40, batches=2, batch_size=32)
    assert longer["length"] == 40
