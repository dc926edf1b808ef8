import json

from setuptools import find_packages, setup

# A pip install carries the default models only (the files models/default.json names, with their metadata) and the
# model card: the other files in models/ (fp32 references, MobileNetV3, the ensemble; 7 MB) stay in the repository,
# for bench and the benchmarks, so that the runtime install stays under 200 MB.
DEFAULTS = json.load(open("models/default.json", encoding="utf-8")).values()
setup(
    name="edgedetect",
    version="0.1.0",
    description="AI-generated vs real image detection on the edge with TFLite/LiteRT",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["edgedetect", "edgedetect.*", "training", "training.*", "conversion", "conversion.*"])
    + ["edgedetect.models"],
    # The shipped models live in the top-level models/ folder and install as package data of edgedetect.models.
    package_dir={"edgedetect.models": "models"},
    package_data={"edgedetect.models": ["default.json", "README.md",
                                        *(name[: -len(".tflite")] + ext for name in DEFAULTS for ext in (".tflite", ".json"))]},
    install_requires=[
        "numpy>=1.23",
        "pillow>=9.1",
        "typer>=0.12,<0.29",  # 0.29 added pydantic (12 MB installed) for nothing this CLI uses
        "rich>=13",
        # LiteRT 2.x wheels add an 18 MB WebGPU accelerator this CLI never uses (59 MB installed vs 34 MB for 1.4),
        # which alone puts the base install over 200 MB; 1.x has no wheels for Python 3.13+, so those take 2.x.
        "ai-edge-litert>=1.2,<2; platform_system != 'Windows' and python_version < '3.13'",
        "ai-edge-litert>=2; platform_system != 'Windows' and python_version >= '3.13'",
    ],
    extras_require={
        "train": ["tensorflow-cpu==2.21.*; platform_system == 'Linux' and platform_machine == 'x86_64'",
                  "tensorflow==2.21.*; platform_system != 'Linux' or platform_machine != 'x86_64'",
                  "keras>=3.5", "kagglehub>=0.3"],
        # Pictures (--plot, --plots) only: matplotlib and fontTools are ~65 MB, a fifth of the old base install.
        "plot": ["matplotlib>=3.6"],
        # selenium drives Chromium in the browser test
        "dev": ["pytest>=8", "hypothesis>=6", "matplotlib>=3.6", "selenium>=4.11"],
    },
    entry_points={"console_scripts": ["edgedetect=edgedetect.cli:main"]},
)
