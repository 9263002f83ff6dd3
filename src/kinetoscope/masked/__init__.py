"""Masked video-token transformers (Phenaki family): model, training loss, MaskGIT sampling."""

from kinetoscope.masked.sampling import (
    continue_tokens,
    guided_logits,
    maskgit_sample,
    prefix_from_video,
)
from kinetoscope.masked.training import masked_token_loss
from kinetoscope.masked.transformer import MaskedVideoTransformer

__all__ = [
    "MaskedVideoTransformer",
    "continue_tokens",
    "guided_logits",
    "masked_token_loss",
    "maskgit_sample",
    "prefix_from_video",
]
