"""Using trained models: the encode/decode/sample files, TorchScript and ONNX export, import."""
