"""rkd.models: the output contract of every registered network, weights loading, option
checking, gradients and determinism."""
from __future__ import annotations

import copy
import functools
import urllib.error
from dataclasses import dataclass, field

import pytest
import torch
import torchvision

from rkd.models import (
    PretrainedWeightsUnavailableError,
    WeightsFileError,
    build_model,
    model_names,
)
from rkd.registry import UnknownNameError

ALL_TAPS = ("block2", "block3", "block4")


@dataclass(frozen=True)
class Case:
    options: dict = field(default_factory=dict)
    input_shape: tuple[int, ...] = (2, 3, 64, 64)
    embedding_dim: int = 0
    tap_channels: tuple[int, int, int] = (0, 0, 0)
    tap_sides: tuple[int, int, int] = (0, 0, 0)
    num_classes: int | None = None


# Small inputs keep the big networks cheap; the classifiers' probes run at input_size.
CASES = {
    "resnet18": Case({"embedding_dim": 16}, (2, 3, 64, 64), 16, (128, 256, 512), (8, 4, 2)),
    "resnet50": Case({"embedding_dim": 32}, (2, 3, 64, 64), 32, (512, 1024, 2048), (8, 4, 2)),
    "googlenet": Case({"embedding_dim": 32}, (2, 3, 64, 64), 32, (480, 832, 1024), (8, 4, 2)),
    "resnet18_cls": Case({"num_classes": 7, "input_size": 32}, (2, 3, 32, 32), 512, (128, 256, 512), (16, 8, 4), 7),
    "resnet50_cls": Case({"num_classes": 7, "input_size": 16}, (2, 3, 16, 16), 2048, (512, 1024, 2048), (8, 4, 2), 7),
    "resnet101_cls": Case({"num_classes": 7, "input_size": 16}, (2, 3, 16, 16), 2048, (512, 1024, 2048), (8, 4, 2), 7),
    "vgg11_bn_cls": Case({"num_classes": 7, "input_size": 32}, (2, 3, 32, 32), 512, (128, 256, 512), (16, 8, 4), 7),
    "conv4": Case({}, (2, 1, 28, 28), 64, (64, 64, 64), (7, 3, 1)),
    "small_cnn": Case({"num_classes": 5}, (2, 1, 28, 28), 64, (16, 32, 64), (7, 4, 2), 5),
    "small_cnn_wide": Case({"input_size": 8}, (2, 1, 8, 8), 128, (32, 64, 128), (8, 4, 2)),
    "small_cnn_deep": Case({"input_size": 8}, (2, 1, 8, 8), 128, (16, 32, 64), (8, 4, 2)),
}


@functools.cache
def built_with_all_taps(name: str) -> torch.nn.Module:
    """One build per model for the whole module (the big ones take a second each)."""
    torch.manual_seed(0)
    return build_model(name, **CASES[name].options, taps=ALL_TAPS)


def test_every_registered_model_has_a_case():
    assert sorted(CASES) == model_names()


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_follows_the_output_contract(name):
    case = CASES[name]
    model = built_with_all_taps(name)
    outputs = model(torch.randn(case.input_shape))

    expected_keys = {"embedding", *ALL_TAPS} | ({"logits"} if case.num_classes else set())
    assert set(outputs) == expected_keys
    batch = case.input_shape[0]
    assert outputs["embedding"].shape == (batch, case.embedding_dim)
    assert model.embedding_dim == case.embedding_dim
    if case.num_classes:
        assert outputs["logits"].shape == (batch, case.num_classes)
    assert model.taps == ALL_TAPS
    assert model.tap_channels == dict(zip(ALL_TAPS, case.tap_channels))
    for tap, channels, side in zip(ALL_TAPS, case.tap_channels, case.tap_sides):
        assert outputs[tap].shape == (batch, channels, side, side), tap


def test_only_the_requested_taps_are_returned():
    x = torch.randn(2, 1, 28, 28)
    assert set(build_model("small_cnn")(x)) == {"embedding"}
    assert set(build_model("small_cnn", taps=("block3",))(x)) == {"embedding", "block3"}
    assert set(build_model("small_cnn", taps=["block4", "block2"])(x)) == {"embedding", "block2", "block4"}
    # tap_channels always lists every tap the model has
    assert set(build_model("small_cnn", taps=("block3",)).tap_channels) == set(ALL_TAPS)


@pytest.mark.parametrize(
    "name, options, shape",
    [("small_cnn", {}, (4, 1, 28, 28)), ("conv4", {}, (4, 1, 28, 28)),
     ("resnet18", {"embedding_dim": 8}, (4, 3, 32, 32))],
)
def test_normalize_gives_unit_rows(name, options, shape):
    x = torch.randn(shape)
    unit = build_model(name, **options, normalize=True)(x)["embedding"]
    torch.testing.assert_close(unit.norm(dim=1), torch.ones(shape[0]))
    raw = build_model(name, **options, normalize=False)(x)["embedding"]
    assert not torch.allclose(raw.norm(dim=1), torch.ones(shape[0]))


def test_logits_come_from_the_unnormalised_embedding():
    x = torch.randn(4, 1, 28, 28)
    torch.manual_seed(1)
    normalized = build_model("small_cnn", num_classes=3, normalize=True)
    torch.manual_seed(1)
    raw = build_model("small_cnn", num_classes=3, normalize=False)
    out_n, out_r = normalized(x), raw(x)
    torch.testing.assert_close(out_n["logits"], out_r["logits"], rtol=0, atol=0)
    torch.testing.assert_close(out_n["embedding"], torch.nn.functional.normalize(out_r["embedding"], dim=1))
    torch.testing.assert_close(out_r["logits"], raw.classifier(out_r["embedding"]))


def test_small_cnn_without_projection_embeds_the_pooled_feature():
    model = build_model("small_cnn", embedding_dim=None, num_classes=4)
    assert model.projection is None and model.embedding_dim == 64
    out = model(torch.randn(2, 1, 28, 28))
    assert out["embedding"].shape == (2, 64) and out["logits"].shape == (2, 4)


def test_vgg_taps_match_resnet_taps_in_size():
    """Attention transfer and FitNet pair teacher and student blocks of equal size."""
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        resnet = built_with_all_taps("resnet18_cls").eval()(x)
        vgg = built_with_all_taps("vgg11_bn_cls").eval()(x)
    built_with_all_taps("resnet18_cls").train()
    built_with_all_taps("vgg11_bn_cls").train()
    for tap in ALL_TAPS:
        assert resnet[tap].shape == vgg[tap].shape, tap


def test_resnet_classifier_stem_depends_on_input_size():
    small = build_model("resnet18_cls", num_classes=10, input_size=32)
    assert small.trunk.conv1.kernel_size == (3, 3) and small.trunk.conv1.stride == (1, 1)
    assert isinstance(small.trunk.maxpool, torch.nn.Identity)
    large = build_model("resnet18_cls", num_classes=10, input_size=96)
    assert large.trunk.conv1.kernel_size == (7, 7) and large.trunk.conv1.stride == (2, 2)
    assert isinstance(large.trunk.maxpool, torch.nn.MaxPool2d)


def test_conv4_embedding_width_follows_the_input_size():
    assert build_model("conv4").embedding_dim == 64  # Omniglot, 1x28x28
    mini = build_model("conv4", in_channels=3, input_size=84)  # miniImageNet
    assert mini.embedding_dim == 64 * 5 * 5
    assert mini(torch.randn(2, 3, 84, 84))["embedding"].shape == (2, 1600)
    with pytest.raises(ValueError, match="input_size=28"):
        mini(torch.randn(2, 3, 28, 28))


def test_forward_rejects_images_with_the_wrong_channels():
    with pytest.raises(ValueError, match=r"\[N, 1, H, W\]"):
        build_model("small_cnn")(torch.randn(2, 3, 28, 28))


# ------------------------------------------------------------------ weights


def _trunk_matches(model, state, skip=("fc.", "aux1.", "aux2.")) -> None:
    trunk_state = model.trunk.state_dict()
    compared = 0
    for key, value in state.items():
        if key.startswith(skip):
            assert key not in trunk_state
            continue
        torch.testing.assert_close(trunk_state[key], value, rtol=0, atol=0, msg=key)
        compared += 1
    assert compared == len(trunk_state)


def test_weights_path_round_trip(tmp_path):
    torch.manual_seed(123)
    state = torchvision.models.resnet18().state_dict()
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    torch.manual_seed(0)
    model = build_model("resnet18", embedding_dim=8, weights_path=path)
    _trunk_matches(model, state)
    # the file really replaced the random init
    torch.manual_seed(0)
    random = build_model("resnet18", embedding_dim=8)
    assert not torch.equal(random.trunk.conv1.weight, model.trunk.conv1.weight)


def test_weights_path_ignores_the_imagenet_heads(tmp_path):
    """torchvision's GoogLeNet file carries fc and the two auxiliary heads; a ResNet file
    fine-tuned to another class count has an fc of another shape; a file may lack fc."""
    torch.manual_seed(123)
    googlenet_state = torchvision.models.GoogLeNet(aux_logits=True, init_weights=True).state_dict()
    assert any(k.startswith("aux1.") for k in googlenet_state)
    torch.save(googlenet_state, tmp_path / "googlenet.pth")
    built = build_model("googlenet", embedding_dim=8, weights_path=str(tmp_path / "googlenet.pth"))
    _trunk_matches(built, googlenet_state)

    resnet_state = torchvision.models.resnet18(num_classes=5).state_dict()
    torch.save(resnet_state, tmp_path / "fine_tuned.pth")
    _trunk_matches(build_model("resnet18", weights_path=tmp_path / "fine_tuned.pth"), resnet_state)
    without_fc = {k: v for k, v in resnet_state.items() if not k.startswith("fc.")}
    torch.save(without_fc, tmp_path / "no_fc.pth")
    _trunk_matches(build_model("resnet18", weights_path=tmp_path / "no_fc.pth"), without_fc)


class _ArbitraryObject:
    """Stands for anything a pickle may carry besides tensors (code runs on unpickling)."""


def test_weights_file_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "unsafe.pth"
    state = torchvision.models.resnet18().state_dict()
    torch.save({**state, "extra": _ArbitraryObject()}, path)
    with pytest.raises(WeightsFileError, match="weights_only=True"):
        build_model("resnet18", weights_path=path)


def test_weights_file_that_does_not_fit_is_reported(tmp_path):
    state = torchvision.models.resnet18().state_dict()
    renamed = dict(state)
    renamed["layer1.0.conv_one.weight"] = renamed.pop("layer1.0.conv1.weight")
    torch.save(renamed, tmp_path / "renamed.pth")
    with pytest.raises(WeightsFileError, match=r"1 missing key\(s\) \[layer1\.0\.conv1\.weight\].*"
                                               r"1 unexpected key\(s\) \[layer1\.0\.conv_one\.weight\]"):
        build_model("resnet18", weights_path=tmp_path / "renamed.pth")

    reshaped = dict(state, **{"conv1.weight": torch.zeros(64, 3, 3, 3)})
    torch.save(reshaped, tmp_path / "reshaped.pth")
    with pytest.raises(WeightsFileError, match="conv1.weight"):
        build_model("resnet18", weights_path=tmp_path / "reshaped.pth")

    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(WeightsFileError, match="does not hold a state_dict"):
        build_model("resnet18", weights_path=tmp_path / "list.pth")

    with pytest.raises(FileNotFoundError, match="missing.pth"):
        build_model("resnet18", weights_path=tmp_path / "missing.pth")


def test_pretrained_without_network_says_to_use_weights_path(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache: a download is needed

    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(PretrainedWeightsUnavailableError, match=r"weights_path='/path/to/resnet18-f37072fd\.pth'"):
        build_model("resnet18", pretrained=True)
    with pytest.raises(PretrainedWeightsUnavailableError, match="GoogLeNet_Weights.IMAGENET1K_V1"):
        build_model("googlenet", pretrained="imagenet")


def test_pretrained_loads_torchvision_weights(monkeypatch):
    torch.manual_seed(123)
    state = torchvision.models.resnet18().state_dict()
    asked = []

    def fake_get_state_dict(weights, *args, **kwargs):
        asked.append((weights, kwargs))
        return state

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", fake_get_state_dict)
    model = build_model("resnet18", pretrained=True)
    assert asked[0][0] is torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    assert asked[0][1]["weights_only"] is True
    _trunk_matches(model, state)


# ------------------------------------------------------------------ options


@pytest.mark.parametrize(
    "name, options, error, message",
    [
        ("resnet18", {"embeding_dim": 8}, TypeError, "no option 'embeding_dim'.*embedding_dim"),
        ("resnet18", {"embedding_dim": "8"}, TypeError, "'embedding_dim' must be an int"),
        ("small_cnn", {"embedding_dim": True}, TypeError, "'embedding_dim' must be"),
        ("small_cnn", {"normalize": 1}, TypeError, "'normalize' must be a bool"),
        ("small_cnn", {"taps": "block2"}, TypeError, r"'taps' must be a tuple of str, e\.g\. \('block2'"),
        ("small_cnn", {"taps": ("block5",)}, ValueError, "'block5'.*'block2', 'block3', 'block4'"),
        ("small_cnn", {"taps": ("block2", "block2")}, ValueError, "twice"),
        ("small_cnn", {"embedding_dim": 0}, ValueError, "embedding_dim must be a positive"),
        ("small_cnn", {"num_classes": 0}, ValueError, "num_classes must be a positive"),
        ("resnet18_cls", {"num_classes": 10}, TypeError, "needs option.*'input_size'"),
        ("resnet18", {"pretrained": "cifar"}, ValueError, "pretrained must be"),
        ("resnet18", {"pretrained": True, "weights_path": "x.pth"}, ValueError, "not both"),
        ("resnet18", {"weights_path": 3}, TypeError, "'weights_path' must be a str or a path or None"),
        ("conv4", {"input_size": 8}, ValueError, "input_size >= 16"),
        ("vgg11_bn_cls", {"num_classes": 10, "input_size": 16}, ValueError, "too small"),
    ],
)
def test_bad_options_fail_clearly(name, options, error, message):
    with pytest.raises(error, match=message):
        build_model(name, **options)


def test_unknown_model_lists_the_valid_names():
    with pytest.raises(UnknownNameError, match="valid names: .*small_cnn"):
        build_model("resnet19")


# ------------------------------------------------------------------ training behaviour


@pytest.mark.parametrize(
    "name, options, shape",
    [
        ("small_cnn", {"num_classes": 3}, (4, 1, 28, 28)),
        ("conv4", {}, (4, 1, 28, 28)),
        ("resnet18", {"embedding_dim": 8}, (2, 3, 32, 32)),
    ],
)
def test_gradients_reach_every_parameter(name, options, shape):
    model = build_model(name, **options, taps=ALL_TAPS)
    outputs = model(torch.randn(shape))
    loss = sum(value.square().mean() for value in outputs.values())
    loss.backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, param_name
        assert param.grad.abs().sum() > 0, param_name


@pytest.mark.parametrize("name", ["small_cnn", "small_cnn_deep", "small_cnn_wide"])
def test_small_networks_are_a_function_of_the_seed(name):
    x = torch.randn(8, 1, 28, 28)

    def run(seed):
        torch.manual_seed(seed)
        model = build_model(name, num_classes=3, taps=ALL_TAPS)
        return model(x)

    first, second, other = run(7), run(7), run(8)
    for key in first:
        assert torch.equal(first[key], second[key]), key
    assert not torch.equal(first["embedding"], other["embedding"])


def test_copies_and_state_dicts_reproduce_the_model():
    model = build_model("small_cnn", num_classes=3, taps=("block4",))
    x = torch.randn(4, 1, 28, 28)
    model(x)  # one training step's worth of BatchNorm statistics
    model.eval()
    reference = model(x)
    clone = copy.deepcopy(model)
    fresh = build_model("small_cnn", num_classes=3, taps=("block4",))
    fresh.load_state_dict(model.state_dict())
    fresh.eval()
    # torchvision's traced trunk comes out of a deep copy in training mode unless fixed
    assert not clone.trunk.training and not any(m.training for m in clone.modules())
    for other in (clone, fresh):
        out = other(x)
        for key in reference:
            assert torch.equal(out[key], reference[key]), key


def test_eval_mode_uses_running_statistics():
    model = build_model("small_cnn").eval()
    x = torch.randn(6, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model(x[:1])["embedding"], model(x)["embedding"][:1])
    model.train()
    with torch.no_grad():
        assert not torch.allclose(model(x[:2])["embedding"][:1], model(x)["embedding"][:1])
