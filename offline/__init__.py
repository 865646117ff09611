"""Workstation side (PyTorch): build and train HRSNNs, quantize them to int8 bundles, and
simulate the quantized model with an independent integer reference."""
