import numpy as np
import pytest

from conftest import TINY_SIZE, synthetic_images
from edgedetect.runtime import Classifier


def test_tflite_matches_keras_and_int8_io_is_dequantized(tiny_keras_model, tiny_tflite):
    import keras

    x, y = synthetic_images(64, TINY_SIZE, seed=5)
    p_keras = keras.saving.load_model(tiny_keras_model).predict(x.astype("float32"), verbose=0).ravel()
    fp32 = Classifier(tiny_tflite["fp32"], batch_size=16)
    int8 = Classifier(tiny_tflite["int8"], batch_size=16)
    assert int8.input_dtype == np.uint8 and int8.output_dtype == np.uint8
    p32, p8 = fp32.predict(x), int8.predict(x)
    np.testing.assert_allclose(p32, p_keras, atol=1e-5)
    assert np.all((p8 >= 0) & (p8 <= 1))
    assert np.mean((p8 >= 0.5) == (p32 >= 0.5)) >= 0.95
    assert np.mean((p8 >= 0.5) == y) >= 0.9


def test_predict_pads_last_batch_without_changing_results(tiny_tflite):
    x, _ = synthetic_images(37, TINY_SIZE, seed=6)
    clf = Classifier(tiny_tflite["fp32"], batch_size=16)
    np.testing.assert_allclose(clf.predict(x), np.concatenate([clf.predict(x[i : i + 1]) for i in range(37)]), atol=1e-6)
