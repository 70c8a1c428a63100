"""The network: output contract, presets, budgets, pose fusion wiring, dense template geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fa3d.runtime import pose
from fa3d.runtime.schema import mean_shape
from fa3d.training import build_model
from fa3d.training.blocks import rotation_from_6d_torch
from fa3d.training.dense_template import default_template, mirror_permutation, tps_weights
from fa3d.training.model import PRESETS, MobileConfig, ModelConfig, config_from_dict, count_parameters

torch.set_num_threads(1)


def _forward(model, batch=2, rotation=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, model.input_size, model.input_size, generator=g)
    with torch.no_grad():
        return model(x, rotation=rotation)


@pytest.mark.parametrize("preset", ["tiny", "tiny_mobile", "edge", "edge_hg"])
def test_eval_outputs_contract(preset):
    torch.manual_seed(0)
    m = build_model(preset).eval()
    out = _forward(m, batch=2)
    assert list(out) == ["landmarks", "rotation", "dense", "confidence"]
    assert out["landmarks"].shape == (2, 68, 3)
    assert out["rotation"].shape == (2, 3, 3)
    assert out["dense"].shape == (2, m.num_dense, 3)
    assert out["confidence"].shape == (2, 1)
    assert ((out["confidence"] >= 0) & (out["confidence"] <= 1)).all()
    assert torch.allclose(out["landmarks"][:, :, 2].mean(1), torch.zeros(2), atol=1e-4)
    r = out["rotation"]
    assert torch.allclose(r @ r.transpose(1, 2), torch.eye(3).expand(2, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(r), torch.ones(2), atol=1e-5)
    # an untrained model starts from the mean shape inside the crop
    xy = out["landmarks"][..., :2]
    assert (xy > 0).all() and (xy < m.input_size).all()


@pytest.mark.parametrize("preset", ["tiny", "tiny_mobile"])
def test_training_mode_extra_outputs(preset):
    m = build_model(preset).train()
    x = torch.randn(2, 3, 64, 64)
    out = m(x)
    c = m.config
    assert len(out["heatmaps"]) == getattr(c, "num_stacks", 1)
    assert out["heatmaps"][0].shape == (2, c.depth_bins, c.heatmap_size, c.heatmap_size)
    assert out["rotation_6d"].shape == (2, 6)


@pytest.mark.slow
def test_paper_preset_size():
    m = build_model("paper")
    assert m.input_size == 256 and m.config.num_stacks == 4 and m.config.hg_depth == 4
    assert m.config.channels == 256 and m.config.depth_bins == 64
    assert 25e6 < count_parameters(m) < 60e6


def _macs(m) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    fc = FlopCounterMode(display=False)
    with fc, torch.no_grad():
        m(torch.zeros(1, 3, m.input_size, m.input_size))
    return fc.get_total_flops() / 2


def test_edge_budget():
    # the shipped preset: within the MACs of 3DDFA_V2's MobileNet-V1 x0.5 (46.5 M), far below the v1 model's
    m = build_model("edge").eval()
    assert isinstance(m.config, MobileConfig) and m.input_size == 112
    assert count_parameters(m) <= 1_500_000, count_parameters(m)
    assert _macs(m) <= 40e6, _macs(m)
    assert _macs(build_model("edge_hg").eval()) > 200e6


def test_fusion_is_wired():
    torch.manual_seed(0)
    r1 = torch.from_numpy(pose.euler_to_matrix(np.array([[0.0, 0.0, 0.0]] * 2))).float()
    r2 = torch.from_numpy(pose.euler_to_matrix(np.array([[60.0, -20.0, 10.0]] * 2))).float()
    fused = build_model("tiny", fuse_pose=True).eval()
    a, b = _forward(fused, rotation=r1), _forward(fused, rotation=r2)
    assert (a["landmarks"] - b["landmarks"]).abs().max() > 1e-4
    # the predicted rotation does not depend on the rotation fed to the fused blocks
    assert torch.equal(a["rotation"], b["rotation"])
    plain = build_model("tiny", fuse_pose=False).eval()
    a, b = _forward(plain, rotation=r1), _forward(plain, rotation=r2)
    assert torch.equal(a["landmarks"], b["landmarks"])
    # unfused excitations take C/16 inputs only, fused ones C/16 + 9 (after the stem)
    fused_in = sorted({mod.excite.in_features - mod.squeeze.out_features for mod in fused.modules()
                       if hasattr(mod, "excite")})
    assert fused_in == [0, 9]  # stem blocks (pose not yet known) and fused blocks
    assert {mod.excite.in_features - mod.squeeze.out_features for mod in plain.modules()
            if hasattr(mod, "excite")} == {0}


def test_mobile_fusion_is_wired():
    torch.manual_seed(0)
    r1 = torch.from_numpy(pose.euler_to_matrix(np.array([[0.0, 0.0, 0.0]] * 2))).float()
    r2 = torch.from_numpy(pose.euler_to_matrix(np.array([[60.0, -20.0, 10.0]] * 2))).float()
    fused = build_model("tiny_mobile", fuse_pose=True).eval()
    a, b = _forward(fused, rotation=r1), _forward(fused, rotation=r2)
    assert (a["landmarks"] - b["landmarks"]).abs().max() > 1e-4
    assert torch.equal(a["rotation"], b["rotation"])
    plain = build_model("tiny_mobile", fuse_pose=False).eval()
    a, b = _forward(plain, rotation=r1), _forward(plain, rotation=r2)
    assert torch.equal(a["landmarks"], b["landmarks"])
    # every excitation after the pose head (and the 3D branch's) sees the rotation; none before it
    c = fused.config
    for i, stage in enumerate(fused.stages):
        for blk in stage:
            assert (blk.se is not None) == (i > c.pose_after)
            if blk.se is not None:
                assert blk.se.excite.in_features - blk.se.squeeze.out_features == 9
    assert fused.reg3d_se.excite.in_features - fused.reg3d_se.squeeze.out_features == 9
    assert {mod.excite.in_features - mod.squeeze.out_features for mod in plain.modules()
            if hasattr(mod, "excite")} == {0}


@pytest.mark.parametrize("preset", ["tiny", "tiny_mobile"])
def test_teacher_forcing_mask_selects_rotation(preset):
    torch.manual_seed(0)
    m = build_model(preset).eval()
    x = torch.randn(2, 3, 64, 64)
    r = torch.from_numpy(pose.euler_to_matrix(np.array([[70.0, 30.0, -20.0]] * 2))).float()
    with torch.no_grad():
        own = m(x)["landmarks"]
        forced = m(x, rotation=r)["landmarks"]
        mixed = m(x, rotation=r, force_mask=torch.tensor([True, False]))["landmarks"]
    assert torch.allclose(mixed[0], forced[0]) and torch.allclose(mixed[1], own[1])


def test_rotation_6d_matches_runtime():
    rng = np.random.default_rng(0)
    d6 = rng.normal(size=(5, 6))
    ours = rotation_from_6d_torch(torch.from_numpy(d6)).numpy()
    assert np.allclose(ours, pose.rotation_from_6d(d6), atol=1e-7)


def test_dense_template_geometry():
    t = default_template(468)
    assert t.shape == (468, 3) and np.array_equal(t, default_template(468))
    w = tps_weights(t)
    m = mean_shape().astype(np.float64)
    assert np.allclose(w @ m, t, atol=1e-3)
    # a similarity transform of the keypoints moves the template with it exactly
    r = pose.euler_to_matrix(np.array([40.0, -10.0, 15.0]))
    moved = 37.0 * m @ r.T + np.array([5.0, -3.0, 2.0])
    assert np.allclose(w @ moved, 37.0 * t @ r.T + np.array([5.0, -3.0, 2.0]), atol=0.05)
    # a mirror permutation of a symmetric template is exact and an involution
    half = np.random.default_rng(1).uniform(0.1, 1.0, size=(10, 3))
    sym = np.concatenate([half, half * np.array([-1.0, 1.0, 1.0])])
    perm = mirror_permutation(sym)
    assert np.array_equal(perm, np.r_[np.arange(10, 20), np.arange(10)])


def test_model_config_round_trip_and_validation():
    for name, c in PRESETS.items():
        assert config_from_dict(c.to_dict()) == c, name
    old = PRESETS["edge_hg"].to_dict()
    del old["arch"]  # checkpoints written before the mobile family: hourglass
    assert isinstance(config_from_dict(old), ModelConfig)
    with pytest.raises(ValueError, match="unknown model architecture"):
        config_from_dict(dict(old, arch="transformer"))
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_dict(dict(PRESETS["edge_hg"].to_dict(), bogus=1))
    with pytest.raises(ValueError, match="unknown model config keys"):
        config_from_dict(dict(PRESETS["edge"].to_dict(), bogus=1))
    with pytest.raises(ValueError, match="unknown preset"):
        build_model("huge")
    with pytest.raises(ValueError, match="divisible"):
        build_model("edge_hg", input_size=100)
    with pytest.raises(ValueError, match="multiple of 16"):
        build_model("edge", input_size=100)
    with pytest.raises(ValueError, match="pose_after"):
        build_model("edge", pose_after=5)
    m = build_model("tiny", dense_template=default_template(50))
    assert m.num_dense == 50 and m.config.num_dense == 50


@pytest.mark.parametrize("preset", ["tiny", "tiny_mobile"])
def test_dense_landmark_grad_scales_only_the_gradient_into_the_68_points(preset):
    """``dense_landmark_grad`` 0: the dense loss moves the dense residual but not the 68 points' layer, and
    the outputs are the same numbers as with 1 (it never changes the exported network)."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    grads, outs = {}, {}
    for g in (1.0, 0.0):
        torch.manual_seed(1)
        m = build_model(preset).train()
        with torch.no_grad():  # a non-trivial residual and points, so that both gradients are non-zero
            m.coords.weight.normal_(0, 0.05)
            m.dense_residual.weight.normal_(0, 0.05)
        m.dense_landmark_grad = g
        out = m(x)
        out["dense"].abs().mean().backward()
        grads[g] = (m.coords.weight.grad.abs().sum().item(), m.dense_residual.weight.grad.abs().sum().item())
        outs[g] = out["dense"].detach()
    assert torch.equal(outs[1.0], outs[0.0])
    assert grads[1.0][0] > 0 and grads[0.0][0] == 0.0  # the 68 points: moved by the dense loss only at 1
    assert grads[0.0][1] > 0 and grads[0.0][1] == pytest.approx(grads[1.0][1])


@pytest.mark.parametrize("maps", [1, 3])
def test_learnt_pooling_starts_as_the_mean_pooled_network(maps):
    """``pool_maps``: a mean-pooled network's weights, adapted, give the same outputs (fa-train's init_from);
    training then moves the new spatial weightings."""
    from fa3d.training.mobile import adapt_state_dict

    torch.manual_seed(0)
    old = build_model("tiny_mobile").eval()
    with torch.no_grad():
        for p in old.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    new = build_model("tiny_mobile", pool_maps=maps).eval()
    assert new.fc[0].in_features == maps * old.fc[0].in_features
    new.load_state_dict(adapt_state_dict(new, old.state_dict()))
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        a, b = old(x), new(x)
    for k in ("landmarks", "dense", "confidence", "rotation"):
        assert torch.allclose(a[k], b[k], atol=1e-4), k
    # the learnt weightings see where a feature sits, the mean does not: a map and its mirror image
    from fa3d.training.mobile import SpatialPool

    pool = SpatialPool(4, maps, 5)
    f = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        p, q = pool(f).reshape(2, 4, maps), pool(torch.flip(f, dims=[3])).reshape(2, 4, maps)
    assert torch.allclose(p[..., 0], f.mean(dim=(2, 3)), atol=1e-6) and torch.allclose(p[..., 0], q[..., 0], atol=1e-6)
    if maps > 1:
        assert not torch.allclose(p[..., 1:], q[..., 1:], atol=1e-3)
    # another network's state is left for load_state_dict to reject with its own message
    other = build_model("tiny_mobile", pool_maps=maps + 1)
    with pytest.raises(RuntimeError, match="size mismatch"):
        other.load_state_dict(adapt_state_dict(other, new.state_dict()))
    with pytest.raises(ValueError, match="pool_maps must be >= 0"):
        build_model("tiny_mobile", pool_maps=-1)


def test_se_first_only_keeps_the_pose_fused_excitation_on_each_fused_stages_first_block():
    """``se_first_only``: a fused stage's later blocks lose their excitation (a quarter of the CPU latency), its
    first block keeps it, with the rotation (the pose fusion); the stages before the pose head have none."""
    full = build_model("edge")
    lean = build_model("edge", se_first_only=True)
    for si, (a, b) in enumerate(zip(full.stages, lean.stages)):
        fused = si > full.config.pose_after
        assert [blk.se is not None for blk in a] == [fused] * len(a)
        assert [blk.se is not None for blk in b] == [fused and i == 0 for i in range(len(b))]
    assert all(st[0].se.fuse_pose for st in lean.stages[lean.config.pose_after + 1:])
    out = lean.eval()(torch.randn(1, 3, 112, 112))
    assert out["landmarks"].shape == (1, 68, 3)
    assert MobileConfig.from_dict(lean.config.to_dict()).se_first_only is True  # stored in checkpoints
    with pytest.raises(ValueError, match="se_first_only must be true or false"):
        build_model("edge", se_first_only="yes")
