"""Evaluate a trained PCPolicy by rollouts on held-out mazes (success rate, path length, procedure accuracy) or
held-out MinAtar episodes (mean return with its 95% interval).

    python recipes/evaluate.py CHECKPOINT --mazes 100 --starts 5
    pc-transformers evaluate CHECKPOINT --mazes 100 --starts 5 --json outputs/eval.json
    pc-transformers evaluate MINATAR_CHECKPOINT --episodes 100 --max-steps 300 --setting eval

``CHECKPOINT`` is a directory written by ``PCPolicy.save_pretrained`` (the demo writes one per model). The mazes are
the test seeds ``maze_splits(0, N).test``, a range disjoint from every training seed; ``--layouts FILE`` evaluates
hand-made ``#``/``.``/``G``/``S`` layouts (separated by blank lines) instead. Every environment of the run is
stepped in one batch. For grid PC models each generated procedure is compared map by map with the ``bfs_maps``
expert; with the procedure cache on (the default) only the decisions that generated a procedure are compared, so
pass ``--no-procedure-cache`` to compare every step.

Printed: success rate with its 95% Wilson interval, episodes, mean episode length over the expert's optimum
(successful episodes), fallback rate, forward passes per step, environment steps per second and, for PC, the
procedure step accuracy and exact-procedure rate. Bad arguments exit with status 2 and a message naming the value.

A MinAtar checkpoint (``recipes/train.py`` with ``domain: minatar``) plays its game (from the ``train_config.yaml``
saved beside it, or ``--game``) on the held-out seeds ``episode_seeds("eval", N)``, in the unseen eval setting
(sticky actions 0.1, difficulty ramping) unless ``--setting train``; printed: the mean return with its 95% Student-t
interval, episode lengths, fallback rate, forward passes and milliseconds per decision. The maze options are refused
for it, and the MinAtar options for a maze checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys

from pc_transformers.evaluation import add_evaluate_arguments, format_table, run_evaluation


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="evaluate.py", description=__doc__.split("\n")[0])
    add_evaluate_arguments(parser)
    args = parser.parse_args(argv)
    try:
        results = run_evaluation(**vars(args), progress=sys.stderr.isatty())
    except (ValueError, TypeError, FileNotFoundError) as error:
        print(f"evaluate.py: error: {error}", file=sys.stderr)
        return 2
    print(format_table(results))
    if args.json_out is not None:
        print(f"wrote {json.dumps(args.json_out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
