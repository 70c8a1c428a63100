"""``fa-train --config FILE.toml``: train the pose-fused alignment network.

Exit codes: 0 done; 2 bad config (every key's type and range is checked, the key is named) or checkpoint
(nothing or no complete resume state to --resume from), or a missing input file; 3 the run diverged (many steps in a row
with a non-finite loss or gradient; one such step is skipped and the run goes on); 5 the run folder cannot be written; 129 hung
up (SIGHUP), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM): all three stop at once, ``last.pt`` keeps the last saved step (--resume).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from dataclasses import replace

from fa3d.runtime.cli_errors import exit_codes_help, graceful_signals, int_at_least, stops_cleanly


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        epilog=exit_codes_help(__doc__),
        prog="fa-train", description="Train the pose-fused 3D face alignment network from a TOML config "
        "(examples: training/configs/edge.toml, paper.toml, smoke.toml). Several GPUs: "
        "torchrun --nproc_per_node N -m fa3d.training.cli_train --config FILE.")
    p.add_argument("--config", required=True, help="training config (TOML); see fa3d.training.config for the tables")
    p.add_argument("--resume", action="store_true",
                   help="continue exactly where a killed run stopped, from OUT_DIR/last.pt")
    p.add_argument("--out-dir", help="override [run] out_dir (where checkpoints and logs go)")
    p.add_argument("--epochs", type=int_at_least(1), help="override [optim] epochs")
    p.add_argument("--seed", type=int_at_least(0), help="override [run] seed (e.g. the arms of an ablation)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="override [run] device")
    p.add_argument("--stop-after-steps", type=int_at_least(1),
                   help="stop after this global step as if killed, leaving a resumable last.pt (for staged runs); "
                        "a stop at an epoch's last step comes before that epoch's validation and best.pt, so add 1 "
                        "to include them")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the final summary as JSON")
    return p


@stops_cleanly("fa-train")
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .checkpoint import CheckpointError  # these import torch: not needed for --help
    from .config import ConfigError, load_config
    from .train import TrainingDiverged, train

    try:
        cfg = load_config(args.config)
        run = {}
        if args.out_dir:
            run["out_dir"] = args.out_dir
        if args.device:
            run["device"] = args.device
        if args.stop_after_steps is not None:
            run["stop_after_steps"] = args.stop_after_steps
        if args.seed is not None:
            run["seed"] = args.seed
        if run:
            cfg = cfg.with_run(**run)
        if args.epochs is not None:
            cfg = replace(cfg, optim=replace(cfg.optim, epochs=args.epochs))
        with graceful_signals() as guard:  # SIGTERM: the same stop as Ctrl-C
            try:
                result = train(cfg, resume=args.resume, progress=not args.no_progress)
            except KeyboardInterrupt as e:
                print(f"fa-train: {guard.name}; resume with --resume (last.pt holds the last saved step)",
                      file=sys.stderr)
                return guard.interrupted(e)
    except (ConfigError, CheckpointError) as e:
        print(f"fa-train: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except TrainingDiverged as e:
        print(f"fa-train: error: {e}", file=sys.stderr)
        return 3
    except FileNotFoundError as e:
        print(f"fa-train: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"fa-train: error: cannot write the run ({e}); give a writable --out-dir with free space",
              file=sys.stderr)
        return 5
    if os.environ.get("RANK", "0") != "0":
        return 0  # under torchrun only rank 0 reports
    summary = {"out_dir": str(result.out_dir), "step": result.step, "epochs_done": result.epochs_done,
               "stopped_early": result.stopped_early, "best_metric": result.best_metric,
               "last_epoch": result.history["epochs"][-1] if result.history.get("epochs") else None}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"fa-train: {result.epochs_done} epoch(s), {result.step} steps; checkpoints in {result.out_dir}")
        if summary["last_epoch"]:
            print("  " + ", ".join(f"{k}={v:.4g}" for k, v in summary["last_epoch"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
