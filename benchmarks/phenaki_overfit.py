"""Can the phenaki-mnist transformer fit a handful of clips? (A check that training works at
all, separate from how well it generalises.)

    python benchmarks/phenaki_overfit.py runs/phenaki-mnist/tokens.pt --clips 8 --steps 300

Trains a fresh transformer of the recipe's size (dim 192, depth 4) on the first ``--clips``
cached token clips with their first caption, masked-token loss, no text dropout, AdamW at
``--lr``, and prints loss and masked accuracy every 25 steps.
"""

from __future__ import annotations

import argparse
import time

import torch

from kinetoscope.masked import MaskedVideoTransformer, masked_token_loss
from kinetoscope.text import load_text_encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cache")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--num-codes", type=int, default=1000, help="tokenizer codebook size")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cache = torch.load(args.cache, weights_only=False)
    tokens = cache["tokens"][: args.clips].long()  # (B, T', h, w)
    captions = [w[0] for w in cache["wordings"][: args.clips]]
    emb, mask = load_text_encoder("all-MiniLM-L6-v2", max_length=32).encode(captions)
    _, steps, height, width = tokens.shape
    model = MaskedVideoTransformer(
        num_codes=args.num_codes,
        max_time_tokens=steps,
        height_tokens=height,
        width_tokens=width,
        text_dim=emb.shape[-1],
    )
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    start = time.time()
    for step in range(1, args.steps + 1):
        loss, logs = masked_token_loss(model, tokens, emb, mask, text_dropout=0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 0:
            print(
                f"step {step}: loss {logs['loss']:.3f}, masked accuracy "
                f"{logs['masked_accuracy']:.3f}, {time.time() - start:.0f} s",
                flush=True,
            )


if __name__ == "__main__":
    main()
