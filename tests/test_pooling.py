import pytest
import torch

from helpers import POOLING_MODES, pool

TOKENS = torch.tensor([[[1.0, -2.0], [3.0, 4.0], [100.0, 100.0]]])  # the last token is padding
MASK = torch.tensor([[1, 1, 0]])


def test_mean_ignores_padding():
    assert torch.equal(pool(TOKENS, MASK, "mean"), torch.tensor([[2.0, 1.0]]))


def test_max_ignores_padding_even_when_padding_is_larger():
    assert torch.equal(pool(TOKENS, MASK, "max"), torch.tensor([[3.0, 4.0]]))


def test_max_ignores_padding_when_real_tokens_are_negative():
    tokens = torch.tensor([[[-5.0], [-3.0], [0.0]]])
    assert torch.equal(pool(tokens, MASK, "max"), torch.tensor([[-3.0]]))


def test_cls_takes_the_first_token():
    assert torch.equal(pool(TOKENS, MASK, "cls"), torch.tensor([[1.0, -2.0]]))


def test_padding_does_not_change_any_pooling():
    unpadded = TOKENS[:, :2]
    for mode in POOLING_MODES:
        assert torch.allclose(pool(TOKENS, MASK, mode), pool(unpadded, MASK[:, :2], mode))


def test_unknown_pooling_lists_the_choices():
    with pytest.raises(ValueError, match=r"pooling must be one of \['cls', 'max', 'mean'\], got 'avg'"):
        pool(TOKENS, MASK, "avg")
