"""Recipes: presets and pipelines round-trip through YAML, and every bad recipe is a one-line error."""

from __future__ import annotations

from pathlib import Path

import pytest
from onnxcomp.passes.channel_removal import ChannelRemovalConfig, ChannelRemovalPass
from onnxcomp.passes.cleanup import CleanupConfig, CleanupPass
from onnxcomp.passes.cluster import ClusterConfig, ClusterPass
from onnxcomp.passes.magnitude_prune import MagnitudePruneConfig, MagnitudePrunePass
from onnxcomp.passes.quantize_int8 import QuantizeConfig, QuantizePass

from onnxcomp.errors import InputError
from onnxcomp.pass_base import PassContext
from onnxcomp.pipeline import Pipeline
from onnxcomp.presets import PRESETS, preset_recipe
from onnxcomp.recipe import Budget, Recipe
from onnxcomp.registry import pass_class, pass_names


def test_registry_finds_every_pass_by_name():
    assert {"cleanup", "channels", "prune", "cluster", "quantize"} <= set(pass_names())
    assert pass_class("quantize") is QuantizePass
    with pytest.raises(InputError, match=r"unknown pass 'nope'.*quantize"):
        pass_class("nope")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip_through_yaml(name: str):
    recipe = preset_recipe(name)
    again = Recipe.parse(recipe.dump())
    assert again.to_dict() == recipe.to_dict()
    assert [s.config for s in again.steps] == [s.config for s in recipe.steps]


def test_pipeline_round_trip_keeps_tuples_and_non_defaults(tmp_path: Path):
    passes = [
        CleanupPass(CleanupConfig(eliminate_identity=False)),
        ChannelRemovalPass(ChannelRemovalConfig(ratio=0.3, layer_ratios=(("fc", 0.1),), exclude="stem")),
        MagnitudePrunePass(MagnitudePruneConfig(nm=(2, 4), exclude=("fc.*", "head"))),
        ClusterPass(ClusterConfig(bits=3, per_channel=True, conv_bits=6)),
        QuantizePass(QuantizeConfig(method="percentile", percentile=99.9, min_cosine=0.995)),
    ]
    path = tmp_path / "recipe.yaml"
    text = Pipeline(passes).to_recipe(path)
    assert path.read_text() == text
    rebuilt = Pipeline.from_recipe(path, PassContext())
    assert [type(p) for p in rebuilt.passes] == [type(p) for p in passes]
    assert [p.config for p in rebuilt.passes] == [p.config for p in passes]
    assert rebuilt.passes[1].config.layer_ratios == (("fc", 0.1),)
    assert rebuilt.passes[2].config.nm == (2, 4)


def test_recipe_keeps_budget_fallbacks_keep_and_pack():
    text = """
version: 1
budget: {min_cosine: 0.995}
pack: true
passes:
  - pass: prune
    config: {sparsity: 0.6}
    fallbacks: [{sparsity: 0.4}]
  - pass: quantize
    keep: if-faster
"""
    recipe = Recipe.parse(text)
    assert recipe.budget == Budget(min_cosine=0.995) and recipe.pack
    assert recipe.steps[0].fallback_configs()[0].sparsity == 0.4
    assert recipe.steps[1].keep == "if-faster"
    assert Recipe.parse(recipe.dump()).to_dict() == recipe.to_dict()


@pytest.mark.parametrize(("text", "message"), [
    ("passes:\n  - pass: quantize\n    config: {methd: minmax}\n", "unknown key 'methd' for pass 'quantize'"),
    ("passes:\n  - pass: prune\n    sparsity: 0.5\n", "unknown key 'sparsity' for pass 'prune'"),
    ("passes:\n  - pass: cluster\n    fallbacks: [{bitz: 3}]\n", "unknown key 'bitz' for pass 'cluster'"),
    ("passes:\n  - pass: nope\n", "unknown pass 'nope'"),
    ("passes:\n  - pass: prune\n    config: {sparsity: high}\n", "prune.sparsity: expected a number"),
    ("passes:\n  - pass: prune\n    config: {sparsity: 1.5}\n", "sparsity must be in"),
    ("passes:\n  - pass: cluster\n    config: {bits: true}\n", "cluster.bits: expected an integer"),
    ("passes:\n  - pass: quantize\n    keep: sometimes\n", "keep must be 'always' or 'if-faster'"),
    ("passes: []\n", "'passes' must be a non-empty list"),
    ("steps: []\n", "unknown top-level key 'steps'"),
    ("budget: {min_cosine: 2}\npasses: [{pass: cleanup}]\n", "budget min_cosine must be a number"),
    ("budget: {cos: 0.9}\npasses: [{pass: cleanup}]\n", "unknown budget key 'cos'"),
    ("version: 7\npasses: [{pass: cleanup}]\n", "version 7 is not supported"),
    ("passes: [pass: cleanup\n", "not valid YAML at line"),
])
def test_bad_recipes_are_one_line_errors(text: str, message: str):
    with pytest.raises(InputError, match=message) as caught:
        Recipe.parse(text, "r.yaml")
    assert "\n" not in str(caught.value)


def test_missing_recipe_file_names_it(tmp_path: Path):
    with pytest.raises(InputError, match=r"recipe .*missing\.yaml: cannot read"):
        Recipe.load(tmp_path / "missing.yaml")


def test_python_callables_cannot_be_written_to_a_recipe():
    pipeline = Pipeline([QuantizePass(QuantizeConfig(metric=lambda session: 1.0))])
    with pytest.raises(InputError, match=r"quantize\.metric is a Python callable"):
        pipeline.to_recipe()


def test_budget_tightened_keeps_a_share_of_each_allowed_loss():
    tight = Budget(min_cosine=0.99, min_top1=0.98, max_drop=0.02).tightened(0.5)
    assert tight.min_cosine == pytest.approx(0.995)
    assert tight.min_top1 == pytest.approx(0.99)
    assert tight.max_drop == pytest.approx(0.01)
