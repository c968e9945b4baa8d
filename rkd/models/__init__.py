"""The networks of the package, built by name with :func:`build_model`.

Every model follows one output contract: ``model(x)`` returns a dict with

* ``"embedding"``: [N, D], L2-normalised when built with ``normalize=True``; for the
  classifiers the last pooled feature, where the paper applies RKD;
* ``"logits"``: [N, C], classifiers (and small networks built with ``num_classes``);
* ``"block2"``, ``"block3"``, ``"block4"``: [N, C, H, W], the feature taps asked for
  with ``taps=(...)``, taken with torchvision's feature extraction (no hooks),

and exposes ``.embedding_dim``, ``.tap_channels`` (channels of every available tap)
and ``.taps`` (the taps it returns).

==================  ===========================================================
name                network
==================  ===========================================================
``resnet18``        embedding network (metric learning), ResNet18 backbone
``resnet50``        embedding network, ResNet50 backbone
``googlenet``       embedding network, GoogLeNet backbone
``resnet18_cls``    classifier (Table 4 student)
``resnet50_cls``    classifier (Table 4 teacher)
``resnet101_cls``   classifier (Table 4 teacher)
``vgg11_bn_cls``    classifier (Table 4 student)
``conv4``           ProtoNet 4-conv embedding (few-shot)
``small_cnn``       CI-scale student for 28x28 / 8x8 single-channel images
``small_cnn_wide``  CI-scale teacher
==================  ===========================================================
"""
from .build import MODELS, build_model, model_names, model_options
from .network import FeatureNetwork
from .weights import PretrainedWeightsUnavailableError, WeightsFileError
from . import small, torchvision_nets  # noqa: F401,E402  (register the builders)

__all__ = [
    "MODELS",
    "build_model",
    "model_names",
    "model_options",
    "FeatureNetwork",
    "PretrainedWeightsUnavailableError",
    "WeightsFileError",
]
