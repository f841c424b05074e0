"""COCO-WholeBody AP/AR per part (body, foot, face, hands, whole body) through xtcocotools.

Two ways:
  python -m training eval --gt GT.json --predictions RESULTS.json [--json]
      score a results file (official format: image_id, category_id, keypoints, foot_kpts,
      face_kpts, lefthand_kpts, righthand_kpts, score per person)
  python -m training eval --config CONFIG --checkpoint CKPT [--bbox-file DETS.json] [--flip-test]
      run the model top-down on the config's validation set (ground-truth boxes, or the person
      boxes of a COCO detection results file) and score it

--json prints one object: body_ap, foot_ap, face_ap, lefthand_ap, righthand_ap, hand_ap,
wholebody_ap and the matching *_ar.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from training.commands.common import add_config_arguments, add_skip_bad_samples_argument

HELP = "evaluate a results file, or a checkpoint on a dataset (COCO-WholeBody AP/AR)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gt", type=Path, help="ground-truth COCO-WholeBody annotation file")
    parser.add_argument("--predictions", type=Path, help="COCO-WholeBody results file to score against --gt")
    add_config_arguments(
        parser,
        config_example="rtmpose_l_256x192",
        set_example="data.val.image_root='coco/val2017'",
        required=False,
        config_note="; with --checkpoint, its data.val set is evaluated",
    )
    parser.add_argument("--checkpoint", type=Path, help="model weights (.pth/.safetensors; ours or mmpose's)")
    parser.add_argument(
        "--bbox-file", type=Path, help="COCO detection results to use as person boxes (default: GT boxes)"
    )
    parser.add_argument("--min-box-score", type=float, default=0.0, help="drop detections below this score")
    flip = parser.add_mutually_exclusive_group()
    flip.add_argument(
        "--flip-test",
        dest="flip_test",
        action="store_true",
        default=None,
        help="average with the flipped input",
    )
    flip.add_argument("--no-flip-test", dest="flip_test", action="store_false", help="no flip test")
    parser.add_argument("--batch-size", type=int, default=32, help="crops per forward pass")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--num-workers", type=int, default=2, help="data loading workers")
    parser.add_argument("--save-predictions", type=Path, help="also write the results file here")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    add_skip_bad_samples_argument(parser)


def _predict(args: argparse.Namespace):
    import torch

    from dwpose_ctrl.models.checkpoints import load_state_dict
    from training.commands.train import load_config_from_args
    from training.data.checks import check_instances, resolve_problems
    from training.data.instances import load_detections
    from training.engine import _resolve, build_model, ground_truth_file, load_checked_instances
    from training.evaluate import predictions_to_results
    from training.inference import predict_topdown

    config = load_config_from_args(args)
    if config.data.val is None:
        raise ValueError(f"config {args.config} has no data.val dataset to evaluate on")
    metadata = config.model.metadata
    gt_file = ground_truth_file(config.data.val, config.data.data_root)
    if args.bbox_file:
        image_root = _resolve(config.data.data_root, config.data.val.image_root)
        instances, problems = check_instances(
            load_detections(args.bbox_file, gt_file, image_root, args.min_box_score)
        )
        instances = resolve_problems(instances, problems, args.skip_bad_samples, "the detections' images")
    else:
        instances = load_checked_instances(config.data.val, config, args.skip_bad_samples)
    model = build_model(config)
    model.load_state_dict(load_state_dict(args.checkpoint), strict=True)
    device = torch.device(args.device)
    flip_test = config.val_flip_test if args.flip_test is None else args.flip_test
    predictions = predict_topdown(
        model.to(device), instances, metadata, tuple(config.model.input_size), args.batch_size, flip_test,
        device, args.num_workers,
    )  # fmt: skip
    return gt_file, predictions_to_results(predictions, metadata), metadata


def run(args: argparse.Namespace) -> int:
    from dwpose_ctrl.keypoints import COCO_WHOLEBODY
    from training.data.instances import read_json_file
    from training.evaluate import evaluate_results, write_results

    if args.predictions is not None:
        if args.gt is None:
            raise SystemExit("--predictions needs --gt (the ground-truth annotation file)")
        gt_file, results, metadata = (
            args.gt,
            read_json_file(args.predictions, "predictions file"),
            COCO_WHOLEBODY,
        )
    elif args.config is not None and args.checkpoint is not None:
        gt_file, results, metadata = _predict(args)
        if args.gt is not None:
            gt_file = args.gt
    else:
        raise SystemExit("give --gt and --predictions, or --config and --checkpoint")
    if args.save_predictions:
        write_results(results, args.save_predictions)
    metrics = evaluate_results(gt_file, results, metadata)
    print(json.dumps(metrics.summary()) if args.json else metrics.format_table())
    return 0
