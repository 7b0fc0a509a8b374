"""Features: the one place where raw lifecycle data becomes per-customer features.

It owns the feature definitions (the Feast repo: entities, sources, views, services), the
point-in-time feature computation for training, and materialisation to the online store.
It must not train models, label outcomes or decide actions, and no other package may
compute a feature itself: they ask this package (or Feast) for feature values.
"""
