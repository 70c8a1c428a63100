"""A trained ``edge`` checkpoint grown into the deeper v6 network, as the start of a warm run (a maintainers' tool;
research data only).

The v6 network (``[model.overrides]`` of ``training/configs/default_v6a.toml``) has one more inverted-residual
block in the 48- and 96-channel stages and the pose-fused excitation on each fused stage's first block only
(``se_first_only``): 44.0 M MACs against 36.5 M at the same latency. The grown checkpoint computes nearly what the
old one computed::

    python -m tools.deepen ../runs/default_v4d/best.pt ../runs/v6_init.pt

* every layer that exists in both networks is copied;
* an excitation the new network drops is replaced by its mean gate (per channel, over 400 aflw19k val crops, every
  4th, framed by the protocol box, through the runtime's preprocessing; images only, no label is read), folded into
  its block's project convolution;
* a new block starts as the identity (its project batch norm's scale and shift 0: the residual adds nothing).

How far the start is from the old model: 4.04 against 3.23 balanced NME from the TTA teacher (v4 -> v6a's start);
one cycle (``default_v6a.toml``) recovers it. v6a's start was made by this tool's scratch forerunner, which did not
seed the new blocks' random convolutions: its file differs from this tool's output there only (the same outputs;
every other weight identical, checked). Exit codes: 0 written; 2 bad arguments or data missing.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "aflw19k"
DEEPER = {3: 3, 4: 3}  # stage index -> its number of blocks in the v6 network


def mean_gates(checkpoint: str, data: Path, count: int = 400) -> dict[tuple[int, int], torch.Tensor]:
    """{(stage, block): the mean excitation gate (C,)} of every excitation in ``checkpoint``'s network, over
    ``count`` val crops (every 4th) run through the runtime's preprocessing."""
    from fa3d.data.datasets.aflw import protocol_box, read_aflw_labels
    from fa3d.training.torch_backend import open_aligner

    aligner = open_aligner(checkpoint)
    sums: dict[tuple[int, int], torch.Tensor] = {}
    counts: dict[tuple[int, int], int] = {}

    def hook(key):
        def record(se, inputs, _output):
            w = se.gate(*inputs).detach()
            sums[key] = sums.get(key, 0) + w.sum(0)
            counts[key] = counts.get(key, 0) + w.shape[0]
        return record

    handles = [blk.se.register_forward_hook(hook((si, bi)))
               for si, stage in enumerate(aligner.backend.model.stages) for bi, blk in enumerate(stage)
               if blk.se is not None]
    labels = read_aflw_labels(data)
    rows = labels.select("val")[::4][:count]
    box = protocol_box(120, 120).astype(np.float32)[None]
    for r in rows:
        image = cv2.imread(str(data / "images" / labels.names[r]))
        if image is None:
            raise OSError(f"cannot read {data / 'images' / labels.names[r]}")
        aligner.process(image, boxes=box)
    for h in handles:
        h.remove()
    return {k: sums[k] / counts[k] for k in sums}


def grow(checkpoint: dict, gates: dict[tuple[int, int], torch.Tensor], seed: int = 0) -> dict:
    """``checkpoint`` (a raw checkpoint dict of an ``edge`` network) as the deeper network's checkpoint."""
    from fa3d.training.model import config_from_dict, network_for

    old = checkpoint["state_dict"]
    config = config_from_dict(checkpoint["model_config"])
    stages = [list(s) for s in config.stages]
    for si, blocks in DEEPER.items():
        stages[si][2] = blocks
    config = replace(config, stages=tuple(tuple(s) for s in stages), se_first_only=True)
    torch.manual_seed(seed)  # the new blocks' convolutions (their output starts at zero, not their weights)
    template = old.get("dense_template")
    net = network_for(config, None if template is None else template.numpy())
    state = net.state_dict()
    for k in state:
        if k in old and state[k].shape == old[k].shape:
            state[k] = old[k].clone()
    for si, stage in enumerate(net.stages):
        for bi, blk in enumerate(stage):
            pre = f"stages.{si}.{bi}."
            if f"{pre}expand_dw.0.weight" not in old:  # a new block: the identity
                state[f"{pre}project.1.weight"].zero_()
                state[f"{pre}project.1.bias"].zero_()
            elif blk.se is None and (si, bi) in gates:  # a dropped excitation: its mean gate folded
                state[f"{pre}project.0.weight"] = old[f"{pre}project.0.weight"] * gates[(si, bi)].reshape(1, -1, 1, 1)
    net.load_state_dict(state)
    out = dict(checkpoint)
    out.pop("resume", None)
    out["state_dict"], out["model_config"] = state, config.to_dict()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.deepen", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a trained edge checkpoint (e.g. ../runs/default_v4d/best.pt)")
    p.add_argument("out", help="where to write the grown checkpoint")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="the aflw19k folder (default: %(default)s)")
    args = p.parse_args(argv)
    data = Path(args.data)
    if not (data / "labels.npz").is_file():
        print(f"deepen: no aflw19k labels at {data} (--data)", file=sys.stderr)
        return 2
    try:
        ckpt = torch.load(args.checkpoint, weights_only=True, map_location="cpu")
        if ckpt.get("model_config", {}).get("se_first_only"):
            raise ValueError(f"{args.checkpoint} is already a v6 network (se_first_only)")
        grown = grow(ckpt, mean_gates(args.checkpoint, data))
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        print(f"deepen: {e}", file=sys.stderr)
        return 2
    from fa3d.runtime.atomic import atomic_path

    with atomic_path(args.out) as tmp:  # no half-written checkpoint after a crash or Ctrl-C
        torch.save(grown, tmp)
    print(f"deepen: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
