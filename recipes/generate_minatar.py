"""Generate MCTS expert data for a MinAtar game, sharded over processes and machines with Accelerate.

    python recipes/generate_minatar.py --game breakout --episodes 100 --num-workers 2 --out data/breakout
    accelerate launch --multi_gpu --num_processes 4 recipes/generate_minatar.py --game breakout --episodes 400 \\
        --out data/breakout                                      # 4 processes: shards 0-3 of 4
    accelerate launch --multi_gpu --num_machines 2 --machine_rank R --num_processes 8 --main_process_ip HOST ...
    python recipes/generate_minatar.py ... --shard-index 3 --num-shards 8    # e.g. one task of a SLURM array
    python recipes/generate_minatar.py ... --finalize        # write the card once every shard is in --out/data

Every process plays one shard of the episodes (`pc_transformers.data.minatar_dataset`: shard ``k`` of ``n`` is the
contiguous block ``[episodes·k // n, episodes·(k+1) // n)``, so the shards are disjoint and together are exactly
the single-process dataset) with ``--num-workers`` worker processes of its own, and writes
``OUT/data/train-0000k-of-0000n.parquet``. Under ``accelerate launch`` the process index and the number of
processes (``accelerate.PartialState``) pick the shard; ``--shard-index/--num-shards`` split the episodes further
for launches that Accelerate does not know about (process ``p`` of ``P`` in task ``k`` of ``n`` plays shard
``k·P + p`` of ``n·P``). When every shard is in ``OUT/data`` (one shared folder, or after copying the machines'
files together), the main process writes the dataset card ``OUT/README.md``; ``--finalize`` writes it later from
the files alone. ``pc-transformers push-dataset OUT --repo-id NAME`` uploads the result.
"""

import argparse
import sys

from accelerate import PartialState

from pc_transformers.data.minatar_dataset import (
    add_generate_arguments,
    config_from_arguments,
    generate_minatar_dataset,
    minatar_shard_files,
    save_minatar_dataset,
    write_minatar_card,
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="recipes/generate_minatar.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_generate_arguments(parser)
    parser.add_argument("--finalize", action="store_true",
                        help="generate nothing: write the dataset card from the shards already in --out/data")
    args = parser.parse_args(argv)
    try:
        if args.finalize:  # one process, no generation: the card of the shards in --out/data
            _, count = minatar_shard_files(args.out)
            config = config_from_arguments(args, shard_index=0, num_shards=count or args.num_shards)
            print(f"wrote {write_minatar_card(args.out, config)}")
            return 0
        # No process group is needed to split the work, but wait_for_everyone below needs one: gloo over CPU
        # processes (data generation never touches a GPU).
        state = PartialState(cpu=True)
        config = config_from_arguments(
            args, shard_index=args.shard_index * state.num_processes + state.process_index,
            num_shards=args.num_shards * state.num_processes,
        )
    except (ValueError, TypeError, FileNotFoundError) as error:
        print(f"recipes/generate_minatar.py: error: {error}", file=sys.stderr)
        return 2
    dataset = generate_minatar_dataset(config, progress=state.is_local_main_process)
    # One process: it writes the card itself if its shard was the last one missing. Several: the main process
    # writes it once all of them have saved their shards (no two processes writing the same file).
    alone = state.num_processes == 1
    save_minatar_dataset(dataset, args.out, config, write_card=alone)
    print(f"[process {state.process_index}] shard {config.shard_index} of {config.num_shards}: episodes "
          f"{config.shard_episodes.start}-{config.shard_episodes.stop - 1}, {len(dataset['train'])} decisions")
    state.wait_for_everyone()
    if state.is_main_process:
        files, _ = minatar_shard_files(args.out)
        if len(files) == config.num_shards:
            if not alone:
                write_minatar_card(args.out, config)
            print(f"wrote {args.out}/data ({len(files)} shard(s)) and the card {args.out}/README.md")
        else:
            print(f"{len(files)} of {config.num_shards} shards are in {args.out}/data so far; the run that saves the "
                  f"last one writes the card, or rerun this command with --finalize once they are all copied there")
    return 0


if __name__ == "__main__":
    sys.exit(main())
