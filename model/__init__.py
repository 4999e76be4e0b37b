"""Model artefacts (manifest, our ONNX files, model cards) and the offline tooling above the core.

Installed as ``emotion.model``. The runtime reads only this package's data files (through
``emotion.core.manifest``); the modules here (fetch, evaluate, bench, training) import the core, never the reverse.
"""
