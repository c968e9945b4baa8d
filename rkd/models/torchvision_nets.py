"""The paper-scale networks, built on torchvision backbones.

Embedding networks (metric learning, Tables 1-3, Figure 3): ``resnet18``, ``resnet50``,
``googlenet``. The backbone up to its global average pooling, then one Linear to
``embedding_dim``, optionally L2-normalised. The ImageNet classifier (and GoogLeNet's
dropout and auxiliary classifiers) are cut off.

Classification networks (Table 4): ``resnet50_cls`` and ``resnet101_cls`` (teachers),
``resnet18_cls`` and ``vgg11_bn_cls`` (students). ``"embedding"`` is the last pooled
feature (where the paper applies RKD), ``"logits"`` one Linear on it.

Taps, the same names on every network so that FitNet and attention transfer can pair
teacher and student blocks:

=============  ===========  ============  ============
network        ``block2``   ``block3``    ``block4``
=============  ===========  ============  ============
ResNet         ``layer2``   ``layer3``    ``layer4``
GoogLeNet      inception3b  inception4e   inception5b
VGG11-BN       stage 2      stage 3       stage 4
=============  ===========  ============  ============

(the last module of each, i.e. each block's output). A VGG stage is its convolutions
and the max-pool that ends it; the tap is the stage's last ReLU, before the pool, so
that at 32x32 the VGG taps have the spatial sizes of the ResNet ones (16, 8, 4) and
channels 128, 256, 512 like ResNet18's.
"""
from __future__ import annotations

import os

import torchvision
from torch import nn
from torchvision.models import WeightsEnum

from .build import MODELS
from ..outputs import TAP_NAMES
from .network import FeatureNetwork
from .weights import download_imagenet_state_dict, load_backbone_state_dict, read_state_dict

__all__ = [
    "resnet18_embedding",
    "resnet50_embedding",
    "googlenet_embedding",
    "resnet18_classifier",
    "resnet50_classifier",
    "resnet101_classifier",
    "vgg11_bn_classifier",
    "SMALL_INPUT_MAX",
]

RESNET_TAPS = {"block2": "layer2", "block3": "layer3", "block4": "layer4"}
GOOGLENET_TAPS = {"block2": "inception3b", "block3": "inception4e", "block4": "inception5b"}
#: ImageNet heads in torchvision state_dicts that the package cuts off
RESNET_HEAD = ("fc.",)
GOOGLENET_HEAD = ("fc.", "aux1.", "aux2.")

#: Inputs up to this side get the CIFAR stem on ResNet classifiers (see resnet18_classifier).
SMALL_INPUT_MAX = 64

# The embedding networks are probed on 64x64 images (any size works at run time).
_EMBEDDING_PROBE_SIZE = 64


# ----------------------------------------------------------------- embedding networks


def _wants_imagenet(pretrained: bool | str | None) -> bool:
    if pretrained is None or pretrained is False:
        return False
    if pretrained is True or pretrained == "imagenet":
        return True
    raise ValueError(f"pretrained must be False/None (random init) or True/'imagenet', got {pretrained!r}")


def _embedding_network(
    backbone: nn.Module,
    *,
    imagenet_weights: WeightsEnum,
    tap_nodes: dict[str, str],
    head_prefixes: tuple[str, ...],
    embedding_dim: int,
    normalize: bool,
    pretrained: bool | str | None,
    weights_path: str | os.PathLike | None,
    taps: tuple[str, ...],
) -> FeatureNetwork:
    if _wants_imagenet(pretrained):
        state = download_imagenet_state_dict(imagenet_weights)
        load_backbone_state_dict(backbone, state, source=f"torchvision's {imagenet_weights}",
                                 head_prefixes=head_prefixes)
    elif weights_path is not None:
        state = read_state_dict(weights_path)
        load_backbone_state_dict(backbone, state, source=f"weights_path {os.fspath(weights_path)!r}",
                                 head_prefixes=head_prefixes)
    return FeatureNetwork(
        backbone,
        pooled_node="flatten",
        tap_nodes=tap_nodes,
        taps=taps,
        projection_dim=embedding_dim,
        normalize=normalize,
        in_channels=3,
        probe_size=_EMBEDDING_PROBE_SIZE,
    )


def _check_weight_options(embedding_dim: int, pretrained: bool | str | None, weights_path) -> None:
    if embedding_dim < 1:
        raise ValueError(f"embedding_dim must be a positive int, got {embedding_dim}")
    if _wants_imagenet(pretrained) and weights_path is not None:
        raise ValueError("give either pretrained=True (download) or weights_path= (local file), not both")


_EMBEDDING_DOC = """

    Args:
        embedding_dim: width of the Linear after global pooling.
        normalize: L2-normalise the embedding.
        pretrained: ``False``/``None`` random init; ``True``/``"imagenet"`` torchvision's
            ``{weights}`` through its weights API (a download: without internet it
            raises :class:`~rkd.models.weights.PretrainedWeightsUnavailableError`, and
            ``weights_path=`` is the way in).
        weights_path: a local state_dict of torchvision's ``{arch}`` (e.g. the file the
            weights API would download), read with ``torch.load(weights_only=True)``.
            Its classifier keys are ignored; any other mismatch is an error.
        taps: which of ``"block2"``, ``"block3"``, ``"block4"`` to return as well.
    """


def _resnet_embedding(name: str, arch: str, weights_enum: str, embedding_dim: int, summary: str):
    """Register ``name``: torchvision's ``arch`` up to global pooling, then Linear to
    ``embedding_dim`` (default in the builder's signature), its ImageNet weights
    ``weights_enum`` (``IMAGENET1K_V1``)."""
    default_dim = embedding_dim

    def build(
        *,
        embedding_dim: int = default_dim,
        normalize: bool = False,
        pretrained: bool | str | None = False,
        weights_path: str | os.PathLike | None = None,
        taps: tuple[str, ...] = (),
    ) -> FeatureNetwork:
        _check_weight_options(embedding_dim, pretrained, weights_path)
        return _embedding_network(
            getattr(torchvision.models, arch)(weights=None),
            imagenet_weights=getattr(torchvision.models, weights_enum).IMAGENET1K_V1,
            tap_nodes=RESNET_TAPS, head_prefixes=RESNET_HEAD, embedding_dim=embedding_dim, normalize=normalize,
            pretrained=pretrained, weights_path=weights_path, taps=taps,
        )

    build.__name__ = build.__qualname__ = f"{arch}_embedding"
    build.__doc__ = summary + _EMBEDDING_DOC.format(weights=f"{weights_enum}.IMAGENET1K_V1", arch=arch)
    return MODELS.register(name)(build)


resnet18_embedding = _resnet_embedding(
    "resnet18", "resnet18", "ResNet18_Weights", 128,
    """ResNet18 up to global pooling (512), then Linear to ``embedding_dim``: the
    metric-learning student.""",
)

resnet50_embedding = _resnet_embedding(
    "resnet50", "resnet50", "ResNet50_Weights", 512,
    """ResNet50 up to global pooling (2048), then Linear to ``embedding_dim``: the
    metric-learning teacher (512, L2-normalised) and the Table 2/3 students.

    The ImageNet weights are torchvision's ``IMAGENET1K_V1``, the ones of 2019, not
    the later ``V2`` recipe.""",
)


@MODELS.register("googlenet")
def googlenet_embedding(
    *,
    embedding_dim: int = 512,
    normalize: bool = False,
    pretrained: bool | str | None = False,
    weights_path: str | os.PathLike | None = None,
    transform_input: bool | None = None,
    taps: tuple[str, ...] = (),
) -> FeatureNetwork:
    """GoogLeNet (Inception v1) up to global pooling (1024), then Linear to
    ``embedding_dim``: the Table 3 student.

    Built with ``aux_logits=False``: the two auxiliary classifiers exist to train an
    ImageNet classifier and would only add unused parameters here; their keys in
    torchvision's weights file are ignored. The dropout before torchvision's ``fc``
    is cut off with the ``fc``.

    ``transform_input``: torchvision's ImageNet GoogLeNet was ported from TensorFlow and
    expects inputs scaled to [-1, 1]; with ``transform_input=True`` it maps the usual
    ImageNet-normalised input to that scale first. ``None`` (the default) turns it on
    exactly when weights are loaded (``pretrained`` or ``weights_path``) and off for a
    random init, which has no scale to match. Pass it explicitly for a weights file of
    your own GoogLeNet trained without it.
    """
    _check_weight_options(embedding_dim, pretrained, weights_path)
    loads_weights = _wants_imagenet(pretrained) or weights_path is not None
    backbone = torchvision.models.GoogLeNet(
        aux_logits=False,
        transform_input=loads_weights if transform_input is None else transform_input,
        init_weights=not loads_weights,
    )
    return _embedding_network(backbone, imagenet_weights=torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1,
                              tap_nodes=GOOGLENET_TAPS, head_prefixes=GOOGLENET_HEAD, embedding_dim=embedding_dim,
                              normalize=normalize, pretrained=pretrained, weights_path=weights_path, taps=taps)


googlenet_embedding.__doc__ += _EMBEDDING_DOC.format(weights="GoogLeNet_Weights.IMAGENET1K_V1", arch="googlenet")


# ----------------------------------------------------------------- classification networks


def _check_classifier_options(num_classes: int, input_size: int) -> None:
    if num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes}")
    if input_size < 1:
        raise ValueError(f"input_size must be a positive int, got {input_size}")


def _resnet_classifier(resnet: torchvision.models.ResNet, num_classes: int, input_size: int, taps) -> FeatureNetwork:
    _check_classifier_options(num_classes, input_size)
    if input_size <= SMALL_INPUT_MAX:
        # The CIFAR stem: ImageNet's 7x7/2 convolution and 3x3/2 max-pool would shrink a
        # 32x32 image to 8x8 before the first block. Initialised as torchvision
        # initialises every ResNet convolution.
        resnet.conv1 = nn.Conv2d(3, resnet.conv1.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(resnet.conv1.weight, mode="fan_out", nonlinearity="relu")
        resnet.maxpool = nn.Identity()
    return FeatureNetwork(resnet, pooled_node="flatten", tap_nodes=RESNET_TAPS, taps=taps, num_classes=num_classes,
                          in_channels=3, probe_size=input_size)


_RESNET_CLASSIFIER_DOC = """

    Random init (Table 4 trains from scratch). For ``input_size`` <= 64 (CIFAR-100 at
    32, Tiny ImageNet at 64) the stem is the CIFAR one: ``conv1`` becomes a 3x3,
    stride-1, padding-1 convolution (64 channels, no bias) and the 3x3/2 max-pool is
    removed, so ``layer1`` works at the input resolution and ``layer2``-``layer4`` at
    1/2, 1/4, 1/8 of it. Larger inputs keep torchvision's ImageNet stem. Then
    torchvision's global average pooling (``"embedding"``, {width} wide) and one
    Linear to ``num_classes`` (``"logits"``).

    Args:
        num_classes: classes of the dataset (100 for CIFAR-100, 200 for Tiny ImageNet).
        input_size: side of the (square) training images; picks the stem.
        taps: which of ``"block2"``, ``"block3"``, ``"block4"`` to return as well.
    """


@MODELS.register("resnet18_cls")
def resnet18_classifier(*, num_classes: int, input_size: int, taps: tuple[str, ...] = ()) -> FeatureNetwork:
    """ResNet18 classifier: the Tiny ImageNet student of Table 4."""
    return _resnet_classifier(torchvision.models.resnet18(weights=None), num_classes, input_size, taps)


@MODELS.register("resnet50_cls")
def resnet50_classifier(*, num_classes: int, input_size: int, taps: tuple[str, ...] = ()) -> FeatureNetwork:
    """ResNet50 classifier: the CIFAR-100 teacher of Table 4."""
    return _resnet_classifier(torchvision.models.resnet50(weights=None), num_classes, input_size, taps)


@MODELS.register("resnet101_cls")
def resnet101_classifier(*, num_classes: int, input_size: int, taps: tuple[str, ...] = ()) -> FeatureNetwork:
    """ResNet101 classifier: the Tiny ImageNet teacher of Table 4."""
    return _resnet_classifier(torchvision.models.resnet101(weights=None), num_classes, input_size, taps)


resnet18_classifier.__doc__ += _RESNET_CLASSIFIER_DOC.format(width=512)
resnet50_classifier.__doc__ += _RESNET_CLASSIFIER_DOC.format(width=2048)
resnet101_classifier.__doc__ += _RESNET_CLASSIFIER_DOC.format(width=2048)


class _VGGTrunk(nn.Module):
    """torchvision's VGG ``features``, global average pooling, flatten.

    Built from torchvision's own ``make_layers`` and configuration "A" (VGG11) rather
    than ``torchvision.models.vgg11_bn()``, whose ImageNet classifier (a 25088 x 4096
    Linear, 400 MB) would be allocated and initialised only to be cut off. The
    convolutions and BatchNorms are initialised as torchvision's VGG initialises them.
    """

    def __init__(self):
        super().__init__()
        self.features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["A"], batch_norm=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        for module in self.features:
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x):
        return self.flatten(self.avgpool(self.features(x)))


@MODELS.register("vgg11_bn_cls")
def vgg11_bn_classifier(*, num_classes: int, input_size: int, taps: tuple[str, ...] = ()) -> FeatureNetwork:
    """VGG11 with batch norm, classifier: the CIFAR-100 student of Table 4.

    Random init. torchvision's VGG11-BN ``features`` (eight 3x3 convolutions with BN
    and ReLU, five 2x2 max-pools) unchanged, at any ``input_size`` >= 32. The ImageNet
    head (7x7 adaptive pooling, then three Linear layers with dropout, built for
    224x224) is replaced as CIFAR practice does: global average pooling to 512
    (``"embedding"``; at 32x32 the features are already 1x1), then one Linear to
    ``num_classes`` (``"logits"``). No dropout anywhere.

    Taps: the last ReLU of stages 2, 3, 4 (before their max-pool; see the module
    docstring): 128, 256, 512 channels at 1/2, 1/4, 1/8 of the input side.

    Args:
        num_classes: classes of the dataset.
        input_size: side of the (square) training images (used to probe the shapes).
        taps: which of ``"block2"``, ``"block3"``, ``"block4"`` to return as well.
    """
    _check_classifier_options(num_classes, input_size)
    trunk = _VGGTrunk()
    pool_indices = [i for i, layer in enumerate(trunk.features) if isinstance(layer, nn.MaxPool2d)]
    tap_nodes = {tap: f"features.{pool_indices[stage] - 1}" for stage, tap in enumerate(TAP_NAMES, start=1)}
    return FeatureNetwork(trunk, pooled_node="flatten", tap_nodes=tap_nodes, taps=taps, num_classes=num_classes,
                          in_channels=3, probe_size=input_size)
