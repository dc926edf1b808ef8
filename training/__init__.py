"""Training: the model-spec registry and the resumable Keras 3 training loop (needs the [train] extra)."""

import os

# TensorFlow logs every CPU feature and oneDNN notice at import; keep the CLI readable unless asked.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
