"""Result tables (markdown, CSV, JSON) and plots (PNG) of probe evaluations.

A `ResultTable` has one row per target and one column per method (feature extractor), optionally
with the paper's published number next to each of our columns ("<method> (paper)"; paper-only methods
such as EcD are appended). A method trained with several seeds (the hyper-representation, `seeded`
in `results_table_over`) keeps its per-seed scores; its value is their mean, printed "mean ± std"
(sample std, ddof 1), and `beats` says whether one score is above another by more than the larger std. Values are fractions in CSV and JSON (R² 0.964, accuracy 0.87, tau 0.41);
the markdown shows R² and accuracy in percent, as the paper prints them, and Kendall's tau as is.

Every file is written atomically (a temporary file in the same folder, then `os.replace`), so a reader
never sees half a table. `read_json` and `read_csv` read the tables back.

Plots (PNG via matplotlib's Agg canvas; pyplot's global state is untouched): `plot_predictions`
(predicted vs true per target; a confusion matrix for categorical targets), `plot_embedding` (2-D PCA
projection of features coloured by a property), `plot_scores` (bar chart of the primary score per
target and method).

Example (one call: evaluate the zoo, write table and plots, return both):
  >>> import os
  >>> from wsl_jax import zoo
  >>> from wsl_jax.evaluation import report
  >>> z = zoo.generate("tetris_seed", num_models=20, epochs=2, progress=False)
  >>> evaluation, table = report.report_zoo(z, "out/tetris_seed")
  >>> sorted(f for f in os.listdir("out/tetris_seed") if not f.endswith(".png"))
  ['results.csv', 'results.json', 'results.md']
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from wsl_jax.evaluation import evaluate, paper_results
from wsl_jax.zoo.io import atomic_write, atomic_write_text

TABLE_FORMAT_VERSION = 1
PAPER_SUFFIX = " (paper)"
STD_SUFFIX = " (std)"
METRICS = ("r2", "accuracy", "kendall_tau")
_METRIC_LABEL = {"r2": "R² %", "accuracy": "accuracy %", "kendall_tau": "Kendall τ"}


@dataclasses.dataclass(frozen=True)
class ResultTable:
  """Rows = targets, columns = methods; values are fractions (None = not available).

  Attributes:
    title: a caption.
    rows: target labels (target, or target@zoo for OOD results).
    methods: our methods, in column order.
    metrics: row -> "r2", "accuracy" or "kendall_tau".
    values: row -> method -> our score.
    paper: row -> method -> the published score (may name methods we did not run).
    paper_source: the paper table's key, if any.
    notes: lines printed under the table (dropped samples, skipped targets, diverged models).
    per_seed: row -> method -> its score per seed, for the methods trained with several seeds (their
      `values` are the means). Written to JSON (with the std) only when some method has two or more.
  """

  title: str
  rows: tuple[str, ...]
  methods: tuple[str, ...]
  metrics: dict[str, str]
  values: dict[str, dict[str, float | None]]
  paper: dict[str, dict[str, float | None]] = dataclasses.field(default_factory=dict)
  paper_source: str | None = None
  notes: tuple[str, ...] = ()
  per_seed: dict[str, dict[str, tuple[float | None, ...]]] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    object.__setattr__(self, "per_seed", {r: {m: tuple(v) for m, v in ms.items()}
                                          for r, ms in self.per_seed.items()})
    object.__setattr__(self, "rows", tuple(self.rows))
    object.__setattr__(self, "methods", tuple(self.methods))
    object.__setattr__(self, "notes", tuple(self.notes))
    # A row without any published number has no paper entry (so CSV and JSON round trips agree).
    object.__setattr__(self, "paper", {r: dict(v) for r, v in self.paper.items()
                                       if any(x is not None for x in v.values())})
    for r in self.rows:
      if self.metrics.get(r) not in METRICS:
        raise ValueError(f"row {r!r} needs a metric in {METRICS}, got {self.metrics.get(r)!r}")

  def value(self, row: str, method: str) -> float | None:
    return self.values.get(row, {}).get(method)

  def paper_value(self, row: str, method: str) -> float | None:
    return self.paper.get(row, {}).get(method)

  def std(self, row: str, method: str) -> float | None:
    """The sample std over seeds of a seeded method's score (None: a deterministic method or one seed)."""
    return mean_std(self.per_seed.get(row, {}).get(method, ()))["std"]

  def scores(self, row: str, method: str) -> float | tuple[float | None, ...] | None:
    """What `beats` compares: a seeded method's per-seed scores, else the (deterministic) value."""
    seeds = self.per_seed.get(row, {}).get(method)
    return seeds if seeds is not None else self.value(row, method)

  @property
  def multi_seed(self) -> bool:
    """Whether some method has scores of two or more seeds."""
    return any(len(v) > 1 for ms in self.per_seed.values() for v in ms.values())

  @property
  def paper_only_methods(self) -> tuple[str, ...]:
    seen = []
    for r in self.rows:
      for m, v in self.paper.get(r, {}).items():
        if m not in self.methods and m not in seen and v is not None:
          seen.append(m)
    return tuple(seen)

  def columns(self) -> list[tuple[str, str, str]]:
    """(header, method, "ours" | "paper") for every column, paper columns next to ours."""
    has_paper = {m for r in self.rows for m, v in self.paper.get(r, {}).items() if v is not None}
    cols = []
    for m in self.methods:
      cols.append((m, m, "ours"))
      if m in has_paper:
        cols.append((m + PAPER_SUFFIX, m, "paper"))
    cols += [(m + PAPER_SUFFIX, m, "paper") for m in self.paper_only_methods]
    return cols

  def cell(self, row: str, method: str, source: str) -> float | None:
    return self.value(row, method) if source == "ours" else self.paper_value(row, method)


# ---- building a table from an evaluation ------------------------------------------------------------

def results_table(evaluation: Any, paper: str | paper_results.PaperTable | None = "auto",
                  title: str | None = None) -> ResultTable:
  """One table of an `evaluate.Evaluation`: its primary score per target and method.

  Args:
    evaluation: the harness result.
    paper: a paper table (or its key) for the "(paper)" columns; "auto" picks the zoo's table
      (`paper_results.for_zoo`) for the paper protocol; None for no paper columns.
    title: the caption (default: zoo and protocol).
  """
  rows, metrics, values = [], {}, {}
  for r in evaluation.results:
    if r.row not in values:
      rows.append(r.row)
      values[r.row] = {}
      metrics[r.row] = r.metric
    values[r.row][r.method] = _clean(r.score)
  table_ref = None
  if paper == "auto":
    table_ref = paper_results.for_zoo(evaluation.zoo) if evaluation.protocol == "paper" else None
  elif paper is not None:
    table_ref = paper_results.get(paper)
  paper_vals = {}
  if table_ref is not None:
    for row in rows:
      prow = table_ref.row_for(row)
      if prow is not None and _compatible(metrics[row], table_ref.metric_of(prow)):
        paper_vals[row] = {m: table_ref.fraction(prow, m) for m in table_ref.columns}
  return ResultTable(title=title or f"{evaluation.zoo}: {evaluation.protocol} protocol", rows=tuple(rows),
                     methods=tuple(evaluation.methods), metrics=metrics, values=values, paper=paper_vals,
                     paper_source=table_ref.key if table_ref is not None else None,
                     notes=tuple(evaluation_notes(evaluation)))


def results_table_over(evaluations: Sequence[Any], seeded: Sequence[str] = (),
                       paper: str | paper_results.PaperTable | None = "auto", title: str | None = None) -> ResultTable:
  """One table of the evaluations of several seeds of the same zoo and split.

  The methods in `seeded` (e.g. "EcD": the hyper-representation trained with seeds s, s+1, ...) must be
  in every evaluation; their value is the mean of their scores and `per_seed` keeps each. Every other
  method is taken from `evaluations[0]` (its features do not depend on the seed), as are the notes. One
  evaluation gives `results_table`'s table (plus `per_seed` of one value, not written to JSON).
  """
  if not evaluations:
    raise ValueError("results_table_over needs at least one evaluation")
  first = results_table(evaluations[0], paper=paper, title=title)
  wanted = [(r.row, r.method) for r in evaluations[0].results if r.method in seeded]
  scores: dict[str, dict[str, list[float | None]]] = {}
  for i, ev in enumerate(evaluations):
    have = {(r.row, r.method): _clean(r.score) for r in ev.results}
    for row, m in wanted:
      if (row, m) not in have:
        raise ValueError(f"evaluation {i} has no {m} score of {row!r}; a seeded method must be probed in every "
                         "evaluation")
      scores.setdefault(row, {}).setdefault(m, []).append(have[(row, m)])
  values = {r: dict(v) for r, v in first.values.items()}
  for row, ms in scores.items():
    for m, vals in ms.items():
      values[row][m] = mean_std(vals)["mean"] if len(vals) > 1 else vals[0]
  return dataclasses.replace(first, values=values, per_seed=scores)


def mean_std(values: Sequence[float | None]) -> dict[str, Any]:
  """{"mean", "std", "values"} of per-seed scores: mean and sample std (ddof 1) of the finite ones;
  std None with fewer than two (no spread measured), mean None with none."""
  vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
  out = {"mean": float(np.mean(vals)) if vals else None,
         "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else None,
         "values": [None if v is None else float(v) for v in values]}
  return out


def beats(a: float | Sequence[float | None] | None, b: float | Sequence[float | None] | None) -> bool:
  """Whether score A is above score B by more than the larger of their spreads.

  Each of `a`, `b` is a float (a deterministic score, e.g. of W or s(W): spread 0) or the per-seed
  scores of a seeded method (spread: their sample std). A seeded method with a single seed has no
  measured spread: it neither beats nor is beaten. A missing score (None) never beats.

    >>> beats([0.80, 0.82, 0.81], 0.79), beats([0.80, 0.82, 0.81], 0.805), beats([0.9], 0.1)
    (True, False, False)
  """
  def summary(x):
    if x is None:
      return None, None
    if isinstance(x, (int, float, np.floating)):
      return (None, None) if not math.isfinite(float(x)) else (float(x), 0.0)
    st = mean_std(list(x))
    return st["mean"], st["std"]
  (ma, sa), (mb, sb) = summary(a), summary(b)
  if ma is None or mb is None or sa is None or sb is None:
    return False
  return ma - mb > max(sa, sb)


def wins(table: ResultTable, method: str = "EcD", against: str | None = None) -> dict[str, bool]:
  """row -> whether `method` `beats` `against` there (None: the row's best other column by value).

  Rows where `method` has no score, or (with `against` None) no other column has one, are left out.
  """
  out = {}
  for row in table.rows:
    others = [m for m in table.methods if m != method and table.value(row, m) is not None]
    if table.value(row, method) is None or (against is None and not others):
      continue
    rival = against if against is not None else max(others, key=lambda m: table.value(row, m))
    out[row] = beats(table.scores(row, method), table.scores(row, rival))
  return out


def wins_line(won: dict[str, bool], method: str, rival: str) -> str:
  """One sentence for a report: on how many rows `method` beat `rival` beyond the spread, and which."""
  return (f"{method} above {rival} by more than the spread (report.beats) on {sum(won.values())} of {len(won)} "
          f"targets: {', '.join(t for t, b in won.items() if b) or 'none'}")


def _compatible(ours: str, theirs: str) -> bool:
  return ours == theirs


def _clean(v: Any) -> float | None:
  if v is None:
    return None
  v = float(v)
  return None if math.isnan(v) else v


def evaluation_notes(evaluation: Any) -> list[str]:
  """What was excluded or dropped, in words (never silently)."""
  notes = []
  for zoo, n in evaluation.excluded_diverged.items():
    if n:
      notes.append(f"{n} diverged model(s) excluded ({zoo}).")
  for split, n in evaluation.dropped_nonfinite.items():
    if n:
      notes.append(f"{n} {split} sample(s) with non-finite weights dropped.")
  seen = set()
  for r in evaluation.results:
    key = (r.row, tuple(sorted(r.dropped.items())))
    if any(r.dropped.values()) and key not in seen:
      seen.add(key)
      parts = ", ".join(f"{s} {n}" for s, n in r.dropped.items() if n)
      notes.append(f"{r.row}: samples with a missing (NaN) target dropped: {parts}.")
  for target, why in evaluation.skipped.items():
    notes.append(f"{target}: not probed ({why}).")
  m = evaluation.models
  notes.append(f"Models per split: train {m.get('train')}, val {m.get('val')}, test {m.get('test')}.")
  return notes


# ---- formats -----------------------------------------------------------------------------------------

def _fmt(v: float | None, metric: str, std: float | None = None) -> str:
  if v is None:
    return "–"
  text = f"{v:.3f}" if metric == "kendall_tau" else f"{100.0 * v:.1f}"
  if std is not None:
    text += f" ± {std:.3f}" if metric == "kendall_tau" else f" ± {100.0 * std:.1f}"
  return text


def to_markdown(table: ResultTable) -> str:
  """A markdown table: R² and accuracy in percent, Kendall's tau as a fraction; the best of ours bold."""
  cols = table.columns()
  lines = [f"**{table.title}**", "", "| target | metric | " + " | ".join(h for h, _, _ in cols) + " |",
           "|---|---|" + "---:|" * len(cols)]
  for row in table.rows:
    metric = table.metrics[row]
    ours = [table.value(row, m) for m in table.methods]
    best = max((v for v in ours if v is not None), default=None)
    cells = []
    for _, m, src in cols:
      v = table.cell(row, m, src)
      text = _fmt(v, metric, table.std(row, m) if src == "ours" else None)
      if src == "ours" and v is not None and v == best and len(table.methods) > 1:
        text = f"**{text}**"
      cells.append(text)
    lines.append(f"| {row} | {_METRIC_LABEL[metric]} | " + " | ".join(cells) + " |")
  if table.multi_seed:
    counts = sorted({len(v) for ms in table.per_seed.values() for v in ms.values()})
    seeded = list(dict.fromkeys(m for ms in table.per_seed.values() for m in ms))
    lines += ["", f"{', '.join(seeded)}: mean ± std (sample std) over {'/'.join(map(str, counts))} seeds of the "
              "encoder; the other columns do not depend on its seed."]
  if table.paper_source:
    lines += ["", f"Paper columns: `{table.paper_source}` (wsl_jax.evaluation.paper_results)."]
  if table.notes:
    lines += [""] + [f"- {n}" for n in table.notes]
  return "\n".join(lines) + "\n"


def to_csv(table: ResultTable) -> str:
  """Wide CSV: target, metric, then one column per method (and "<method> (paper)"; with several seeds
  also "<method> (std)" after a seeded method); fractions."""
  buf = io.StringIO()
  w = csv.writer(buf, lineterminator="\n")
  cols = table.columns()
  if table.multi_seed:
    seeded = {m for ms in table.per_seed.values() for m, v in ms.items() if len(v) > 1}
    cols = [c for h, m, src in cols
            for c in ([(h, m, src)] + ([(m + STD_SUFFIX, m, "std")] if src == "ours" and m in seeded else []))]
  w.writerow(["target", "metric"] + [h for h, _, _ in cols])
  for row in table.rows:
    w.writerow([row, table.metrics[row]] + [_csv_cell(table.std(row, m) if s == "std" else table.cell(row, m, s))
                                            for _, m, s in cols])
  return buf.getvalue()


def _csv_cell(v: float | None) -> str:
  return "" if v is None else repr(float(v))


def to_json_dict(table: ResultTable, evaluation: Any = None) -> dict[str, Any]:
  d = {"format_version": TABLE_FORMAT_VERSION, "title": table.title, "rows": list(table.rows),
       "methods": list(table.methods), "metrics": dict(table.metrics), "values": table.values,
       "paper": table.paper, "paper_source": table.paper_source, "notes": list(table.notes)}
  if table.multi_seed:
    d["per_seed"] = {r: {m: list(v) for m, v in ms.items()} for r, ms in table.per_seed.items()}
    d["std"] = {r: {m: table.std(r, m) for m in ms} for r, ms in table.per_seed.items()}
  if evaluation is not None:
    d["evaluation"] = evaluation.to_dict()
  return d


def to_json(table: ResultTable, evaluation: Any = None) -> str:
  """JSON of the table (and, if given, every probe's details: alpha, sample counts, drops)."""
  return json.dumps(to_json_dict(table, evaluation), indent=1, allow_nan=False, default=_json_default)


def _json_default(o: Any) -> Any:
  if isinstance(o, np.generic):
    return o.item()
  if isinstance(o, np.ndarray):
    return o.tolist()
  raise TypeError(f"cannot write {type(o).__name__} to JSON")


def table_from_json_dict(d: Mapping[str, Any]) -> ResultTable:
  version = d.get("format_version")
  if version != TABLE_FORMAT_VERSION:
    raise ValueError(f"result table format_version {version!r} is not supported (this code reads "
                     f"{TABLE_FORMAT_VERSION})")
  missing = {"title", "rows", "methods", "metrics", "values"} - set(d)
  if missing:
    raise ValueError(f"result table JSON lacks {sorted(missing)}")
  return ResultTable(title=d["title"], rows=tuple(d["rows"]), methods=tuple(d["methods"]),
                     metrics=dict(d["metrics"]), values={r: dict(v) for r, v in d["values"].items()},
                     paper={r: dict(v) for r, v in d.get("paper", {}).items()},
                     paper_source=d.get("paper_source"), notes=tuple(d.get("notes", ())),
                     per_seed={r: dict(v) for r, v in d.get("per_seed", {}).items()})


def read_json(path: str | os.PathLike) -> ResultTable:
  """The table of a JSON file written by `write_table` / `write_report`."""
  with open(path, encoding="utf-8") as f:
    return table_from_json_dict(json.load(f))


def read_json_details(path: str | os.PathLike) -> dict[str, Any] | None:
  """The per-probe details stored next to the table (None if the file has none)."""
  with open(path, encoding="utf-8") as f:
    return json.load(f).get("evaluation")


def read_csv(path: str | os.PathLike, title: str = "") -> ResultTable:
  """The table of a CSV file written by `write_table` (title, notes and per-seed scores are not in the
  CSV; its std columns are skipped)."""
  with open(path, encoding="utf-8", newline="") as f:
    reader = csv.reader(f)
    header = next(reader, None)
    if header is None or header[:2] != ["target", "metric"]:
      raise ValueError(f"{path}: not a result table CSV (the header must start with target,metric)")
    rows, metrics, values, paper = [], {}, {}, {}
    methods: list[str] = []
    for h in header[2:]:
      if not h.endswith((PAPER_SUFFIX, STD_SUFFIX)) and h not in methods:
        methods.append(h)
    for line in reader:
      if not line:
        continue
      if len(line) != len(header):
        raise ValueError(f"{path}: a row has {len(line)} cells, the header {len(header)}")
      row, metric = line[0], line[1]
      rows.append(row)
      metrics[row] = metric
      values[row], paper[row] = {}, {}
      for h, cell in zip(header[2:], line[2:]):
        v = float(cell) if cell != "" else None
        if h.endswith(STD_SUFFIX):  # the per-seed scores are in the JSON only
          continue
        if h.endswith(PAPER_SUFFIX):
          paper[row][h[:-len(PAPER_SUFFIX)]] = v
        else:
          values[row][h] = v
  return ResultTable(title=title, rows=tuple(rows), methods=tuple(methods), metrics=metrics, values=values,
                     paper=paper)


# ---- atomic writes -----------------------------------------------------------------------------------

def write_text(path: str | os.PathLike, text: str) -> str:
  return atomic_write_text(path, text)


def write_table(table: ResultTable, prefix: str | os.PathLike, evaluation: Any = None) -> dict[str, str]:
  """Write `<prefix>.md`, `<prefix>.csv` and `<prefix>.json`; returns their paths."""
  prefix = os.fspath(prefix)
  return {"markdown": write_text(prefix + ".md", to_markdown(table)),
          "csv": write_text(prefix + ".csv", to_csv(table)),
          "json": write_text(prefix + ".json", to_json(table, evaluation))}


# ---- plots -------------------------------------------------------------------------------------------

def _figure(**kwargs: Any) -> Any:
  """A matplotlib Figure on the Agg canvas; no pyplot, so no global backend or figure state."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415  (import on first plot)
  from matplotlib.figure import Figure  # noqa: PLC0415
  fig = Figure(**kwargs)
  FigureCanvasAgg(fig)
  return fig


def _save_figure(fig: Any, path: str | os.PathLike) -> str:
  return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100),
                       binary=True)


def _grid(n: int) -> tuple[int, int]:
  cols = min(4, max(1, n))
  return int(math.ceil(n / cols)), cols


def _thin(n: int, max_points: int) -> np.ndarray:
  """An even, deterministic subset of range(n) of at most max_points (scatter plots stay readable)."""
  return np.arange(n) if n <= max_points else np.linspace(0, n - 1, max_points).round().astype(np.int64)


def plot_predictions(results: Sequence[Any], path: str | os.PathLike, title: str = "",
                     max_points: int = 5000) -> str:
  """Predicted vs true on the test samples, one panel per result (pass one method's results).

  Scatter panels show at most `max_points` evenly spaced samples; the scores in the titles use all.
  """
  results = [r for r in results if r.y_true is not None and r.y_pred is not None]
  if not results:
    raise ValueError("no results with stored predictions to plot")
  nr, nc = _grid(len(results))
  fig = _figure(figsize=(3.4 * nc, 3.2 * nr))
  axes = fig.subplots(nr, nc, squeeze=False)
  for ax, r in zip(axes.ravel(), results):
    if r.task == "regression":
      keep = _thin(len(r.y_true), max_points)
      ax.scatter(r.y_true[keep], r.y_pred[keep], s=3, alpha=0.35, linewidths=0)
      lo = float(min(np.min(r.y_true), np.min(r.y_pred)))
      hi = float(max(np.max(r.y_true), np.max(r.y_pred)))
      ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
      ax.set_xlabel("true")
      ax.set_ylabel("predicted")
      ax.set_title(f"{r.row} ({r.method})\nR² {r.r2:.3f}, τ {r.kendall_tau:.3f}", fontsize=9)
    else:
      classes = np.unique(np.concatenate([r.y_true, r.y_pred]))
      t = np.searchsorted(classes, r.y_true)
      p = np.searchsorted(classes, r.y_pred)
      conf = np.zeros((classes.size, classes.size))
      np.add.at(conf, (t, p), 1)
      ax.imshow(conf, cmap="Blues")
      ax.set_xticks(range(classes.size), [str(c) for c in classes], rotation=45, fontsize=7)
      ax.set_yticks(range(classes.size), [str(c) for c in classes], fontsize=7)
      ax.set_xlabel("predicted")
      ax.set_ylabel("true")
      ax.set_title(f"{r.row} ({r.method})\naccuracy {r.accuracy:.3f}", fontsize=9)
  for ax in axes.ravel()[len(results):]:
    ax.axis("off")
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  return _save_figure(fig, path)


def project_2d(features: Any) -> np.ndarray:
  """The first two principal components of `features` (S, d) (zero-padded if d < 2)."""
  x = np.asarray(features, np.float64)
  if x.ndim != 2 or x.shape[0] < 2:
    raise ValueError(f"need (samples >= 2, features) to project, got shape {x.shape}")
  x = x - x.mean(axis=0)
  u, s, _ = np.linalg.svd(x, full_matrices=False)
  z = u[:, :2] * s[:2]
  return np.pad(z, ((0, 0), (0, 2 - z.shape[1])))


def plot_embedding(features: Any, color: Any, path: str | os.PathLike, title: str = "",
                   color_name: str = "", max_points: int = 10000) -> str:
  """A 2-D PCA projection of `features`, coloured by `color` (numbers: colour bar; labels: legend).

  The projection uses every sample; at most `max_points` evenly spaced ones are drawn.
  """
  z = project_2d(features)
  color = np.asarray(color)
  if color.shape != (z.shape[0],):
    raise ValueError(f"color has shape {color.shape}, expected ({z.shape[0]},)")
  keep = _thin(z.shape[0], max_points)
  z, color = z[keep], color[keep]
  fig = _figure(figsize=(5.0, 4.2))
  ax = fig.subplots()
  if np.issubdtype(color.dtype, np.number):
    ok = np.isfinite(color)
    sc = ax.scatter(z[ok, 0], z[ok, 1], c=color[ok], s=4, cmap="viridis", linewidths=0)
    fig.colorbar(sc, ax=ax, label=color_name)
  else:
    for label in np.unique(color.astype(str)):
      m = color.astype(str) == label
      ax.scatter(z[m, 0], z[m, 1], s=4, label=label, linewidths=0)
    ax.legend(title=color_name, markerscale=3, fontsize=7)
  ax.set_xlabel("PC 1")
  ax.set_ylabel("PC 2")
  ax.set_title(title, fontsize=10)
  fig.tight_layout()
  return _save_figure(fig, path)


def plot_scores(table: ResultTable, path: str | os.PathLike, paper: bool = True) -> str:
  """Grouped bars of our score per target (groups) and method (bars); paper values as black ticks."""
  rows, methods = table.rows, table.methods
  width = 0.8 / max(1, len(methods))
  fig = _figure(figsize=(min(14.0, max(5.0, 1.5 + 0.22 * len(rows) * len(methods))), 3.8))
  ax = fig.subplots()
  x = np.arange(len(rows))
  for i, m in enumerate(methods):
    vals = [table.value(r, m) for r in rows]
    ax.bar(x + (i - (len(methods) - 1) / 2) * width, [np.nan if v is None else v for v in vals], width,
           label=m)
    if paper:
      pv = [table.paper_value(r, m) for r in rows]
      xs = [xi + (i - (len(methods) - 1) / 2) * width for xi, v in zip(x, pv) if v is not None]
      ax.scatter(xs, [v for v in pv if v is not None], marker="_", color="k", s=80, zorder=3)
  ax.axhline(0.0, color="k", lw=0.6)
  ax.set_xticks(x, [f"{r}\n({table.metrics[r]})" for r in rows], fontsize=7)
  ax.set_ylabel("score (fraction)")
  ax.set_title(table.title + ("  (black ticks: paper)" if paper and table.paper else ""), fontsize=9)
  ax.legend(fontsize=7, ncol=min(len(methods), 6))
  fig.tight_layout()
  return _save_figure(fig, path)


def safe_name(text: str) -> str:
  """A file-name-safe version of a method or target name ("s(W)" -> "s_W")."""
  return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def write_report(evaluation: Any, out_dir: str | os.PathLike, paper: Any = "auto", plots: bool = True,
                 color_by: str = "test_acc", name: str = "results", table: ResultTable | None = None
                 ) -> dict[str, str]:
  """Write the table (md, csv, json with every probe's details) and the plots into `out_dir`.

  `table`: the table to write (e.g. `results_table_over` several seeds; the probe details and plots
  are then `evaluation`'s, the first seed's); default `results_table(evaluation, paper)`.

  Returns:
    {"markdown", "csv", "json", "scores", "predictions_<method>", "embedding_<method>"} -> path.
  """
  out_dir = os.fspath(out_dir)
  table = results_table(evaluation, paper=paper) if table is None else table
  paths = write_table(table, os.path.join(out_dir, name), evaluation)
  if not plots:
    return paths
  paths["scores"] = plot_scores(table, os.path.join(out_dir, "scores.png"))
  for m in evaluation.methods:
    rs = [r for r in evaluation.results if r.method == m]
    if rs:
      paths[f"predictions_{m}"] = plot_predictions(
          rs, os.path.join(out_dir, f"predictions_{safe_name(m)}.png"), title=f"{evaluation.zoo}: {m}")
  color = evaluation.colors.get(color_by)
  if color is not None:
    for m, feats in evaluation.embeddings.items():
      paths[f"embedding_{m}"] = plot_embedding(
          feats, color, os.path.join(out_dir, f"embedding_{safe_name(m)}.png"),
          title=f"{evaluation.zoo}: {m} (test samples)", color_name=color_by)
  return paths


def report_zoo(zoo: Any, out_dir: str | os.PathLike | None = None, extractors: Any = None, *,
               paper: Any = "auto", plots: bool = True, **evaluate_kwargs: Any) -> tuple[Any, ResultTable]:
  """Evaluate a zoo and build its table in one call (and write everything when `out_dir` is given).

  Args:
    zoo: the zoo.
    out_dir: folder for results.{md,csv,json} and the plots; None: nothing is written.
    extractors: feature extractors (default: the paper's baselines W, PCAl, PCAc, PCAr, s(W)).
    paper: paper table for the "(paper)" columns ("auto": the zoo's own; None: none).
    plots: write the PNG plots too (with `out_dir`).
    **evaluate_kwargs: passed to `evaluate.evaluate_zoo` (protocol, split, targets, config, ...).

  Returns:
    (the `evaluate.Evaluation`, the `ResultTable`).
  """
  ev = evaluate.evaluate_zoo(zoo, extractors, **evaluate_kwargs)
  if out_dir is not None:
    write_report(ev, out_dir, paper=paper, plots=plots)
  return ev, results_table(ev, paper=paper)
