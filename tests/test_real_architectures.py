"""inspect and check on real architectures from an old exporter (IR 3, opset 9, weights as graph inputs).

The onnx package ships "light" copies of AlexNet, DenseNet-121, Inception v1/v2, ResNet-50, ShuffleNet,
SqueezeNet, VGG-19 and ZFNet-512: real graphs the project has never been tuned on. Their weights are graph
inputs (fed here by random data), so only structure-dependent facts are asserted.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnx.backend.test
import onnxruntime as ort
import pytest
from onnx import numpy_helper

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


def _with_random_weights(source: Path, target: Path) -> Path:
    """The light model with its ConstantOfShape-made weights replaced by seeded random initializers.

    BatchNorm variances (Caffe2's ``_var``/``_riv`` names) are kept positive and scales near 1, so the network
    computes something finite; the graph itself is the old exporter's, untouched.
    """
    rng = np.random.default_rng(0)
    model = onnx.load(source)
    graph = model.graph
    shapes = {i.name: numpy_helper.to_array(i).astype(int).tolist() for i in graph.initializer}
    nodes, weights = [], []
    for node in graph.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in shapes:
            dims, name = shapes[node.input[0]], node.output[0]
            array = rng.standard_normal(dims) / np.sqrt(max(int(np.prod(dims[1:])), 1))
            if name.endswith(("_s_0", "_scale_0")):
                array = 1.0 + 0.1 * rng.standard_normal(dims)
            if "var" in name or "riv" in name:
                array = np.abs(array) + 1.0
            weights.append(numpy_helper.from_array(array.astype(np.float32), name))
        else:
            nodes.append(node)
    used = {name for node in nodes for name in node.input}
    kept = [i for i in graph.initializer if i.name in used] + weights
    del graph.node[:], graph.initializer[:]
    graph.node.extend(nodes)
    graph.initializer.extend(kept)
    inputs = [v for v in graph.input if v.name in used and v.name not in {i.name for i in kept}]
    del graph.input[:]
    graph.input.extend(inputs)
    model.ir_version = 4
    onnx.save(model, target)
    return target


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
