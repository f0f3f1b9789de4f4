"""Preprocessing shared by training and serving (one implementation for both).

- :mod:`cdl_gitlab.features.text`: tokenize, Porter-stem, fixed vocabulary, token-count vectors.
- :mod:`cdl_gitlab.features.image`: decode PNG bytes or arrays to float32 0..1 images.
- :mod:`cdl_gitlab.features.labels`: class names <-> integer labels.
- :mod:`cdl_gitlab.features.state`: the bundle saved into every checkpoint (``features/``).
"""
