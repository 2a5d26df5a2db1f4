"""Experts that emit procedures: the intermediate computation procedure cloning imitates, then the action.

==============  ==========================  ===============================================================
name            record                      procedure
==============  ==========================  ===============================================================
``bfs_maps``    `BFSMapsRecord`             BFS from the goal, one cumulative map per level (format A)
``bfs_trace``   `BFSTraceRecord`            BFS from the agent cell by cell, then the backtracked path (format B)
``mcts``        `MCTSRecord`                UCT search on a game snapshot: root branches, principal variation
==============  ==========================  ===============================================================

``get_procedure(name)(walls, goal, agent)`` runs one; see `base` to plug in your own.
"""

from pc_transformers.procedures.base import (
    Procedure,
    ProcedureRecord,
    available_procedures,
    get_procedure,
    register_procedure,
)
from pc_transformers.procedures.bfs_maps import (
    GOAL,
    UNREACHED,
    BFSMaps,
    BFSMapsRecord,
    all_bfs_maps,
    bfs_maps,
    bfs_step,
    initial_map,
    record_from_maps,
)
from pc_transformers.procedures.bfs_trace import BFSTrace, BFSTraceRecord, bfs_trace
from pc_transformers.procedures.mcts import (  # registers "mcts" for the tokenizer; imports no minatar
    MCTS_WORDS,
    MCTSConfig,
    MCTSExpert,
    MCTSRecord,
)

__all__ = [
    "Procedure",
    "ProcedureRecord",
    "register_procedure",
    "get_procedure",
    "available_procedures",
    "UNREACHED",
    "GOAL",
    "BFSMaps",
    "BFSMapsRecord",
    "bfs_step",
    "initial_map",
    "all_bfs_maps",
    "record_from_maps",
    "bfs_maps",
    "BFSTrace",
    "BFSTraceRecord",
    "bfs_trace",
    "MCTSConfig",
    "MCTSExpert",
    "MCTSRecord",
    "MCTS_WORDS",
]
