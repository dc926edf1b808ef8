"""edgedetect: an AI-generated vs real image detector that runs on a TFLite/LiteRT interpreter alone.

The runtime (this package) needs numpy, Pillow and an interpreter; it never imports TensorFlow.
"""

__version__ = "0.1.0"

LABELS = ("REAL", "FAKE")  # index 1, FAKE (AI-generated), is the positive class: the model outputs p_fake.

