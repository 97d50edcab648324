"""``optimize --recover``: pruning becomes the prune/distill spiral, clustering is followed by distillation.

End to end on LeNet-300-100 as the preset tests do: decisions on the first half of the test split
(``--eval-data``), the budget asserted on the second half, which no decision saw.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from support import FIXTURES, fixture_path

import onnxcomp
from onnxcomp.cli import run
from onnxcomp.presets import preset_recipe
from onnxcomp.recipe import RECOVER_SPARSITY, Recipe
from onnxcomp.session import create_session

pytest.importorskip("torch")

BUDGET = 0.02  # top-1 accuracy drop (the data carries labels)


def test_recovery_turns_prune_into_a_spiral_and_distils_after_clustering():
    recipe = preset_recipe("size").with_recovery()
    names = [step.pass_name for step in recipe.steps]
    assert "prune" not in names and names.index("distill") == names.index("cluster") + 1
    spiral = recipe.steps[names.index("spiral")]
    assert spiral.config.target_sparsity == RECOVER_SPARSITY and spiral.config.max_drop is None
    assert spiral.fallbacks == ({"target_sparsity": 0.5}, {"target_sparsity": 0.3})
    distill = recipe.steps[names.index("distill")].config
    assert distill.clustered == "share" and distill.teacher is None  # None: optimize's original model
    assert Recipe.parse(recipe.dump()).to_dict() == recipe.to_dict()  # the recipe that runs can be saved


def test_recovery_refuses_a_prune_step_it_cannot_carry():
    recipe = Recipe.from_dict({"passes": [{"pass": "prune", "config": {"sparsity": 0.5, "nm": [2, 4]}}]})
    with pytest.raises(onnxcomp.errors.InputError, match="nm"):
        recipe.with_recovery()


def _split(folder: Path) -> tuple[Path, Path]:
    test = np.load(FIXTURES / "lenet300.test.npz")
    half = len(test["labels"]) // 2
    paths = folder / "eval.npz", folder / "holdout.npz"
    np.savez(paths[0], input=test["input"][:half], labels=test["labels"][:half])
    np.savez(paths[1], input=test["input"][half:], labels=test["labels"][half:])
    return paths


def _accuracy(model: bytes, holdout: Path) -> float:
    data = np.load(holdout)
    scores = create_session(model).run(None, {"input": data["input"]})[0]
    return float(np.mean(scores.argmax(1) == data["labels"]))


def _size_preset(out: Path, eval_path: Path, extra: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    code = run(["optimize", str(fixture_path("lenet300")), "-o", str(out), "--preset", "size", *extra,
                "--max-drop", str(BUDGET), "--data", str(FIXTURES / "lenet300.calib.npz"), "--eval-data",
                str(eval_path), "--batch-size", "64", "--runs", "3", "--json", "-q"])
    assert code == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_recover_keeps_the_budget_on_held_out_data_and_is_smaller(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    eval_path, holdout = _split(tmp_path)
    plain, recovered = tmp_path / "size.onnxc", tmp_path / "recover.onnxc"
    _size_preset(plain, eval_path, [], capsys)
    document = _size_preset(recovered, eval_path, ["--recover"], capsys)
    passes = {stage["pass"]: stage["status"] for stage in document["stages"]}
    assert passes["spiral"] == "kept"
    original = _accuracy(onnxcomp.io.serialize(onnxcomp.load(fixture_path("lenet300"))), holdout)
    assert _accuracy(onnxcomp.io.serialize(onnxcomp.load(recovered)), holdout) >= original - BUDGET
    assert recovered.stat().st_size < plain.stat().st_size
