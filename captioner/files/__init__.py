"""Model files and other projects' formats: model directories (checkpoint), Hub downloads (hub),
safe reading of pickled checkpoints (safe_unpickle, tutorial_import) and ONNX export."""
