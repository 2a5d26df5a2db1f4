"""The procedure interface: records, the `Procedure` base class and the registry.

A *procedure* is the expert's intermediate computation that procedure cloning imitates before the action
(REFERENCE.md, "Idea"). Every procedure in this package is a callable

    procedure(walls, goal, agent) -> record

with ``walls`` a ``(height, width)`` bool array (True = wall; cells outside the grid count as walls, see
`pc_transformers.grid`), and ``goal`` / ``agent`` ``(x, y)`` int tuples. The record is a frozen dataclass holding
the procedure steps (numpy arrays) and the action; its ``repr`` shows array shapes, not contents.

Plugging in a user-defined procedure
------------------------------------
1. Define a record: a ``@dataclass(frozen=True, eq=False)`` subclass of `ProcedureRecord` with your numpy
   fields and, last, ``action: int``; a ``format`` class variable; the ``steps`` and ``metadata`` properties; and
   exact equality (``__eq__ = exact_fields_eq``, ``__hash__ = None`` and ``__repr__ = shape_repr`` give you ours).
   Validate in ``__post_init__``.
2. Subclass `Procedure`: set ``name`` and ``record_type``, implement ``__call__(walls, goal, agent)``. Use
   `validate_maze_inputs` so that bad inputs fail the same way everywhere. A stochastic procedure takes its seed or
   ``numpy.random.Generator`` in ``__init__``; ``__call__`` keeps the common signature.
3. Decorate the class with ``@register_procedure``; ``get_procedure("your_name")`` then returns an instance.
4. To train on it, the tokenizer must know how to serialize your steps: the grammar a procedure format needs is
   documented in ``pc_transformers/tokenization_pc.py``.

Example::

    @dataclass(frozen=True, eq=False)
    class PathRecord(ProcedureRecord):
        format: ClassVar[str] = "path"
        path: np.ndarray  # (path_length,) int8
        action: int
        __eq__ = exact_fields_eq
        __hash__ = None
        __repr__ = shape_repr

        @property
        def steps(self):
            return self.path

        @property
        def metadata(self):
            return {"path_length": len(self.path)}

    @register_procedure
    class ShortestPath(Procedure):
        name = "path"
        record_type = PathRecord

        def __call__(self, walls, goal, agent):
            walls, goal, agent = validate_maze_inputs(walls, goal, agent)
            ...
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

__all__ = [
    "ProcedureRecord",
    "Procedure",
    "register_procedure",
    "get_procedure",
    "available_procedures",
    "validate_maze_inputs",
    "validate_walls",
    "validate_cell",
    "exact_fields_eq",
    "shape_repr",
]


# ---------------------------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ProcedureRecord:
    """Base of all procedure records: the steps of one expert computation and the action it ends in.

    Contract for subclasses (frozen dataclasses with ``eq=False``):
        action: the expert's action, an int in ``[0, NUM_ACTIONS)``.
        format: class variable naming the procedure format (the registry name of the procedure emitting it).
        steps: property, the sequence of procedure steps in order (what a model predicts before the action).
        metadata: property, a small dict of ints describing the record (``num_steps``, ``path_length``, ...).
    Equality is exact (same class, same dtypes, shapes and values); records are unhashable because their
    array fields are.
    """

    format: ClassVar[str]
    if TYPE_CHECKING:
        # Declared by each subclass as its LAST field, so that its fields read (steps..., action) in order; a
        # field here would come first in every subclass's __init__ and repr.
        action: int

    @property
    def steps(self):
        raise NotImplementedError(f"{type(self).__name__} must define the `steps` property")

    @property
    def metadata(self) -> dict:
        raise NotImplementedError(f"{type(self).__name__} must define the `metadata` property")


def exact_fields_eq(self: ProcedureRecord, other: object) -> bool:
    """``__eq__`` for records: same class and every dataclass field equal, arrays by dtype, shape and value.

    The dataclass-generated ``__eq__`` compares field tuples with ``==``, which is ambiguous for arrays, hence
    ``eq=False`` on every record and this function instead.
    """
    if type(other) is not type(self):
        return NotImplemented
    for field in dataclasses.fields(self):
        mine, theirs = getattr(self, field.name), getattr(other, field.name)
        if isinstance(mine, np.ndarray) or isinstance(theirs, np.ndarray):
            if not (isinstance(mine, np.ndarray) and isinstance(theirs, np.ndarray)):
                return False
            if mine.dtype != theirs.dtype or mine.shape != theirs.shape or not np.array_equal(mine, theirs):
                return False
        elif mine != theirs:
            return False
    return True


def shape_repr(self: ProcedureRecord) -> str:
    """``__repr__`` for records: arrays appear as ``int8(5, 16, 16)`` so that a record prints on one line."""
    parts = []
    for field in dataclasses.fields(self):
        value = getattr(self, field.name)
        if isinstance(value, np.ndarray):
            parts.append(f"{field.name}={value.dtype}{value.shape}")
        else:
            parts.append(f"{field.name}={value!r}")
    return f"{type(self).__name__}({', '.join(parts)})"


def _as_int_array(value: Any, name: str, dtype: type, low: int, high: int) -> np.ndarray:
    """Convert ``value`` to a read-only copy of dtype ``dtype``, refusing anything that would not convert exactly.

    Shared by the record validators: integer inputs of any width are accepted when every value lies in
    ``[low, high]``; floats and bools are refused rather than coerced (CONVENTIONS.md, rule 11).
    """
    array = np.asarray(value)
    if array.dtype.kind not in "iu":
        raise ValueError(f"{name} must have an integer dtype ({np.dtype(dtype).name} expected), got {array.dtype}")
    if array.size and (array.min() < low or array.max() > high):
        raise ValueError(
            f"{name} values must lie in [{low}, {high}], got values in [{array.min()}, {array.max()}]"
        )
    array = array.astype(dtype, copy=True)  # a private copy: the record must not change if the caller's array does
    array.setflags(write=False)
    return array


def _as_action(value: Any, num_actions: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"action must be an int in [0, {num_actions}), got {value!r}")
    if not 0 <= value < num_actions:
        raise ValueError(f"action must be an int in [0, {num_actions}), got {value!r}")
    return int(value)


# ---------------------------------------------------------------------------------------------------------------
# Input validation shared by all maze procedures
# ---------------------------------------------------------------------------------------------------------------


def _as_cell(cell: Any, name: str) -> tuple[int, int]:
    try:
        x, y = cell
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an (x, y) pair of ints, got {cell!r}") from None
    for value in (x, y):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an (x, y) pair of ints, got {cell!r}")
    return int(x), int(y)


def validate_walls(walls: Any) -> np.ndarray:
    """Return ``walls`` as a ``(height, width)`` bool array; ValueError unless it is bool or 0/1 integers."""
    walls = np.asarray(walls)
    if walls.ndim != 2 or walls.shape[0] < 1 or walls.shape[1] < 1:
        raise ValueError(f"walls must be a (height, width) array, got shape {walls.shape}")
    if walls.dtype != bool:
        if walls.dtype.kind not in "iu" or not np.isin(walls, (0, 1)).all():
            raise ValueError(f"walls must be a bool array (or integers 0/1), got dtype {walls.dtype}")
        walls = walls.astype(bool)
    return walls


def validate_cell(walls: np.ndarray, cell: Any, name: str) -> tuple[int, int]:
    """Return ``cell`` as an ``(x, y)`` tuple of ints; ValueError if it is outside the grid or a wall."""
    x, y = _as_cell(cell, name)
    height, width = walls.shape
    if not (0 <= x < height and 0 <= y < width):
        raise ValueError(f"{name} cell {(x, y)} lies outside the {height}x{width} grid")
    if walls[x, y]:
        raise ValueError(f"{name} cell {(x, y)} is a wall")
    return x, y


def validate_maze_inputs(walls: Any, goal: Any, agent: Any) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    """Check the common procedure inputs and return them as ``(walls bool array, goal tuple, agent tuple)``.

    Raises ValueError when ``walls`` is not a 2-d bool (or 0/1 integer) array, when a cell is not an ``(x, y)``
    int pair, lies outside the grid or on a wall, or when the agent is already at the goal. Connectivity is left
    to the procedures: they find it out for free when their search ends without reaching the other cell.
    """
    walls = validate_walls(walls)
    goal, agent = validate_cell(walls, goal, "goal"), validate_cell(walls, agent, "agent")
    if agent == goal:
        raise ValueError(f"the agent is already at the goal {goal}; a procedure needs at least one step to the goal")
    return walls, goal, agent


def not_connected_error(goal: tuple[int, int], agent: tuple[int, int]) -> ValueError:
    return ValueError(f"agent cell {agent} is not connected to goal cell {goal}: no path between them")


# ---------------------------------------------------------------------------------------------------------------
# Procedures and the registry
# ---------------------------------------------------------------------------------------------------------------


class Procedure(abc.ABC):
    """An expert that maps a maze and a start to a `ProcedureRecord` (see the module docstring to write one).

    Class attributes:
        name: the registry name, also the ``format`` of the records it emits.
        record_type: the `ProcedureRecord` subclass returned by ``__call__``.
    """

    name: ClassVar[str]
    record_type: ClassVar[type[ProcedureRecord]]

    @abc.abstractmethod
    def __call__(self, walls: np.ndarray, goal: tuple[int, int], agent: tuple[int, int]) -> ProcedureRecord:
        """Run the procedure from ``agent`` towards ``goal`` in ``walls`` ((height, width) bool, True = wall)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


_REGISTRY: dict[str, type[Procedure]] = {}


def register_procedure(cls: type[Procedure]) -> type[Procedure]:
    """Class decorator adding a `Procedure` subclass to the registry under ``cls.name``.

    Registering the same class twice is a no-op (modules may be reloaded); a different class under a taken name
    raises ValueError.
    """
    if not (isinstance(cls, type) and issubclass(cls, Procedure)):
        raise ValueError(f"register_procedure expects a Procedure subclass, got {cls!r}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{cls.__name__}.name must be a non-empty str, got {name!r}")
    record_type = getattr(cls, "record_type", None)
    if not (isinstance(record_type, type) and issubclass(record_type, ProcedureRecord)):
        raise ValueError(f"{cls.__name__}.record_type must be a ProcedureRecord subclass, got {record_type!r}")
    existing = _REGISTRY.get(name)
    if existing is not None and existing is not cls:
        raise ValueError(
            f"a procedure named {name!r} is already registered ({existing.__module__}.{existing.__qualname__}); "
            f"cannot register {cls.__module__}.{cls.__qualname__} under the same name"
        )
    _REGISTRY[name] = cls
    return cls


def get_procedure(name: str) -> Procedure:
    """Return a new instance of the procedure registered as ``name``."""
    try:
        cls = _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown procedure {name!r}; known procedures: {available_procedures()}") from None
    return cls()


def available_procedures() -> tuple[str, ...]:
    """Names of the registered procedures, sorted."""
    return tuple(sorted(_REGISTRY))
