""":class:`FeatureNetwork`: every model of the package, a traced trunk plus small heads.

The trunk (a torchvision network or one of the small networks of this package) is cut
into a feature extractor with torchvision's
:func:`~torchvision.models.feature_extraction.create_feature_extractor`: it returns
the globally pooled feature and the tap nodes (``"block2"``, ``"block3"``,
``"block4"``). No forward hooks: the extractor is an FX graph of the trunk, pruned
after the pooled node, so heads the trunk carried (torchvision's ImageNet ``fc``,
GoogLeNet's dropout and auxiliary heads) are not part of the model at all.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor


__all__ = ["FeatureNetwork"]

#: The tap names of the package, shallow to deep (ResNet ``layer2``-``layer4`` and
#: their counterparts in the other networks).

_POOLED = "pooled"


class FeatureNetwork(nn.Module):
    """A trunk cut into a feature extractor, an optional projection to the embedding,
    an optional classifier.

    ``forward(x)`` returns ``{"embedding": [N, D], "logits": [N, C] (classifiers only),
    <tap>: [N, C_tap, H, W] for each tap in .taps}``:

    * the embedding is ``projection(pooled)`` when the model has a projection (the
      metric-learning networks: one Linear to ``embedding_dim``), else the pooled
      feature itself (the classifiers: the paper applies RKD to the last pooling
      layer); it is L2-normalised along dim 1 when ``normalize`` is set;
    * the logits are ``classifier(embedding)``, computed from the embedding *before*
      L2 normalisation (a softmax over logits of a unit vector would be too flat).

    Args:
        trunk: the network to cut; its graph must contain ``pooled_node`` and the nodes
            of ``tap_nodes``. Load weights into it before it is passed here.
        pooled_node: the node of the globally pooled, flattened feature [N, F].
        tap_nodes: tap name -> trunk node (a module path; a module name resolves to the
            module's output, as torchvision's feature extraction does).
        taps: the taps ``forward`` returns (a subset of ``tap_nodes``).
        projection_dim: width of the Linear after pooling; ``None`` for none.
        num_classes: width of the classifier; ``None`` for none.
        normalize: L2-normalise the returned embedding.
        in_channels: channels the input must have (checked in ``forward``).
        probe_size: side of the all-zero image used once, at build time, to measure the
            feature width and the tap channels.
        fixed_input_size: when set, ``forward`` accepts only this spatial size (for
            networks whose embedding width depends on it, such as ``conv4``).
    """

    def __init__(
        self,
        trunk: nn.Module,
        *,
        pooled_node: str,
        tap_nodes: Mapping[str, str],
        taps: Sequence[str] = (),
        projection_dim: int | None = None,
        num_classes: int | None = None,
        normalize: bool = False,
        in_channels: int = 3,
        probe_size: int = 64,
        fixed_input_size: int | None = None,
    ):
        super().__init__()
        taps = tuple(taps)
        unknown = [tap for tap in taps if tap not in tap_nodes]
        if unknown:
            raise ValueError(
                f"unknown tap(s) {', '.join(map(repr, unknown))}; this model has taps {', '.join(map(repr, tap_nodes))}"
            )
        if len(set(taps)) != len(taps):
            raise ValueError(f"taps {taps!r} names a tap twice")
        for option, value in (("projection_dim", projection_dim), ("num_classes", num_classes)):
            if value is not None and value < 1:
                raise ValueError(f"{option} must be a positive int, got {value}")

        # Every tap precedes the pooled node, so tracing with all of them costs nothing
        # at run time; forward hands back only the ones asked for.
        return_nodes = {pooled_node: _POOLED, **{node: tap for tap, node in tap_nodes.items()}}
        self.trunk = create_feature_extractor(trunk, return_nodes=return_nodes)
        self.in_channels = in_channels
        self.fixed_input_size = fixed_input_size

        shapes = self._probe(probe_size)
        feature_dim = shapes[_POOLED][1]
        #: channels of every tap this model can return
        self.tap_channels: dict[str, int] = {tap: shapes[tap][1] for tap in tap_nodes}
        #: the taps forward returns
        self.taps: tuple[str, ...] = taps
        self.feature_dim = feature_dim
        self.projection = nn.Linear(feature_dim, projection_dim) if projection_dim is not None else None
        self.embedding_dim: int = projection_dim if projection_dim is not None else feature_dim
        self.classifier = nn.Linear(self.embedding_dim, num_classes) if num_classes is not None else None
        self.num_classes = num_classes
        self.normalize = normalize

    @torch.no_grad()
    def _probe(self, size: int) -> dict[str, torch.Size]:
        """Shapes of the trunk's outputs on one all-zero image (eval mode, so BatchNorm
        takes a batch of one and its running statistics stay untouched; zeros, so the
        global random state is not consumed and builds stay reproducible)."""
        was_training = self.trunk.training
        self.trunk.eval()
        try:
            outputs = self.trunk(torch.zeros(1, self.in_channels, size, size))
        except RuntimeError as error:
            raise ValueError(f"input size {size}x{size} is too small for this network: {error}") from error
        finally:
            self.trunk.train(was_training)
        return {name: value.shape for name, value in outputs.items()}

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected images [N, {self.in_channels}, H, W], got a tensor of shape {tuple(x.shape)}"
            )
        size = self.fixed_input_size
        if size is not None and tuple(x.shape[-2:]) != (size, size):
            raise ValueError(
                f"this model was built for {size}x{size} inputs (its embedding width depends on it), "
                f"got {x.shape[-2]}x{x.shape[-1]}; build it with input_size={x.shape[-1]}"
            )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The outputs of images ``x`` [N, in_channels, H, W] under the output contract
        (see the class): ``"embedding"``, ``"logits"`` for a classifier, one entry per tap
        of ``taps``.

        Raises:
            ValueError: ``x`` not 4-D with ``in_channels`` channels, or not of the
                ``fixed_input_size`` the model was built for.
        """
        self._check_input(x)
        features = self.trunk(x)
        embedding = features[_POOLED]
        if self.projection is not None:
            embedding = self.projection(embedding)
        outputs = {"embedding": F.normalize(embedding, dim=1) if self.normalize else embedding}
        if self.classifier is not None:
            outputs["logits"] = self.classifier(embedding)
        for tap in self.taps:
            outputs[tap] = features[tap]
        return outputs

    def __deepcopy__(self, memo: dict) -> FeatureNetwork:
        """The default deep copy, then every module's train/eval flag restored.

        torchvision's traced trunk (a ``DualGraphModule``) re-runs its constructor when
        copied, and that puts the copy in training mode: a copy of a model in eval mode
        (a frozen teacher, the next generation of a self-distillation) would otherwise
        silently normalise with batch statistics.
        """
        clone = self.__class__.__new__(self.__class__)
        memo[id(self)] = clone
        clone.__dict__.update(copy.deepcopy(self.__dict__, memo))
        clone.trunk.train(self.trunk.training)  # swaps in the matching graph
        for original, copied in zip(self.modules(), clone.modules()):
            copied.training = original.training
        return clone

    def extra_repr(self) -> str:
        return (
            f"embedding_dim={self.embedding_dim}, normalize={self.normalize}, "
            f"num_classes={self.num_classes}, taps={self.taps}"
        )
