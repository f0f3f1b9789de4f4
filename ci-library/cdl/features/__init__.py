"""Preprocessing shared by training and serving (one implementation for both).

- :mod:`cdl.features.text`: tokenize, Porter-stem, fixed vocabulary, token-count vectors.
- :mod:`cdl.features.image`: decode PNG bytes or arrays to float32 0..1 images.
- :mod:`cdl.features.labels`: class names <-> integer labels.
- :mod:`cdl.features.state`: the bundle saved into every checkpoint (``features/``).
"""
