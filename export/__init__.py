"""Export stage: ONNX and TFLite, each checked against its parent."""
