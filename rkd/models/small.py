"""The small networks: ProtoNet's ``conv4`` and the CI-scale ``small_cnn`` /
``small_cnn_wide`` pair for 28x28 (Fashion-MNIST) and 8x8 (scikit-learn digits) images.

Both are plain stacks of 3x3 convolution, batch norm and ReLU, without dropout (so a
run is a function of its seed), cut into feature extractors by
:class:`~rkd.models.network.FeatureNetwork` like the torchvision networks.
"""
from __future__ import annotations

import os

from torch import nn

from .build import MODELS
from ..outputs import TAP_NAMES
from .network import FeatureNetwork
from .weights import load_backbone_state_dict, read_state_dict

__all__ = ["SmallConvTrunk", "Conv4Trunk", "small_cnn", "small_cnn_deep", "small_cnn_wide", "conv4"]


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class SmallConvTrunk(nn.Module):
    """stem -> block2 -> block3 -> block4 -> global average pooling -> flatten.

    The stem is one conv-BN-ReLU to ``widths[0]`` channels; block k is
    ``convs_per_block`` conv-BN-ReLU layers, the first strided, to ``widths[k-2]``
    channels. Resolutions (side of the feature maps):

    ===========  ======  ==========  ==========  ==========
    input        stem    block2      block3      block4
    ===========  ======  ==========  ==========  ==========
    28 (>= 16)   14      7           4           2
    8 (< 16)     8       8           4           2
    ===========  ======  ==========  ==========  ==========

    i.e. inputs of side >= 16 are halved by the stem and by block2, smaller ones are
    not; blocks 3 and 4 always halve. Both layouts end at 2x2, so attention maps still
    have a spatial extent, and nothing runs at full 28x28 resolution with more than
    one input channel: that is what keeps a student step at a few milliseconds.
    """

    def __init__(self, in_channels: int, input_size: int, widths: tuple[int, int, int], convs_per_block: int):
        super().__init__()
        early_stride = 2 if input_size >= 16 else 1
        stem_width = widths[0]
        self.stem = nn.Sequential(*_conv_bn_relu(in_channels, stem_width, stride=early_stride))
        blocks = []
        previous = stem_width
        for width, stride in zip(widths, (early_stride, 2, 2)):
            layers = _conv_bn_relu(previous, width, stride=stride)
            for _ in range(convs_per_block - 1):
                layers += _conv_bn_relu(width, width)
            blocks.append(nn.Sequential(*layers))
            previous = width
        self.block2, self.block3, self.block4 = blocks
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)

    def forward(self, x):
        x = self.block4(self.block3(self.block2(self.stem(x))))
        return self.flatten(self.pool(x))


def _small_network(
    widths: tuple[int, int, int],
    convs_per_block: int,
    *,
    in_channels: int,
    input_size: int,
    embedding_dim: int | None,
    normalize: bool,
    num_classes: int | None,
    taps: tuple[str, ...],
    weights_path: str | os.PathLike | None = None,
) -> FeatureNetwork:
    for option, value in (("in_channels", in_channels), ("input_size", input_size)):
        if value < 1:
            raise ValueError(f"{option} must be a positive int, got {value}")
    if embedding_dim is not None and embedding_dim < 1:
        raise ValueError(f"embedding_dim must be a positive int or None, got {embedding_dim}")
    trunk = SmallConvTrunk(in_channels, input_size, widths, convs_per_block)
    if weights_path is not None:
        # the ci "ImageNet weights": a trunk pretrained on the glyph corpus, read the way
        # the paper-scale networks read a local weights file (safe load, every key checked)
        load_backbone_state_dict(trunk, read_state_dict(weights_path),
                                 source=f"weights_path {os.fspath(weights_path)!r}")
    return FeatureNetwork(trunk, pooled_node="flatten", tap_nodes={tap: tap for tap in TAP_NAMES}, taps=taps,
                          projection_dim=embedding_dim, num_classes=num_classes, normalize=normalize,
                          in_channels=in_channels, probe_size=input_size)


_SMALL_ARGS_DOC = """

    Args:
        in_channels: channels of the input images (1 for Fashion-MNIST and digits).
        input_size: side of the (square) input images, 28 or 8; picks the strides.
        embedding_dim: width of the Linear after pooling; ``None`` for no Linear, the
            embedding then being the pooled feature ({pooled} wide), as in the
            classifiers.
        normalize: L2-normalise the embedding.
        num_classes: when given, also return ``"logits"`` from a Linear on the
            (unnormalised) embedding.
        taps: which of ``"block2"``, ``"block3"``, ``"block4"`` to return as well.
        weights_path: a state_dict of the trunk (:class:`SmallConvTrunk`) to start
            from, e.g. one pretrained on the glyph corpus (the ci stand-in for ImageNet
            weights); read safely, every key checked.
    """


def _small_builder(name: str, widths: tuple[int, int, int], convs_per_block: int, embedding_dim: int,
                   summary: str):
    """Register ``name``: :class:`SmallConvTrunk` of ``widths`` and ``convs_per_block``,
    whose builder takes the same keywords as every other small CNN (defaults in its
    signature, documented by ``summary`` and the shared Args)."""
    default_dim = embedding_dim

    def build(
        *,
        in_channels: int = 1,
        input_size: int = 28,
        embedding_dim: int | None = default_dim,
        normalize: bool = False,
        num_classes: int | None = None,
        taps: tuple[str, ...] = (),
        weights_path: str | os.PathLike | None = None,
    ) -> FeatureNetwork:
        return _small_network(widths, convs_per_block, in_channels=in_channels, input_size=input_size,
                              embedding_dim=embedding_dim, normalize=normalize, num_classes=num_classes, taps=taps,
                              weights_path=weights_path)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = summary + _SMALL_ARGS_DOC.format(pooled=widths[-1])
    return MODELS.register(name)(build)


small_cnn = _small_builder(
    "small_cnn", (16, 32, 64), 1, 64,
    """The CI-scale student: :class:`SmallConvTrunk` with widths 16, 32, 64 and one
    convolution per block (four conv layers in all), then Linear to ``embedding_dim``.""",
)

small_cnn_wide = _small_builder(
    "small_cnn_wide", (32, 64, 128), 2, 128,
    """The CI-scale teacher: :class:`SmallConvTrunk` with widths 32, 64, 128 and two
    convolutions per block (seven conv layers), twice as wide and nearly twice as deep
    as ``small_cnn`` (313k parameters against 30k), then Linear to ``embedding_dim``.""",
)

small_cnn_deep = _small_builder(
    "small_cnn_deep", (16, 32, 64), 2, 128,
    """The CI-scale teacher of ``small_cnn``, in the ResNet50 : ResNet18 ratio: :class:`SmallConvTrunk`
    with the student's widths 16, 32, 64 and two convolutions per block (seven conv layers
    against four): 74k trunk parameters against 26k (2.9x) and 0.70M multiply-adds per 28x28
    image against 0.29M (2.4x), where ResNet50 has 2.2x ResNet18's parameters and 2.3x its
    FLOPs. Then Linear to ``embedding_dim``.""",
)


class Conv4Trunk(nn.Module):
    """Snell et al.'s embedding: four blocks of conv3x3 (``hidden_channels``, padding
    1) - BN - ReLU - max-pool 2x2, then flatten."""

    def __init__(self, in_channels: int, hidden_channels: int):
        super().__init__()
        blocks = []
        previous = in_channels
        for _ in range(4):
            blocks.append(nn.Sequential(*_conv_bn_relu(previous, hidden_channels), nn.MaxPool2d(2)))
            previous = hidden_channels
        self.block1, self.block2, self.block3, self.block4 = blocks
        self.flatten = nn.Flatten(1)

    def forward(self, x):
        return self.flatten(self.block4(self.block3(self.block2(self.block1(x)))))


@MODELS.register("conv4")
def conv4(
    *,
    in_channels: int = 1,
    input_size: int = 28,
    hidden_channels: int = 64,
    normalize: bool = False,
    taps: tuple[str, ...] = (),
) -> FeatureNetwork:
    """ProtoNet's 4-conv embedding (Snell et al. 2017), used by the few-shot tables.

    The embedding is the flattened output of the fourth block, no Linear, so its width
    follows from the input size: 64 for Omniglot (1x28x28: 28 -> 14 -> 7 -> 3 -> 1) and
    1600 for miniImageNet (3x84x84: 84 -> 42 -> 21 -> 10 -> 5, 64 x 5 x 5). It is
    measured with one forward at build time, and ``forward`` then accepts only
    ``input_size`` x ``input_size`` images.

    Args:
        in_channels: 1 for Omniglot, 3 for miniImageNet.
        input_size: 28 for Omniglot, 84 for miniImageNet.
        hidden_channels: channels of every block (64 in the paper).
        normalize: L2-normalise the embedding (ProtoNets do not).
        taps: which of ``"block2"``, ``"block3"``, ``"block4"`` (the blocks' outputs,
            after their max-pool) to return as well.
    """
    sizes = (("in_channels", in_channels), ("input_size", input_size), ("hidden_channels", hidden_channels))
    for option, value in sizes:
        if value < 1:
            raise ValueError(f"{option} must be a positive int, got {value}")
    if input_size < 16:
        raise ValueError(f"conv4 halves its input four times and needs input_size >= 16, got {input_size}")
    return FeatureNetwork(Conv4Trunk(in_channels, hidden_channels), pooled_node="flatten",
                          tap_nodes={tap: tap for tap in TAP_NAMES}, taps=taps, normalize=normalize,
                          in_channels=in_channels, probe_size=input_size, fixed_input_size=input_size)
