"""Conversion: Keras/SavedModel -> .tflite in fp32, fp16, dynamic-range and int8 (needs the [train] extra)."""

import os

# TensorFlow logs every CPU feature and oneDNN notice at import; keep the CLI readable unless asked.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
