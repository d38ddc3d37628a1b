import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Run the Memoria tests on one thread.

    Both packages then do the same arithmetic in the same order, and the many small
    tensor operations are not slowed down by thread hand-offs on a busy machine.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
