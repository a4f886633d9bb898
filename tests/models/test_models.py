"""Registry forward shapes, checkpoint round trip and errors, offline MobileNetV2 weights + BN re-estimation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from distill.data import ImageDataset, load_labeled_images
from models import InputError, ModelCard, build_model, list_models, load_checkpoint, read_checkpoint, save_checkpoint
from models.pretrained import is_folded_batchnorm, reestimate_folded_batchnorm
from tests.helpers import assert_folding_keeps_the_function

CASES = [("resnet18", {}, 512), ("resnet50", {}, 2048), ("mobilenet_v2", {}, 1280),
         ("mobilenet_v2", {"width": 0.5}, 1280), ("mobilenet_v2", {"width": 0.35}, 1280),
         ("mobilenet_v3_small", {}, 576), ("mobilenet_v3_large", {}, 960)]


def test_registry_lists_the_required_models() -> None:
    assert {"resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large"} <= set(list_models())


@pytest.mark.parametrize("name,kwargs,channels", CASES)
def test_uniform_forward_shapes(name: str, kwargs: dict, channels: int) -> None:
    model = build_model(name, 8, **kwargs).eval()
    with torch.no_grad():
        f = model.forward_features(torch.randn(2, 3, 64, 64))
        logits = model(torch.randn(2, 3, 64, 64))
    assert f.feature_map.shape == (2, channels, 2, 2)
    assert f.embedding.shape == (2, channels)
    assert f.logits.shape == logits.shape == (2, 8)
    assert torch.allclose(f.embedding, f.feature_map.mean(dim=(2, 3)), atol=1e-5)
    assert model.feature_dim == channels


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "mobilenet_v3_small"])
def test_fold_batchnorm_keeps_the_function_and_leaves_the_model_alone(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, 8)
    with torch.no_grad():  # non-trivial running statistics, or folding would be nearly the identity
        for _ in range(3):
            model(torch.randn(8, 3, 64, 64) * 2 + 1)
    assert_folding_keeps_the_function(model.eval(), torch.randn(4, 3, 64, 64))


def test_unknown_model_suggests_close_names() -> None:
    with pytest.raises(InputError, match="mobilenet_v2"):
        build_model("mobilenetv2", 8)
    with pytest.raises(InputError, match="does not accept"):
        build_model("resnet18", 8, width=0.5)
    with pytest.raises(InputError, match="not found"):
        build_model("resnet18", 8, weights="/nonexistent/weights.pth")


def _card(**kw) -> ModelCard:
    base = dict(arch="mobilenet_v2", width=0.35, num_classes=8, labels=list("ABCDEFGH"), input_size=64,
                mean=[0.5] * 3, std=[0.5] * 3)
    return ModelCard(**(base | kw))


def test_checkpoint_round_trip_is_exact_and_atomic(tmp_path) -> None:
    model = build_model("mobilenet_v2", 8, width=0.35).eval()
    path = save_checkpoint(tmp_path / "ck.pt", model, _card(metrics={"accuracy": 0.5}))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temp file left behind
    loaded, card = load_checkpoint(path, arch="mobilenet_v2", num_classes=8)
    assert card.metrics == {"accuracy": 0.5} and card.labels == list("ABCDEFGH") and card.width == 0.35
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    # weights_only loading: the card is a JSON string, nothing pickled
    payload = torch.load(path, weights_only=True)
    assert isinstance(payload["card"], str)


def test_checkpoint_for_another_architecture_or_class_count_is_a_clear_error(tmp_path) -> None:
    path = save_checkpoint(tmp_path / "ck.pt", build_model("mobilenet_v2", 8, width=0.35), _card())
    with pytest.raises(InputError, match="is a 'mobilenet_v2', expected 'resnet18'"):
        load_checkpoint(path, arch="resnet18")
    with pytest.raises(InputError, match="has 8 classes, expected 7"):
        load_checkpoint(path, num_classes=7)
    foreign = tmp_path / "foreign.pt"
    torch.save(build_model("resnet18", 8).state_dict(), foreign)
    with pytest.raises(InputError, match="not an ssdkd checkpoint"):
        read_checkpoint(foreign)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(InputError, match="not an ssdkd checkpoint"):
        read_checkpoint(junk)
    with pytest.raises(InputError, match="not found"):
        read_checkpoint(tmp_path / "missing.pt")
    # a card that lies about the architecture
    lying = save_checkpoint(tmp_path / "lying.pt", build_model("mobilenet_v2", 8, width=0.35), _card(width=1.0))
    with pytest.raises(InputError, match="do not match"):
        load_checkpoint(lying)


def test_offline_mobilenet_v2_weights_load_and_bn_reestimation_keeps_the_function(shared_weights, sample_root):
    model = build_model("mobilenet_v2", 8, weights=shared_weights)
    assert is_folded_batchnorm(model.body)
    ds = load_labeled_images(sample_root)
    data = ImageDataset(ds.records[:48], 96, (0.5,) * 3, (0.5,) * 3)
    x = torch.stack([data[i][0] for i in range(16)])
    model.eval()
    with torch.no_grad():
        before = model.forward_features(x).embedding
    reestimate_folded_batchnorm(model.body, (b for b, _ in DataLoader(data, batch_size=16)))
    assert not is_folded_batchnorm(model.body)
    with torch.no_grad():
        after_eval = model.forward_features(x).embedding
        model.train()
        after_train = model.forward_features(x).embedding
    # eval function unchanged; train mode (batch statistics) now starts close to the pretrained function
    assert torch.allclose(before, after_eval, atol=1e-3, rtol=1e-3)
    rel = (after_train - before).norm() / before.norm()
    assert rel < 0.35, f"train-mode output drifted {rel:.2f} from the pretrained function"
    # pretrained features separate real lesion images: not a constant embedding
    assert before.std(dim=0).mean() > 1e-2


def test_offline_weights_fine_tune(shared_weights, sample_root) -> None:
    torch.manual_seed(0)
    model = build_model("mobilenet_v2", 8, weights=shared_weights)
    ds = load_labeled_images(sample_root)
    data = ImageDataset(ds.records[::6][:48], 64, (0.5,) * 3, (0.5,) * 3)
    loader = DataLoader(data, batch_size=16)
    reestimate_folded_batchnorm(model.body, (b for b, _ in loader))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = next(iter(DataLoader(data, batch_size=48)))
    losses = []
    model.train()
    for _ in range(8):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all() and losses[-1] < 0.7 * losses[0]
