"""The emoflow feature store: layout, schemas, fingerprints, commit protocol, readers, views."""

from store.errors import EmoflowError, StoreConflictError, StoreError
from store.featureset import ClipFeatures, FeatureSet, IndexRow
from store.featurestore import FeatureStore
from store.views import AlignedView, open_view, write_view

__all__ = [
    "AlignedView",
    "ClipFeatures",
    "EmoflowError",
    "FeatureSet",
    "FeatureStore",
    "IndexRow",
    "StoreConflictError",
    "StoreError",
    "open_view",
    "write_view",
]
