"""tools.deepen: an edge checkpoint grown into the deeper v6 network computes what the old network computes with
each dropped excitation replaced by its mean gate (new blocks the identity), deterministically."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fa3d.training.checkpoint import save_checkpoint
from fa3d.training.model import build_model
from tools.deepen import DEEPER, grow

REPO = Path(__file__).resolve().parents[2]


def _edge(tmp_path):
    torch.manual_seed(3)
    net = build_model("edge", num_dense=0).eval()
    for m in net.modules():  # non-trivial batch-norm statistics, so that an identity block must really be one
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    torch.nn.init.normal_(net.coords.weight, std=0.1)  # (initialised near 0: the points would hide the features)
    torch.nn.init.normal_(net.pose_fc[2].weight, std=0.1)
    save_checkpoint(tmp_path / "edge.pt", net)
    return net, torch.load(tmp_path / "edge.pt", weights_only=True)


def test_grown_network_equals_the_old_one_with_its_dropped_gates_held_at_their_means(tmp_path):
    old, ckpt = _edge(tmp_path)
    gates = {(si, bi): torch.rand(blk.se.channels) for si, st in enumerate(old.stages) for bi, blk in enumerate(st)
             if blk.se is not None}
    grown = grow(ckpt, gates)
    cfg = grown["model_config"]
    assert cfg["se_first_only"] is True
    assert [s[2] for s in cfg["stages"]] == [b if i not in DEEPER else DEEPER[i]
                                             for i, b in enumerate(s[2] for s in ckpt["model_config"]["stages"])]
    new = build_model("edge", num_dense=0, se_first_only=True, stages=tuple(tuple(s) for s in cfg["stages"])).eval()
    new.load_state_dict(grown["state_dict"])

    for si, st in enumerate(old.stages):  # the reference: the old network, dropped excitations at their mean gate
        for bi, blk in enumerate(st):
            if blk.se is not None and new.stages[si][bi].se is None:
                g = gates[(si, bi)].reshape(1, -1, 1, 1)
                blk.se.forward = lambda x, rot9, g=g: x * g
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        a, b = old(x), new(x)
    assert torch.allclose(a["landmarks"], b["landmarks"], atol=1e-3)
    assert torch.allclose(a["rotation"], b["rotation"], atol=1e-5)


def test_grow_is_deterministic(tmp_path):
    _, ckpt = _edge(tmp_path)
    gates = {}
    one, two = grow(ckpt, gates), grow(ckpt, gates)
    assert all(torch.equal(one["state_dict"][k], two["state_dict"][k]) for k in one["state_dict"])


@pytest.mark.data
def test_mean_gates_are_each_excitations_average_over_real_crops(shared_data):
    """The gates the tool folds in: one per excitation of the shipped network, the mean of its sigmoid outputs."""
    from fa3d.training.checkpoint import load_checkpoint
    from tools.deepen import mean_gates

    shipped = REPO / "export" / "assets" / "default" / "model.pt"
    gates = mean_gates(str(shipped), shared_data / "aflw19k", count=6)
    model = load_checkpoint(shipped).model
    excitations = {(si, bi): blk.se for si, st in enumerate(model.stages) for bi, blk in enumerate(st)
                   if blk.se is not None}
    assert gates.keys() == excitations.keys()
    for key, g in gates.items():
        assert g.shape == (excitations[key].channels,)
        assert float(g.min()) > 0.0 and float(g.max()) < 1.0 and float(g.std()) > 0.0
