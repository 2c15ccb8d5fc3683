"""Helpers shared by the TETRIS experiments `tetris_hyp` and `ablations` (not an entry point).

`experiments.common` holds the plumbing of every experiment (arguments, zoo cache, output files); this
module holds what only the TETRIS-HYP and ablation experiments share: the encoder sizes of their
presets, and small plot and formatting helpers.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any


def tiny_ssl(epochs: int = 2, batch_size: int = 48):
  """A seconds-long encoder for the smoke presets: d 16, 2 heads, one block, L 8 (FF baseline: 2
  hidden layers), so that compilation stays short.

  The batch size is a multiple of 4 and of 2 (the test suite runs on 4 virtual CPU devices, the entry
  points on one per core).
  """
  from wsl_jax import configs
  small = configs.preset("small")
  return dataclasses.replace(
      small, epochs=epochs, batch_size=batch_size, eval_every=1, checkpoint_every=1, eval_batch_size=96,
      model=dataclasses.replace(small.model, dim=16, heads=2, ff_dim=32, blocks=1, latent_dim=8, head_layers=1,
                                head_hidden=16, head_out=8, ff_hidden_layers=2))


def narrow_ssl(base, *, dim: int, heads: int, epochs: int, lr: float, batch_size: int | None = None,
               latent_dim: int | None = None, eval_every: int = 10):
  """`base` (a paper preset) with a narrower transformer (d = `dim`, FF 2d) and a shorter schedule."""
  model = dataclasses.replace(base.model, dim=dim, heads=heads, ff_dim=2 * dim,
                              latent_dim=latent_dim or base.model.latent_dim)
  return dataclasses.replace(base, model=model, epochs=epochs, lr=lr, eval_every=eval_every,
                             checkpoint_every=eval_every, batch_size=batch_size or base.batch_size)


def mean_std(values: Sequence[float]) -> dict[str, Any]:
  """{"mean", "std" (ddof 0; 0 for one value), "values"} of finite numbers (None if there are none)."""
  import numpy as np
  vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
  if not vals:
    return {"mean": None, "std": None, "values": [None if v is None else float(v) for v in values]}
  return {"mean": float(np.mean(vals)), "std": float(np.std(vals)), "values": [float(v) for v in values]}


def fmt_pct(stat: Mapping[str, Any] | None, paper: float | None = None, std: bool = True) -> str:
  """"84.1 ± 1.2 (84.1)": a mean ± std of fractions in percent, the paper's value (percent) in brackets."""
  if stat is None or stat.get("mean") is None:
    text = "n/a"
  else:
    text = f"{100 * stat['mean']:.1f}"
    if std and len(stat.get("values", [])) > 1:
      text += f" ± {100 * stat['std']:.1f}"
  if paper is not None:
    text += f" ({paper:.1f})"
  return text


HATCHES = ("", "///", "...", "xx", "\\\\")


def _bar_styles(names: Sequence[str]) -> dict[str, tuple[Any, str]]:
  """A distinct (colour, hatch) per bar. Names "<group> / <variant>" (e.g. "EcD / P,E") get a colour
  per variant and a hatch per group, so 24 cells stay tellable apart; others cycle the colours and
  change the hatch every ten."""
  import matplotlib
  parts = [n.split(" / ", 1) for n in names]
  if all(len(p) == 2 for p in parts):
    groups = list(dict.fromkeys(p[0] for p in parts))
    variants = list(dict.fromkeys(p[1] for p in parts))
    cmap = matplotlib.colormaps["tab10" if len(variants) <= 10 else "tab20"]
    return {n: (cmap(variants.index(v) % cmap.N), HATCHES[groups.index(g) % len(HATCHES)])
            for n, (g, v) in zip(names, parts)}
  cmap = matplotlib.colormaps["tab10"]
  return {n: (cmap(i % 10), HATCHES[(i // 10) % len(HATCHES)]) for i, n in enumerate(names)}


def plot_cells(cells: Mapping[str, Mapping[str, Mapping[str, Any]]], metrics: Sequence[str], path: str,
               title: str = "", paper: Mapping[str, Mapping[str, float | None]] | None = None) -> str:
  """Grouped bar chart: one group per metric, one bar per cell (mean, std as error bar); paper values
  (percent) as black ticks."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import numpy as np

  names = list(cells)
  styles = _bar_styles(names)
  width = 0.8 / max(1, len(names))
  fig, ax = plt.subplots(figsize=(min(16.0, max(6.0, 0.9 * len(metrics) * max(1, len(names)) * 0.35 + 3)), 4.2))
  x = np.arange(len(metrics))
  for i, name in enumerate(names):
    means = [cells[name].get(m, {}).get("mean") for m in metrics]
    stds = [cells[name].get(m, {}).get("std") for m in metrics]
    pos = x + (i - (len(names) - 1) / 2) * width
    color, hatch = styles[name]
    ax.bar(pos, [np.nan if v is None else v for v in means], width, color=color, hatch=hatch,
           edgecolor="white" if hatch else None, linewidth=0,
           yerr=[0.0 if s is None else s for s in stds], label=name, capsize=2)
    if paper and name in paper:
      pv = [paper[name].get(m) for m in metrics]
      ax.scatter([p for p, v in zip(pos, pv) if v is not None], [v / 100 for v in pv if v is not None],
                 marker="_", color="k", s=60, zorder=3)
  ax.axhline(0.0, color="k", lw=0.6)
  ax.set_xticks(x, list(metrics), fontsize=8)
  ax.set_ylabel("R² (fraction)")
  ax.set_ylim(bottom=max(-0.5, ax.get_ylim()[0]))
  ax.set_title(title + ("  (black ticks: paper)" if paper else ""), fontsize=9)
  ax.legend(fontsize=7, ncol=min(len(names), 8), loc="upper center", bbox_to_anchor=(0.5, -0.12),
            frameon=False)
  fig.tight_layout()
  tmp = path + ".tmp.png"
  fig.savefig(tmp, dpi=100)
  plt.close(fig)
  os.replace(tmp, path)
  return path
