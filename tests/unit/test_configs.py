"""Every committed recipe (shipped and experimental) parses, and its UNet/transformer builds."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kinetoscope.config import from_dict

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
RECIPES = sorted(CONFIGS.rglob("*.yaml"))


def test_recipes_are_found():
    assert {"ldm-mnist.yaml", "ldm-shapes.yaml", "phenaki-mnist.yaml"} <= {p.name for p in RECIPES}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_recipe_parses_and_builds(path):
    data = yaml.safe_load(path.read_text())
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
