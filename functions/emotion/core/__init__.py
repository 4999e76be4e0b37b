"""The core engine: decode → detect (YuNet) → align → classify (ONNX) → result.

No HTTP, AWS or CLI imports live here; adapters call :func:`emotion.core.pipeline.analyze`.
"""
