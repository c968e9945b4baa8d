"""Pictures of a dataset: a grid of a few images per class (the book's pages show them)."""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["sample_grid"]


def sample_grid(dataset, classes: int = 8, per_class: int = 6, *, title: str | None = None):
    """A matplotlib Figure of ``per_class`` images of each of the first ``classes``
    classes of ``dataset`` (one row per class, labelled with its class name).

    Works with any dataset that has ``.targets`` and ``.classes`` and returns
    ``[1, H, W]`` tensors or 2-D arrays (the glyph datasets, Fashion-MNIST, digits).
    Images are shown untransformed when the dataset has ``float_images``.
    """
    import matplotlib.pyplot as plt

    targets = torch.as_tensor(dataset.targets)
    shown = [c for c in range(int(targets.max()) + 1) if bool((targets == c).any())][:classes]
    figure, axes = plt.subplots(len(shown), per_class, figsize=(per_class * 0.8 + 1.6, len(shown) * 0.8),
                                squeeze=False)
    for row, class_id in zip(axes, shown):
        indices = torch.nonzero(targets == class_id).flatten()[:per_class].tolist()
        for column, axis in enumerate(row):
            axis.set_xticks([])
            axis.set_yticks([])
            for spine in axis.spines.values():
                spine.set_visible(False)
            if column >= len(indices):
                continue
            if hasattr(dataset, "float_images"):
                image = dataset.float_images([indices[column]])[0]
            else:
                image = dataset[indices[column]][0]
            image = torch.as_tensor(np.asarray(image)).squeeze()
            axis.imshow(image.numpy(), cmap="gray", vmin=0, vmax=1 if image.is_floating_point() else 255)
        row[0].set_ylabel(str(dataset.classes[class_id]), rotation=0, ha="right", va="center", fontsize=7)
    figure.suptitle(title if title is not None else
                    f"{getattr(dataset, 'name', type(dataset).__name__)}"
                    + (f" (stands in for {dataset.stands_in_for})" if getattr(dataset, "stands_in_for", "") else "")
                    + f", split {getattr(dataset, 'split', '?')!r}", fontsize=9)
    figure.tight_layout()
    return figure
