"""Calibration for quantization: streaming per-tensor statistics and range selection."""
