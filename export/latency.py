"""fa-latency: our networks' CPU latency as a ratio to a reference network, timed side by side.

The reference is the architecture of 3DDFA_V2's smallest network, written here from the MobileNet paper
(Howard et al. 2017, table 1): a 3x3 stride-2 convolution with 32 channels, 13 depthwise-separable layers
(64, 128/2, 128, 256/2, 256, 512/2, 5 x 512, 1024/2, 1024), global average pooling and a linear layer, every
width multiplied by 0.5, a 120x120 input and 62 outputs (3DDFA's 12 pose + 40 shape + 10 expression
parameters), BatchNorm + ReLU after every convolution. Its weights are random: latency does not depend on them.

Every network is exported the same way (opset 17, dynamic batch, constant folding) and run by ONNX Runtime on
CPU at batch 1 with a given thread count; the sessions are timed in interleaved rounds in one process
(:func:`fa3d.runtime.timing.interleaved`), so a busy machine slows all of them alike. Report ratios of
medians, never absolute milliseconds from different runs.

Examples::

    fa-latency                                  # the `edge` preset against the reference, 1 and 2 threads
    fa-latency --candidates --json lat.json     # every design candidate of the edge preset
    fa-latency --checkpoint runs/edge/best.pt --onnx other.onnx

Exit codes: 0 done, 2 usage (unknown preset or candidate, missing file, --json naming an input, a sidecar or a
folder), 4 a model cannot be exported or loaded, 5 --json cannot be written (disk full, permission), 129 hung up
(SIGHUP), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fa3d.runtime.atomic import atomic_write_text
from fa3d.runtime.backends.onnxrt import cpu_session
from fa3d.runtime.cli_errors import (EXIT_OUTPUT, artifact_files, check_outputs_not_inputs, exit_codes_help,
                                    int_at_least, os_error_text, stops_cleanly)
from fa3d.runtime.clihelp import HelpFormatter
from fa3d.runtime.timing import interleaved

if TYPE_CHECKING:
    import torch

REFERENCE = "mobilenet_v1_x0.5@120"

#: design candidates of the `edge` preset: name -> (preset, config overrides). The shipped choice is "edge".
CANDIDATES: dict[str, tuple[str, dict]] = {
    "edge": ("edge", {}),
    "edge@128": ("edge", {"input_size": 128}),
    "edge@96": ("edge", {"input_size": 96}),
    "edge-t3@128": ("edge", {"input_size": 128, "stages": ((1, 16, 1, 1), (3, 24, 2, 2), (3, 32, 2, 2),
                                                           (3, 48, 2, 1), (3, 96, 2, 2), (3, 128, 2, 2))}),
    "edge-wide@128": ("edge", {"input_size": 128, "stages": ((1, 16, 1, 1), (4, 24, 2, 2), (4, 40, 2, 2),
                                                             (4, 64, 2, 1), (4, 128, 3, 2), (4, 160, 2, 2))}),
    "edge-nofuse": ("edge", {"fuse_pose": False}),
    "edge_hg (v1)": ("edge_hg", {}),
}


def reference_network(width: float = 0.5, input_size: int = 120, outputs: int = 62) -> "torch.nn.Module":
    """MobileNet-V1 (see the module docstring) with random weights, returning ``{"params": (B, outputs)}``."""
    import torch
    from torch import nn

    def ch(c: int) -> int:
        return max(8, int(c * width))

    def conv_bn(cin: int, cout: int, k: int, stride: int, groups: int = 1) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True)]

    layers = conv_bn(3, ch(32), 3, 2)
    cin = ch(32)
    plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    for cout, stride in plan:
        layers += conv_bn(cin, cin, 3, stride, groups=cin) + conv_bn(cin, ch(cout), 1, 1)
        cin = ch(cout)

    class MobileNetV1(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(*layers)
            self.fc = nn.Linear(cin, outputs)
            self.input_size = input_size

        def forward(self, x: torch.Tensor) -> dict:
            return {"params": self.fc(self.features(x).mean(dim=(2, 3)))}

    torch.manual_seed(0)
    net = MobileNetV1().eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so nothing folds away as identity
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net


def count_macs(model: "torch.nn.Module", input_size: int) -> int:
    """Multiply-accumulates of one forward pass at batch 1 (Conv2d and Linear layers)."""
    import torch
    from torch import nn

    total = 0

    def hook(mod: nn.Module, inp, out) -> None:
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            total += int(out[0].numel()) * k
        elif isinstance(mod, nn.Linear):
            total += mod.in_features * mod.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, input_size, input_size))
    finally:
        for h in handles:
            h.remove()
    return total


@dataclass(frozen=True)
class Contender:
    name: str
    onnx: Path
    input_size: int
    macs: int | None
    parameters: int | None
    nodes: int


def _export(model: "torch.nn.Module", size: int, path: Path, outputs: tuple[str, ...] | None = None) -> int:
    """Export like fa-export (opset 17, constant folding, graphsurgeon clean-up); returns the node count."""
    from .onnx_export import sanitize, torch_to_onnx

    raw = torch_to_onnx(model, size, outputs=outputs) if outputs else torch_to_onnx(model, size)
    clean, info = sanitize(raw)
    path.write_bytes(clean.SerializeToString())
    return info.nodes_after


def contender_from_model(name: str, model: "torch.nn.Module", size: int, folder: Path,
                         outputs: tuple[str, ...] | None = None) -> Contender:
    path = folder / f"{len(list(folder.glob('*.onnx'))):02d}.onnx"
    nodes = _export(model, size, path, outputs)
    params = sum(p.numel() for p in model.parameters())
    return Contender(name, path, size, count_macs(model, size), params, nodes)


def contender_from_onnx(path: Path) -> Contender:
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as e:  # protobuf raises its own types
        raise ValueError(f"{path}: not a readable ONNX file ({e})") from None
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4 or dims[2].dim_value < 1:
        raise ValueError(f"{path}: input must be (B, 3, S, S) with a fixed S")
    return Contender(path.name, path, int(dims[2].dim_value), None, None, len(model.graph.node))


def measure(contenders: list[Contender], threads: list[int], rounds: int, calls: int) -> list[dict]:
    """Median ms per contender and thread count, interleaved; ratio to the first contender (the reference)."""
    rows = []
    for t in threads:
        fns = {}
        for c in contenders:
            sess = cpu_session(c.onnx, t)
            x = np.random.default_rng(0).standard_normal((1, 3, c.input_size, c.input_size)).astype(np.float32)
            fns[c.name] = partial(sess.run, None, {sess.get_inputs()[0].name: x})
        ms = interleaved(fns, rounds=rounds, calls_per_round=calls)
        ref = float(np.median(ms[contenders[0].name]))
        for c in contenders:
            med = float(np.median(ms[c.name]))
            rows.append({"name": c.name, "threads": t, "median_ms": round(med, 4),
                         "p90_ms": round(float(np.percentile(ms[c.name], 90)), 4),
                         "ratio": round(med / ref, 3), "macs_m": None if c.macs is None else round(c.macs / 1e6, 1),
                         "params_m": None if c.parameters is None else round(c.parameters / 1e6, 3),
                         "nodes": c.nodes, "input": c.input_size})
    return rows


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fa-latency", description=__doc__.split("\n\n")[0],
                                epilog=exit_codes_help(__doc__), formatter_class=HelpFormatter)
    p.add_argument("--preset", action="append", default=[],
                   help="a model preset to time with random weights (repeatable; default: edge when nothing "
                        "else is given)")
    p.add_argument("--candidates", action="store_true", help="time every design candidate of the edge preset")
    p.add_argument("--checkpoint", action="append", default=[], help="a trained checkpoint (.pt) to time "
                                                                       "(repeatable)")
    p.add_argument("--onnx", action="append", default=[], help="an exported ONNX model to time (repeatable)")
    p.add_argument("--threads", default="1,2", help="ONNX Runtime intra-op thread counts, comma-separated")
    p.add_argument("--rounds", type=int_at_least(1), default=30, help="interleaved rounds (each times every model)")
    p.add_argument("--calls", type=int_at_least(1), default=10, help="timed calls per model and round")
    p.add_argument("--json", dest="json_out", help="write the rows as JSON (atomically)")
    return p


def _contenders(args, folder: Path) -> list[Contender]:
    from fa3d.training.checkpoint import load_checkpoint
    from fa3d.training.model import build_model

    out = [contender_from_model(REFERENCE, reference_network(), 120, folder, outputs=("params",))]
    plan = list(CANDIDATES.items()) if args.candidates else []
    presets = args.preset or ([] if (args.candidates or args.checkpoint or args.onnx) else ["edge"])
    plan += [(p, (p, {})) for p in presets]
    for name, (preset, overrides) in plan:
        model = build_model(preset, **overrides).eval()
        out.append(contender_from_model(name, model, model.config.input_size, folder))
    for ck in args.checkpoint:
        loaded = load_checkpoint(ck)
        out.append(contender_from_model(Path(ck).name, loaded.model, loaded.model_config.input_size, folder))
    out += [contender_from_onnx(Path(o)) for o in args.onnx]
    return _unique_names(out)


def _unique_names(contenders: list[Contender]) -> list[Contender]:
    """Two files of one name (``a/model.onnx``, ``b/model.onnx``) get ``#2``, ``#3``... so that each is timed
    and reported on its own row (the timings are keyed by name)."""
    seen: dict[str, int] = {}
    out = []
    for c in contenders:
        seen[c.name] = seen.get(c.name, 0) + 1
        out.append(c if seen[c.name] == 1 else replace(c, name=f"{c.name}#{seen[c.name]}"))
    return out


def _print(rows: list[dict]) -> None:
    print(f"{'model':<24}{'threads':>8}{'median_ms':>11}{'ratio':>8}{'MMACs':>8}{'Mparams':>9}{'nodes':>7}")
    for r in rows:
        macs = "-" if r["macs_m"] is None else f"{r['macs_m']:.1f}"
        params = "-" if r["params_m"] is None else f"{r['params_m']:.3f}"
        print(f"{r['name']:<24}{r['threads']:>8}{r['median_ms']:>11.3f}{r['ratio']:>8.2f}{macs:>8}{params:>9}"
              f"{r['nodes']:>7}")


@stops_cleanly("fa-latency")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        threads = [int(t) for t in args.threads.split(",") if t.strip()]
    except ValueError:
        threads = []
    if not threads or min(threads) < 1:
        print(f"fa-latency: --threads needs positive integers separated by commas, got {args.threads!r}",
              file=sys.stderr)
        return 2
    if args.rounds < 1 or args.calls < 1:
        print("fa-latency: --rounds and --calls must be >= 1", file=sys.stderr)
        return 2
    onnx_files = [f for path in args.onnx for f in artifact_files(path)]
    if not check_outputs_not_inputs("fa-latency", {"--json": args.json_out}, args.checkpoint + onnx_files):
        return 2
    missing = [f for f in args.checkpoint + args.onnx if not Path(f).is_file()]
    if missing:
        print(f"fa-latency: no such file: {missing[0]}", file=sys.stderr)
        return 2
    try:
        import torch  # noqa: F401  (the reference and the presets are built with PyTorch)
    except ImportError:
        print("fa-latency: needs PyTorch (pip install torch==2.13.0 and fa3d[train,export])", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="fa-latency-") as tmp:
        try:
            contenders = _contenders(args, Path(tmp))
        except ValueError as e:
            print(f"fa-latency: {e}", file=sys.stderr)
            return 2
        except Exception as e:  # export or checkpoint failure: name it, one line
            print(f"fa-latency: cannot export or load a model: {e}", file=sys.stderr)
            return 4
        rows = measure(contenders, threads, args.rounds, args.calls)
    _print(rows)
    if args.json_out:
        try:
            atomic_write_text(args.json_out, json.dumps({"reference": REFERENCE, "rows": rows}, indent=2))
        except OSError as e:
            print(f"fa-latency: error: cannot write --json: {os_error_text(e)}", file=sys.stderr)
            return EXIT_OUTPUT
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
