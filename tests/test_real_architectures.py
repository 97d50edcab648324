"""inspect and check on real architectures from an old exporter (IR 3, opset 9, weights as graph inputs).

The onnx package ships "light" copies of AlexNet, DenseNet-121, Inception v1/v2, ResNet-50, ShuffleNet,
SqueezeNet, VGG-19 and ZFNet-512: real graphs the project has never been tuned on. Their weights are graph
inputs (fed here by random data), so only structure-dependent facts are asserted.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx.backend.test
import pytest

from onnxcomp.cli import run

LIGHT = Path(onnx.backend.test.__file__).parent / "data" / "light"
MODELS = sorted(LIGHT.glob("*.onnx"))
# Published MAC counts (at batch 1, 224x224) give a sanity range; exact values depend on the variant.
EXPECTED_GMACS = {"light_resnet50": (3.8, 4.2), "light_vgg19": (19.0, 20.0), "light_bvlc_alexnet": (0.6, 0.75)}


@pytest.mark.slow
@pytest.mark.skipif(not MODELS, reason="this onnx build ships no light models")
@pytest.mark.parametrize("model", MODELS, ids=lambda p: p.stem)
def test_inspect_and_self_check_on_real_architectures(model: Path, capsys: pytest.CaptureFixture[str]):
    assert run(["inspect", str(model), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["ir_version"] == 3 and summary["default_opset"] >= 6
    assert summary["macs_known"] == 1.0 and summary["macs_total"] > 1e8
    if model.stem in EXPECTED_GMACS:
        low, high = EXPECTED_GMACS[model.stem]
        assert low <= summary["macs_total"] / 1e9 <= high
    # Same model on both sides: must pass the default gates whatever the output layout ([N,1000] or
    # [N,1000,1,1]), with top-1 measured on the class axis.
    code = run(["check", str(model), str(model), "--data", "random:1", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report["failures"]
    (output,) = report["providers"][0]["parity"]["outputs"]
    assert output["metrics"]["max_abs"] == 0 and output["metrics"]["top1"] == 1.0
