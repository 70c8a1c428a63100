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
