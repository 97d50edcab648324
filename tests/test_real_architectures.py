"""inspect and check on real architectures from an old exporter (IR 3, opset 9, weights as graph inputs).

The onnx package ships "light" copies of AlexNet, DenseNet-121, Inception v1/v2, ResNet-50, ShuffleNet,
SqueezeNet, VGG-19 and ZFNet-512: real graphs the project has never been tuned on. Their weights are graph
inputs (fed here by random data), so only structure-dependent facts are asserted.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import onnx
import onnx.backend.test
import onnxruntime as ort
import pytest

from onnxcomp.cli import run

ROOT = Path(__file__).resolve().parents[1]
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



def _with_random_weights(source: Path, target: Path) -> Path:
    """The benchmark's converter (benchmarks/real_architectures.py), loaded from its file: one copy of the code."""
    spec = importlib.util.spec_from_file_location("real_architectures", ROOT / "benchmarks" / "real_architectures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.with_random_weights(source, target)

@pytest.mark.slow
@pytest.mark.parametrize("name", ["light_squeezenet", "light_shufflenet"])
def test_channels_and_quantize_on_real_architectures(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """SqueezeNet (Concat of expand branches) and ShuffleNet (grouped convs, channel shuffle by Reshape/Transpose),
    as an opset-9 exporter wrote them: the passes must rewrite what they can and never crash or emit a model
    onnxruntime refuses."""
    if not (LIGHT / f"{name}.onnx").exists():
        pytest.skip(f"this onnx build ships no {name}")
    model = _with_random_weights(LIGHT / f"{name}.onnx", tmp_path / f"{name}.onnx")
    for command in (["channels", "--ratio", "0.3", "--data", "random:2"], ["quantize", "--data", "random:2"]):
        out = tmp_path / f"{command[0]}.onnx"
        code = run([command[0], str(model), "-o", str(out), *command[1:], "--json"])
        document = json.loads(capsys.readouterr().out)
        assert code == 0, document
        if out.exists():  # nothing removable is reported, not written
            session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
            (output,) = session.get_outputs()
            assert output.shape[-3:] == [1000, 1, 1] or output.shape[-1] == 1000
    summary = document["report"]["summary"]
    assert summary["quantized_kernels"] > 0
