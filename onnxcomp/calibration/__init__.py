"""Calibration for quantization: streaming per-tensor statistics and range selection.

* :mod:`.stats` -- :class:`TensorStats`, exact min/max and a losslessly mergeable histogram;
* :mod:`.ranges` -- :func:`select_range` (minmax, percentile, entropy, mse) and :func:`quant_params`;
* :mod:`.collect` -- :func:`calibrate`, which streams data through onnxruntime into the statistics;
* :mod:`.search` -- :func:`fewest_meeting`, the galloping/bisection search the accuracy budget uses.
"""

from onnxcomp.calibration.collect import CalibrationResult, calibrate
from onnxcomp.calibration.ranges import Method, QuantParams, QuantRange, quant_params, select_range
from onnxcomp.calibration.search import fewest_meeting
from onnxcomp.calibration.stats import DEFAULT_BINS, TensorStats

__all__ = [
    "DEFAULT_BINS",
    "CalibrationResult",
    "Method",
    "QuantParams",
    "QuantRange",
    "TensorStats",
    "calibrate",
    "fewest_meeting",
    "quant_params",
    "select_range",
]
