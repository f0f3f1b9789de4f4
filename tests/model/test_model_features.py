"""cdl_gitlab.features: text counts over a fixed stem vocabulary, image decoding, labels, state."""

from __future__ import annotations

import numpy as np
import pytest
from model_fixtures import png_bytes

from cdl_gitlab.features.image import ImageDecoder
from cdl_gitlab.features.labels import LabelEncoder
from cdl_gitlab.features.state import FeatureState
from cdl_gitlab.features.text import TextVectorizer, stems, tokenize


def test_tokenize_lowercases_and_stems() -> None:
    assert tokenize("Markets RALLIED, investors' 2nd-best day!") == [
        "markets",
        "rallied",
        "investors",
        "2nd",
        "best",
        "day",
    ]
    assert stems("Running runners ran") == ["run", "runner", "ran"]


def test_vocabulary_is_top_n_stems_with_stable_ties() -> None:
    docs = ["market markets market bank", "bank goal", b"zebra goal market"]
    vectorizer = TextVectorizer.fit(docs, max_features=3)
    assert vectorizer.vocabulary == ["market", "bank", "goal"]
    counts = vectorizer.transform(["Markets and the bank", "nothing known"])
    assert counts.dtype == np.float32
    assert counts.tolist() == [[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]


def test_text_state_round_trips(tmp_path) -> None:
    vectorizer = TextVectorizer.fit(["alpha beta beta", "gamma"], max_features=10)
    path = vectorizer.save(tmp_path / "vocab.json")
    again = TextVectorizer.load(path)
    assert again.vocabulary == vectorizer.vocabulary
    assert np.array_equal(again.transform(["beta alpha"]), vectorizer.transform(["beta alpha"]))


def test_latin1_bytes_decode() -> None:
    vectorizer = TextVectorizer(["caf\u00e9"])
    assert vectorizer.transform(["caf\u00e9".encode("latin-1")]).tolist() == [[1.0]]


def test_image_decoder_accepts_png_arrays_and_lists() -> None:
    pixels = np.zeros((28, 28), dtype=np.uint8)
    pixels[0, :] = 255
    decoder = ImageDecoder()
    from_png = decoder.decode(png_bytes(pixels))
    assert from_png.dtype == np.float32 and from_png.shape == (28, 28)
    assert from_png[0, 0] == pytest.approx(1.0) and from_png[5, 5] == 0.0
    assert np.allclose(decoder.decode(pixels.tolist()), from_png)
    assert np.allclose(decoder.decode(pixels.astype(np.float32) / 255), from_png)
    assert decoder.decode(pixels.reshape(-1)).shape == (28, 28)
    assert decoder.transform([pixels, png_bytes(pixels)]).shape == (2, 28, 28)


def test_image_decoder_resizes_png_and_rejects_bad_input() -> None:
    big = png_bytes(np.full((56, 56), 128, dtype=np.uint8))
    assert ImageDecoder().decode(big).shape == (28, 28)
    with pytest.raises(ValueError, match="28x28"):
        ImageDecoder().decode(np.zeros((10, 10)))
    with pytest.raises(ValueError, match="not a decodable image"):
        ImageDecoder().decode(b"not a png")
    with pytest.raises(ValueError, match="NaN"):
        ImageDecoder().decode(np.full((28, 28), np.nan))


def test_label_encoder() -> None:
    encoder = LabelEncoder.fit(["b", "a", "b"])
    assert encoder.classes == ["a", "b"]
    assert encoder.encode(["b", "a"]).tolist() == [1, 0]
    assert encoder.decode([0, 1]) == ["a", "b"]
    configured = LabelEncoder.fit(["x"], classes=["y", "x"])
    assert configured.classes == ["y", "x"]
    with pytest.raises(ValueError, match="not among the configured classes"):
        LabelEncoder.fit(["z"], classes=["x", "y"])
    with pytest.raises(ValueError, match="unknown label"):
        encoder.encode(["c"])
    with pytest.raises(ValueError, match="at least two"):
        LabelEncoder(["only"])


def test_feature_state_round_trips(tmp_path) -> None:
    state = FeatureState(ImageDecoder(14, 14), LabelEncoder(["a", "b"]))
    state.save(tmp_path)
    loaded = FeatureState.load(tmp_path)
    assert loaded.task == "image" and loaded.classes == ["a", "b"]
    assert loaded.transform.input_shape == (14, 14)
    with pytest.raises(FileNotFoundError, match="features"):
        FeatureState.load(tmp_path / "missing")


def test_transform_stems_counts_known_stems_and_skips_the_others() -> None:
    vectorizer = TextVectorizer(["goal", "match", "vote"])
    matrix = vectorizer.transform_stems([["goal", "zzz", "goal", "vote"], [], ["zzz"]])
    assert matrix.dtype == np.float32
    assert matrix.tolist() == [[2.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    texts = ["Goals, goals and a vote", "no known word"]
    stem_lists = [stems(text) for text in texts]
    assert (vectorizer.transform(texts) == vectorizer.transform_stems(stem_lists)).all()
