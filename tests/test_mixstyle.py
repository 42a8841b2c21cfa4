import pytest
import torch

from lit_app.nets.mixstyle import MixStyle


def test_mixstyle_gives_each_clip_statistics_between_its_own_and_another_clips():
    torch.manual_seed(0)
    maps = torch.randn(8, 4, 6, 5) * torch.arange(1.0, 9.0)[:, None, None, None] + torch.arange(8.0)[:, None, None, None]
    mixed = MixStyle(probability=1.0, alpha=0.5).train()(maps)
    mean, new_mean = maps.mean((2, 3)), mixed.mean((2, 3))
    std, new_std = maps.std((2, 3), correction=0), mixed.std((2, 3), correction=0)
    assert not torch.allclose(new_mean, mean)
    # Every new statistic lies between the smallest and the largest of the batch's (a convex mix of two clips').
    assert (new_mean >= mean.min(0).values - 1e-4).all() and (new_mean <= mean.max(0).values + 1e-4).all()
    assert (new_std >= std.min(0).values - 1e-4).all() and (new_std <= std.max(0).values + 1e-4).all()
    # The content (each clip's standardised map) is its own.
    standardise = lambda x: (x - x.mean((2, 3), keepdim=True)) / x.std((2, 3), keepdim=True)  # noqa: E731
    assert torch.allclose(standardise(mixed), standardise(maps), atol=1e-4)


def test_mixstyle_is_the_identity_outside_training_and_when_not_drawn():
    maps = torch.randn(4, 3, 5, 5)
    assert torch.equal(MixStyle(probability=1.0).eval()(maps), maps)
    assert torch.equal(MixStyle(probability=0.0).train()(maps), maps)
    assert torch.equal(MixStyle(probability=1.0).train()(maps[:1]), maps[:1])  # one clip: nothing to mix with


def test_mixstyle_passes_gradients_through_the_content_only():
    maps = torch.randn(4, 3, 5, 5, requires_grad=True)
    MixStyle(probability=1.0).train()(maps).sum().backward()
    assert maps.grad is not None and torch.isfinite(maps.grad).all()


@pytest.mark.parametrize("probability, alpha", [(1.5, 0.1), (-0.1, 0.1), (0.5, 0.0)])
def test_mixstyle_refuses_bad_settings(probability, alpha):
    with pytest.raises(ValueError, match="MixStyle"):
        MixStyle(probability, alpha)
