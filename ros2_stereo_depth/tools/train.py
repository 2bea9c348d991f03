"""`stereo-depth train`: supervised or self-supervised training (training/loop.py).

Several processes (GPUs, or CPU processes over gloo):
`torchrun --standalone --nproc_per_node=N -m ros2_stereo_depth train ...` (--batch-size is per process).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ..training.loop import train
from ..training.settings import (FIELDS, FRAME_SIZES, KEEP_WEIGHTS, TEXTURES, TrainSettings, load_schedule, load_yaml,
                                 settings_from_mapping, start_weights)

FLAG_FIELDS = ("batch_size", "crop_height", "crop_width", "max_disparity", "seed", "workers", "threads",
               "warmup_steps", "checkpoint_every", "log_every", "holdout_every", "holdout_last", "validate_every",
               "photometric_scales")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainSettings()
    parser.add_argument("--config", default=None, help=f"network config: tiny, fast, accurate (default {d.config})")
    parser.add_argument("--data", default=None, help="'synthetic' (default) or a dataset directory")
    parser.add_argument("--format", dest="data_format", default=None,
                        help="dataset format for a directory (see data/readers.py); auto-detected by default")
    parser.add_argument("--mode", default=None, choices=["supervised", "self-supervised"])
    parser.add_argument("--steps", type=int, default=None, help=f"steps (default {d.steps}; with --schedule: the stages')")
    parser.add_argument("--out", required=True, help="run directory (checkpoints, TensorBoard, final weights)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from RUN/checkpoint.safetensors; more --steps extends the lr schedule")
    parser.add_argument("--settings", help="YAML file of TrainSettings fields; flags given explicitly win")
    parser.add_argument("--schedule", help="YAML file of training stages (training/settings.py); flags given "
                                           "explicitly apply to every stage")
    parser.add_argument("--stop-at", type=int, default=None,
                        help="stop with a checkpoint at this global step; the schedule still plans the full run")
    for name in FLAG_FIELDS:
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--textures", choices=TEXTURES, default=None,
                        help="synthetic scenes: 'photos' (packaged photos, `make textures`; default) or 'none'")
    parser.add_argument("--init-weights", default=None, help="start from these safetensors weights (fine-tuning)")
    parser.add_argument("--weights", default=None,
                        help="fine-tune from shipped weights (tiny, fast) or a .safetensors file; sets --config "
                             "and --init-weights")
    bags = parser.add_argument_group("ROS 2 bags and self-supervised adaptation")
    bags.add_argument("--left-topic", default=None, help="left image topic, when the bag holds several stereo pairs")
    bags.add_argument("--right-topic", default=None)
    bags.add_argument("--stamp-tolerance", dest="stamp_tolerance_s", type=float, default=None,
                      help=f"pair left/right stamps that differ by at most this many seconds (default {d.stamp_tolerance_s})")
    bags.add_argument("--proxy-weight", type=float, default=None,
                      help="weight of SGBM proxy labels that pass a left-right check (default "
                           f"{d.proxy_weight}: off)")
    bags.add_argument("--frame-size", choices=FRAME_SIZES, default=None,
                      help="'network': resize every pair to the config's network input, as the node does before "
                           f"inference; 'recorded': keep the recorded size (default {d.frame_size})")
    bags.add_argument("--keep-weights", choices=KEEP_WEIGHTS, default=None,
                      help="'best': end with the held-out pairs' best-scored weights that did not collapse, the "
                           f"starting ones included; 'last': the last step's (default {d.keep_weights})")
    parser.epilog = ("Self-supervised on real data: every --holdout-every-th pair (default "
                     f"{d.holdout_every}) and the last --holdout-last pairs are not trained on; they are scored "
                     "label-free every --validate-every steps (log, TensorBoard, RUN/validation.json).")


def stages_from_args(args: argparse.Namespace) -> list[TrainSettings]:
    base = settings_from_mapping(load_yaml(args.settings), where=f"{args.settings}: ") if args.settings else TrainSettings()
    flags = {k: getattr(args, k) for k in FIELDS if getattr(args, k, None) is not None}
    if getattr(args, "weights", None):
        if args.config is not None or args.init_weights is not None:
            raise ValueError("--weights sets --config and --init-weights: give one or the other")
        flags.update(start_weights(args.weights))
    if not args.schedule:
        return [base.replace(**flags)]
    flags.pop("steps", None)  # each stage has its own
    return [stage.replace(**flags) for stage in load_schedule(args.schedule, base)]


def run(args: argparse.Namespace) -> int:
    stages = stages_from_args(args)
    command = "stereo-depth " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    train(stages, Path(args.out), args.resume, command, args.stop_at)
    return 0
