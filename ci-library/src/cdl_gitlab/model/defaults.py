"""Hyperparameter names and defaults shared by the PyTorch and Keras networks."""

TEXT_WIDTHS = ("hidden1", "hidden2", "hidden3", "hidden4")
DEFAULT_TEXT_WIDTHS = (512, 256, 128, 64)
DEFAULT_VOCAB_SIZE = 10_000
DEFAULT_IMAGE_SIZE = 28
