"""Datasets, loaders, fetchers and the synthetic generator."""

from .dataset import Dataset, ItemFeature

__all__ = ["Dataset", "ItemFeature"]
