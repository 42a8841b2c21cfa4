import pytest
import torch

from lit_app.checkpoints import CheckpointError, load_module
from lit_app.data.vocab import task_labels
from lit_app.models.kws import KWSModule
from lit_app.nets.kws_cnn import CnnTradFpool3
from tests.conftest import save_checkpoint


@pytest.mark.parametrize("padding, params", [("same", 373_900), ("valid", 260_236)])
def test_cnn_shapes_and_size(padding, params):
    net = CnnTradFpool3(12, padding=padding)
    assert net(torch.randn(2, 101, 40)).shape == (2, 12)
    assert sum(p.numel() for p in net.parameters()) == params


def test_pooling_before_relu_equals_the_reference_order_in_training_too():
    """ReLU after max-pooling (cheaper) gives what conv -> ReLU -> dropout -> pool gives, dropout draw included."""
    net = CnnTradFpool3(12, padding="valid", batch_norm=True, dropout=0.3).train()
    conv1, bn1, _, _, _, conv2, bn2 = (net.features[i] for i in (1, 2, 3, 4, 5, 7, 8))
    pool = torch.nn.MaxPool2d(2, ceil_mode=True)
    features = torch.randn(4, 101, 40, requires_grad=True)

    def reference_forward(x):
        x = x.unsqueeze(1).contiguous(memory_format=net.memory_format)  # the same layout: the same dropout draw
        x = pool(torch.nn.functional.dropout(torch.relu(bn1(conv1(x))), 0.3))
        x = pool(torch.nn.functional.dropout(torch.relu(bn2(conv2(x))), 0.3))
        return net.classifier(x.flatten(1))

    torch.manual_seed(5)
    expected = reference_forward(features)
    torch.manual_seed(5)
    assert torch.equal(net(features), expected)


def test_channels_last_activations_change_speed_not_results(monkeypatch):
    net = CnnTradFpool3(12, padding="valid", batch_norm=True).eval()
    features = torch.randn(3, 101, 40, requires_grad=True)
    fast = net(features)
    (fast_grad,) = torch.autograd.grad(fast.sum(), features)
    monkeypatch.setattr(CnnTradFpool3, "memory_format", torch.contiguous_format)
    plain = net(features)
    (plain_grad,) = torch.autograd.grad(plain.sum(), features)
    assert torch.allclose(fast, plain, atol=1e-5) and torch.allclose(fast_grad, plain_grad, atol=1e-5)


def test_module_takes_waveforms_and_is_differentiable():
    model = KWSModule(labels=task_labels("words35")).eval()
    wave = (torch.randn(3, 16000) * 0.1).requires_grad_()
    logits = model(wave)
    assert logits.shape == (3, 35)
    logits[:, 0].sum().backward()
    assert wave.grad.abs().sum() > 0


def test_checkpoint_alone_rebuilds_the_victim(tmp_path):
    model = KWSModule(labels=task_labels("words35"), n_mfcc=20, padding="valid").eval()
    path = tmp_path / "victim.ckpt"
    save_checkpoint(model, path)
    loaded = load_module(path, KWSModule)
    assert loaded.labels == model.labels and loaded.front_end.n_mfcc == 20 and not loaded.training
    wave = torch.randn(2, 16000) * 0.1
    assert torch.allclose(loaded(wave), model(wave), atol=1e-5)


def test_checkpoint_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(CheckpointError, match="missing.ckpt: checkpoint not found"):
        load_module(tmp_path / "missing.ckpt")
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="corrupt.ckpt: not a readable PyTorch checkpoint"):
        load_module(corrupt)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not written by lit-app"):
        load_module(foreign)

    class OtherModel(KWSModule):
        pass

    good = tmp_path / "kws.ckpt"
    save_checkpoint(KWSModule(), good)
    with pytest.raises(CheckpointError, match="holds a KWSModule, but a OtherModel is needed"):
        load_module(good, OtherModel)


def test_checkpoint_of_another_task_is_refused(tmp_path):
    path = tmp_path / "kws.ckpt"
    save_checkpoint(KWSModule(labels=task_labels("words35")), path)
    model = KWSModule(labels=task_labels("keywords12"))
    with pytest.raises(ValueError, match="trained on labels"):
        model.on_load_checkpoint(torch.load(path, weights_only=True))
