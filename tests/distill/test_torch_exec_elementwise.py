"""Elementwise ops of the interpreter against onnxruntime: activations, variadic, Mod, Pow, Clip, Cast, Softmax."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

X = np.linspace(-4, 4, 24, dtype=np.float32).reshape(2, 3, 4)


@pytest.mark.parametrize(("op_type", "attributes"), [
    ("HardSigmoid", {}), ("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}), ("HardSwish", {}),
    ("LeakyRelu", {"alpha": 0.2}), ("Elu", {"alpha": 0.7}), ("Selu", {}), ("Softplus", {}), ("Softsign", {}),
    ("Sign", {}), ("Round", {}), ("Sin", {}), ("Cos", {}), ("Erf", {}), ("Abs", {}), ("Floor", {}),
    ("Softmax", {"axis": 1}), ("LogSoftmax", {"axis": -1}),
])
def test_unary_activations(same, node, op_type: str, attributes: dict):
    same(node(op_type, {"x": X + 0.25}, **attributes), {"x": X + 0.25})


def test_round_is_half_to_even(same, node):
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5], np.float32)
    out = same(node("Round", {"x": x}), {"x": x})
    np.testing.assert_array_equal(out["y"], [-2, -2, -0, 0, 2, 2])


@pytest.mark.parametrize("op_type", ["Max", "Min", "Sum", "Mean"])
def test_variadic_ops_broadcast_three_inputs(same, node, rng, op_type: str):
    feed = {"a": rng.standard_normal((2, 3, 4), dtype=np.float32), "b": rng.standard_normal((3, 1), dtype=np.float32),
            "c": rng.standard_normal((4,), dtype=np.float32)}
    same(node(op_type, feed), feed)


def test_max_with_a_constant_floor(same, node, rng):
    same(node("Max", {"x": X}, {"zero": np.zeros((), np.float32)}), {"x": X})


def test_softmax_before_opset_13_flattens_trailing_axes(same, node):
    same(node("Softmax", {"x": X}, opset=11, axis=1), {"x": X})


@pytest.mark.parametrize("fmod", [0, 1])
def test_mod_follows_the_divisor_or_the_dividend(same, node, fmod: int):
    a = np.array([-7, -3, 3, 7, 5], np.int64)
    b = np.array([2, -2, 2, -3, 5], np.int64)
    feed = {"a": a, "b": b} if not fmod else {"a": a.astype(np.float32), "b": b.astype(np.float32)}
    same(node("Mod", feed, fmod=fmod), feed)


def test_pow_keeps_the_base_type_with_an_integer_exponent(same, node):
    same(node("Pow", {"x": X}, {"e": np.array(2, np.int64)}), {"x": X})


def test_prelu_slope_broadcasts_per_channel(same, node, rng):
    same(node("PRelu", {"x": X}, {"slope": np.array([[0.1], [0.2], [0.3]], np.float32)}), {"x": X})


def test_clip_bounds_are_inputs_from_opset_11_and_attributes_before(same, node):
    same(node("Clip", {"x": X}, {"low": np.array(-1, np.float32)}, inputs=["x", "low"], opset=13), {"x": X})
    same(node("Clip", {"x": X}, {"high": np.array(1.5, np.float32)}, inputs=["x", "", "high"], opset=13), {"x": X})
    same(node("Clip", {"x": X}, opset=6, min=-0.5, max=2.0), {"x": X})


@pytest.mark.parametrize("to", [1, 6, 7, 9])
def test_cast_truncates_toward_zero(same, node, to: int):
    same(node("Cast", {"x": X * 1.3}, to=to), {"x": X * 1.3})


def test_cast_like_and_logic(same, node):
    a, b = np.array([True, False, True]), np.array([True, True, False])
    same(node("Xor", {"a": a, "b": b}), {"a": a, "b": b})
    same(node("CastLike", {"x": X}, {"like": np.zeros(1, np.float64)}), {"x": X})
    x = np.array([1.0, np.nan, 3.0], np.float32)
    same(node("IsNaN", {"x": x}), {"x": x})
