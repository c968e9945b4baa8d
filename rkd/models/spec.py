"""A network as an experiment names it: a registry name and its options, as data."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from torch import nn

from .build import build_model

__all__ = ["ModelSpec"]


@dataclass(frozen=True)
class ModelSpec:
    """``build_model(name, **options, **overrides)`` as a value that can be compared,
    hashed and shown in a protocol table."""

    name: str
    options: tuple[tuple[str, Any], ...] = ()

    def build(self, **overrides: Any) -> nn.Module:
        return build_model(self.name, **{**dict(self.options), **overrides})

    def without_pretrained(self) -> ModelSpec:
        """The same network from a random initialisation (a dry run must not download)."""
        return replace(self, options=tuple((k, False if k == "pretrained" else v) for k, v in self.options))

    @property
    def pretrained(self) -> bool:
        return bool(dict(self.options).get("pretrained", False))
