import pytest
import torch


@pytest.fixture(autouse=True)
def float64_default():
    """The maths tests compare against hand-computed values and gradcheck: use float64."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)
