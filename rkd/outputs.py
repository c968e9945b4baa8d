"""The model output contract, named once: every network of rkd returns a dict with the
embedding under :data:`EMBEDDING`, a classifier's logits under :data:`LOGITS`, and the
feature maps it was asked to tap under :data:`TAP_NAMES` (the outputs of blocks 2-4);
the loss terms read them by these names."""

__all__ = ["EMBEDDING", "LOGITS", "TAP_NAMES"]

#: the embedding a metric or relational loss reads
EMBEDDING = "embedding"
#: a classifier's logits (before the softmax)
LOGITS = "logits"
#: the feature maps a network can tap, in order (FitNet and attention read them)
TAP_NAMES = ("block2", "block3", "block4")
