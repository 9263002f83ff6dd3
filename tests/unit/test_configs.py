"""Every committed recipe (shipped and experimental) parses, and its UNet/transformer builds."""

from __future__ import annotations

from pathlib import Path

import pytest

from kinetoscope.config import from_dict, load_config, merge, read_recipe

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
RECIPES = sorted(CONFIGS.rglob("*.yaml"))


def test_recipes_are_found():
    assert {"ldm-mnist.yaml", "ldm-shapes.yaml", "phenaki-mnist.yaml"} <= {p.name for p in RECIPES}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_recipe_parses_and_builds(path):
    data = read_recipe(path)
    family = data.pop("family", "ldm")
    if family == "ldm":
        from kinetoscope.diffusion.unet import VideoUNet
        from kinetoscope.train.ldm import LDMRecipe

        recipe = from_dict(LDMRecipe, data, where=path.name)
        unet = VideoUNet(text_dim=384, latent_channels=recipe.vae["latent_channels"], **recipe.unet)
        assert sum(p.numel() for p in unet.parameters()) > 0
        for name in ("vae", "vae_temporal", "unet_image", "unet_temporal"):
            assert recipe.stage(name).minutes > 0
        from kinetoscope.train.ldm import check_stages

        check_stages(recipe)  # known stage names, a consistent interpolation stage
    else:
        assert family == "phenaki"
        from kinetoscope.train.phenaki import PhenakiRecipe, continuation_settings

        recipe = from_dict(PhenakiRecipe, data, where=path.name)
        continuation_settings(recipe)
        assert recipe.stage("tokenizer").minutes > 0


def test_merge_replaces_values_and_merges_mappings_key_by_key():
    base = {"name": "a", "unet": {"channels": [32, 64], "num_heads": 4}, "stages": {"s": {"lr": 1}}}
    update = {"name": "b", "unet": {"channels": [16]}, "stages": {"s": {"steps": 5}}}
    assert merge(base, update) == {
        "name": "b",
        "unet": {"channels": [16], "num_heads": 4},
        "stages": {"s": {"lr": 1, "steps": 5}},
    }
    assert base["unet"] == {"channels": [32, 64], "num_heads": 4}  # inputs are not changed


def test_a_recipe_states_only_what_it_changes_over_its_base(tmp_path):
    shipped = (CONFIGS / "ldm-mnist.yaml").read_text()
    (tmp_path / "parent.yaml").write_text(shipped)
    (tmp_path / "child.yaml").write_text(
        "base: parent.yaml\nname: child\nstages:\n  unet_temporal: {steps: 10}\n"
    )
    from kinetoscope.train.ldm import LDMRecipe

    parent = load_config(LDMRecipe, tmp_path / "parent.yaml")
    child = load_config(LDMRecipe, tmp_path / "child.yaml", ["stages.unet_image.lr=0.5"])
    assert child.name == "child"
    assert child.stage("unet_temporal").steps == 10
    # the rest of the stage and every other section come from the base
    assert child.stage("unet_temporal").extra == parent.stage("unet_temporal").extra
    assert child.stage("unet_temporal").lr == parent.stage("unet_temporal").lr
    assert child.unet == parent.unet and child.vae == parent.vae
    assert child.stage("unet_image").lr == 0.5 != parent.stage("unet_image").lr


def test_a_base_chain_that_loops_is_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\nname: a\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\nname: b\n")
    with pytest.raises(ValueError, match="loops"):
        read_recipe(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        read_recipe(tmp_path / "c.yaml")
