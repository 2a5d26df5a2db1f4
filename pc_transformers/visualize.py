"""Pictures of a policy in one maze: the procedure it generates beside the expert's, and the path it takes.

    pc-transformers visualize outputs/pc_maze16/final --maze-seed 1000000 --out figures/

writes ``maze{seed}.png`` (the maze with the path taken; for PC the generated and the expert's BFS maps at the
first decision, level by level, with cells that differ outlined in red) and ``maze{seed}.gif`` (the maps growing level
by level, then the episode step by step). Drawing uses Pillow only.

Colours: walls dark grey, free cells white, goal green, agent blue, start outlined; a reached map cell shows its
action as a small arrow, the goal cell of a map is green.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .envs.maze import MazeEnv
from .procedures.bfs_maps import GOAL, UNREACHED, bfs_maps

CELL = 18
WALL, FREE, GOAL_RGB, AGENT_RGB, PATH_RGB = (60, 60, 60), (255, 255, 255), (60, 170, 80), (40, 90, 220), (150, 185, 245)
REACHED, WRONG = (255, 236, 170), (220, 40, 40)
# Arrow triangles for actions 0..3 (down, right, up, left) in a unit cell, as (row, col) fractions.
_ARROWS = {0: ((0.3, 0.25), (0.3, 0.75), (0.75, 0.5)), 1: ((0.25, 0.3), (0.75, 0.3), (0.5, 0.75)),
           2: ((0.7, 0.25), (0.7, 0.75), (0.25, 0.5)), 3: ((0.25, 0.7), (0.75, 0.7), (0.5, 0.25))}


@dataclass
class Episode:
    walls: np.ndarray
    goal: tuple[int, int]
    path: list[tuple[int, int]]
    success: bool
    model_maps: np.ndarray | None  # (L, H, W) maps the policy generated at the first decision (None for BC)
    expert_maps: np.ndarray  # (d + 1, H, W) the expert's maps at the first decision


def _cell_box(x: int, y: int, origin=(0, 0)):
    top, left = origin[0] + x * CELL, origin[1] + y * CELL
    return left, top, left + CELL - 1, top + CELL - 1


def draw_maze(draw: ImageDraw.ImageDraw, walls, goal, path=(), agent=None, origin=(0, 0)) -> None:
    for (x, y), wall in np.ndenumerate(walls):
        draw.rectangle(_cell_box(x, y, origin), fill=WALL if wall else FREE, outline=(210, 210, 210))
    for x, y in path:
        draw.rectangle(_cell_box(x, y, origin), fill=PATH_RGB)
    draw.rectangle(_cell_box(*goal, origin), fill=GOAL_RGB)
    if path:
        draw.rectangle(_cell_box(*path[0], origin), outline=AGENT_RGB, width=2)
    if agent is not None:
        left, top, right, bottom = _cell_box(*agent, origin)
        draw.ellipse((left + 3, top + 3, right - 3, bottom - 3), fill=AGENT_RGB)


def draw_map(draw: ImageDraw.ImageDraw, walls, grid_map, reference=None, origin=(0, 0)) -> None:
    """One BFS map; with ``reference`` (the expert's map at the same level), differing cells are outlined in red."""
    for (x, y), value in np.ndenumerate(grid_map):
        box = _cell_box(x, y, origin)
        fill = WALL if walls[x, y] else GOAL_RGB if value == GOAL else REACHED if value < UNREACHED else FREE
        draw.rectangle(box, fill=fill, outline=(210, 210, 210))
        if value < UNREACHED:
            draw.polygon([(box[0] + c * CELL, box[1] + r * CELL) for r, c in _ARROWS[int(value)]], fill=(120, 80, 0))
        if reference is not None and value != reference[x, y]:
            draw.rectangle(box, outline=WRONG, width=2)


def run_episode(policy, maze_seed: int, size: int, wall_type: str, start_seed: int, max_steps: int) -> Episode:
    env = MazeEnv(size=size, wall_type=wall_type, maze_seed=maze_seed)
    obs, _ = env.reset(seed=start_seed)
    policy.reset()
    expert = bfs_maps(env.walls, env.goal, env.agent).maps
    path, model_maps, success = [tuple(env.agent)], None, False
    for step in range(max_steps):
        action, info = policy.act(obs, return_procedure=step == 0)
        if step == 0 and info.get("procedure") is not None and hasattr(info["procedure"], "maps"):
            model_maps = np.asarray(info["procedure"].maps)
        obs, _, terminated, _, _ = env.step(action)
        path.append(tuple(env.agent))
        if terminated:
            success = True
            break
    return Episode(np.asarray(env.walls), tuple(env.goal), path, success, model_maps, expert)


def _maps_panel(episode: Episode, level: int | None = None) -> Image.Image:
    """Model map (top) over expert map (bottom) at ``level`` (None: every level side by side)."""
    h, w = episode.walls.shape
    levels = range(max(len(episode.model_maps), len(episode.expert_maps))) if level is None else [level]
    image = Image.new("RGB", (len(levels) * (w * CELL + 6), 2 * (h * CELL + 6)), (245, 245, 245))
    draw = ImageDraw.Draw(image)
    for i, lvl in enumerate(levels):
        model = episode.model_maps[min(lvl, len(episode.model_maps) - 1)]
        expert = episode.expert_maps[min(lvl, len(episode.expert_maps) - 1)]
        draw_map(draw, episode.walls, model, reference=expert, origin=(0, i * (w * CELL + 6)))
        draw_map(draw, episode.walls, expert, origin=(h * CELL + 6, i * (w * CELL + 6)))
    return image


def _labelled(image: Image.Image, text: str) -> Image.Image:
    out = Image.new("RGB", (max(image.width, 8 * len(text)), image.height + 16), (255, 255, 255))
    out.paste(image, (0, 16))
    ImageDraw.Draw(out).text((2, 2), text, fill=(0, 0, 0))
    return out


def render(episode: Episode, title: str) -> tuple[Image.Image, list[Image.Image]]:
    """The summary PNG and the GIF frames."""
    h, w = episode.walls.shape
    maze = Image.new("RGB", (w * CELL, h * CELL))
    draw_maze(ImageDraw.Draw(maze), episode.walls, episode.goal, episode.path, agent=episode.path[-1])
    outcome = f"{title}: {'reached the goal' if episode.success else 'did not reach the goal'} in {len(episode.path) - 1} steps"
    panels = [_labelled(maze, "path taken")]
    if episode.model_maps is not None:
        panels.append(_labelled(_maps_panel(episode), "first decision: generated maps (top, red = differs) / expert (bottom)"))
    summary = Image.new("RGB", (sum(p.width for p in panels) + 10 * len(panels), max(p.height for p in panels) + 20),
                        (255, 255, 255))
    ImageDraw.Draw(summary).text((2, 2), outcome, fill=(0, 0, 0))
    left = 0
    for panel in panels:
        summary.paste(panel, (left, 20))
        left += panel.width + 10

    frames = []
    if episode.model_maps is not None:
        for level in range(max(len(episode.model_maps), len(episode.expert_maps))):
            frames.append(_labelled(_maps_panel(episode, level), f"BFS level {level}: generated / expert"))
    for t in range(len(episode.path)):
        frame = Image.new("RGB", (w * CELL, h * CELL))
        draw_maze(ImageDraw.Draw(frame), episode.walls, episode.goal, episode.path[: t + 1], agent=episode.path[t])
        frames.append(_labelled(frame, f"step {t}"))
    size = (max(f.width for f in frames), max(f.height for f in frames))
    frames = [_pad(f, size) for f in frames]
    return summary, frames


def _pad(image: Image.Image, size) -> Image.Image:
    out = Image.new("RGB", size, (255, 255, 255))
    out.paste(image, (0, 0))
    return out


def visualize(checkpoint, maze_seed: int, out_dir="figures", wall_type: str = "tunnel", start_seed: int = 0,
              max_steps: int = 100, frame_ms: int = 250) -> tuple[Path, Path]:
    """Roll the checkpoint's policy out once in maze ``maze_seed``; write the PNG and the GIF, return their paths."""
    from .policy import PCPolicy

    policy = PCPolicy.from_pretrained(checkpoint, procedure_cache=False)
    episode = run_episode(policy, maze_seed, policy.model.config.grid_size, wall_type, start_seed, max_steps)
    summary, frames = render(episode, f"{policy.model.config.objective.upper()} in maze {maze_seed}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png, gif = out / f"maze{maze_seed}.png", out / f"maze{maze_seed}.gif"
    summary.save(png)
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)
    return png, gif
