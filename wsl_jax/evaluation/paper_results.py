"""The paper's published numbers (Schürholt et al. 2021, rebuilt in `reference.md` §8) as data.

Each table is a `PaperTable`: rows and columns labelled as the paper labels them, values as published
(percent for R² and accuracy, plain fractions for Kendall's tau and weight variances), `None` for
cells the paper leaves empty, and the cells whose reading from the garbled PDF is uncertain (marked "?"
in reference.md) listed in `uncertain`.

For result tables, `PaperTable.lookup(target, method)` takes wsl_jax's target names (`test_acc`,
`epoch`, `ggap`, `f1_class_0`, `lr`, `activation`, ...) and method names (`W`, `s(W)`, `PCAl`, ...)
and returns the published value as a fraction (R² 96.4 % -> 0.964), the unit our probes report.

Example:
  >>> from wsl_jax.evaluation import paper_results
  >>> paper_results.TABLES["table5_tetris_seed"].lookup("test_acc", "s(W)")
  0.8690000000000001
"""

from __future__ import annotations

import dataclasses

# Paper row label -> wsl_jax target names it stands for.
TARGET_ALIASES: dict[str, tuple[str, ...]] = {
    "Eph": ("epoch",),
    "Acc": ("test_acc",),
    "GGap": ("ggap",),
    "F1C0": ("f1_class_0",),
    "F1C1": ("f1_class_1",),
    "F1C2": ("f1_class_2",),
    "F1C3": ("f1_class_3",),
    "LR": ("lr", "learning_rate"),
    "Act": ("activation",),
    "Init": ("init", "initializer", "init_method", "w_init"),
    "Opt": ("optimizer",),
    "L2": ("l2reg", "l2", "weight_decay", "wd"),
    "Drop": ("dropout",),
    "TF": ("train_fraction",),
    "Rec": ("reconstruction",),
}
_ROW_KEYS = {"EPH": "Eph", "ACC": "Acc", "GGAP": "GGap", "INIT": "Init", "ACT": "Act", "OPT": "Opt",
             "ℓ2-REG": "L2", "DROP": "Drop", "Rec.": "Rec"}


def target_key(label: str) -> str:
  """The canonical paper label of a row (EPH and Eph are both "Eph")."""
  return _ROW_KEYS.get(label, label)


@dataclasses.dataclass(frozen=True)
class PaperTable:
  """One published table.

  Attributes:
    key: identifier, e.g. "table5_tetris_seed".
    title: what the table is (caption, zoo, model).
    rows: row labels as published.
    columns: column labels as published (methods, or targets for the ablation tables).
    values: one tuple per row, one value per column; None where the paper has no number.
    unit: "percent" or "fraction" (how the values are published).
    fraction_columns: columns of a percent table that are published as plain numbers.
    metric: per row label: "r2", "accuracy" or "kendall_tau" (default "r2").
    uncertain: (row, column) cells whose reading is uncertain.
    note: caveats from reference.md.
  """

  key: str
  title: str
  rows: tuple[str, ...]
  columns: tuple[str, ...]
  values: tuple[tuple[float | None, ...], ...]
  unit: str = "percent"
  fraction_columns: frozenset[str] = frozenset()
  metric: dict[str, str] = dataclasses.field(default_factory=dict)
  uncertain: frozenset[tuple[str, str]] = frozenset()
  note: str = ""

  def __post_init__(self):
    if len(self.values) != len(self.rows):
      raise ValueError(f"{self.key}: {len(self.rows)} rows but {len(self.values)} value rows")
    for r, v in zip(self.rows, self.values):
      if len(v) != len(self.columns):
        raise ValueError(f"{self.key}: row {r!r} has {len(v)} values for {len(self.columns)} columns")
    if self.unit not in ("percent", "fraction"):
      raise ValueError(f"{self.key}: unit must be percent or fraction, got {self.unit!r}")

  def value(self, row: str, column: str) -> float | None:
    """The published value of a cell (as printed)."""
    if row not in self.rows:
      raise KeyError(f"{self.key} has no row {row!r}; rows: {self.rows}")
    if column not in self.columns:
      raise KeyError(f"{self.key} has no column {column!r}; columns: {self.columns}")
    return self.values[self.rows.index(row)][self.columns.index(column)]

  def fraction(self, row: str, column: str) -> float | None:
    """The published value as a fraction (percent / 100)."""
    v = self.value(row, column)
    if v is None:
      return None
    return v / 100.0 if self.unit == "percent" and column not in self.fraction_columns else v

  def metric_of(self, row: str) -> str:
    return self.metric.get(row, "r2")

  def row_for(self, target: str) -> str | None:
    """The row label that stands for a wsl_jax target name (or the label itself), if any."""
    for r in self.rows:
      if r == target or target in TARGET_ALIASES.get(target_key(r), ()):
        return r
    return None

  def lookup(self, target: str, method: str) -> float | None:
    """The published value (as a fraction) for a wsl_jax target and method, or None."""
    row = self.row_for(target)
    if row is None or method not in self.columns:
      return None
    return self.fraction(row, method)

  def is_uncertain(self, row: str, column: str) -> bool:
    return (row, column) in self.uncertain


def _table(key, title, rows, columns, values, **kw) -> PaperTable:
  return PaperTable(key=key, title=title, rows=tuple(rows), columns=tuple(columns),
                    values=tuple(tuple(v) for v in values), **kw)


_ABL_COLS = ("Rec.", "Eph", "Acc", "F1C0", "F1C1", "F1C2", "F1C3")

ARCHITECTURE_ABLATION = _table(
    "architecture_ablation", "Architecture ablation, TETRIS-SEED, EcD loss (R² %; the text calls it Table 1)",
    ("FF", "AttW", "AttW+t", "AttN", "AttN+t"), _ABL_COLS,
    ((0.0, 6.8, 80.0, 85.3, 57.3, 53.9, 64.5),
     (80.1, 95.3, 71.1, 47.9, 69.0, 49.9, 61.3),
     (74.1, 95.4, 88.6, 65.6, 69.8, 69.9, 86.8),
     (89.4, 97.1, 88.4, 71.4, 80.8, 69.1, 82.3),
     (84.1, 97.0, 90.2, 70.7, 75.9, 69.4, 86.6)),
    uncertain=frozenset(("FF", c) for c in _ABL_COLS),
    note="The FF row is a sequential reading of the garbled extraction and may be shifted.")

SSL_LOSS_ABLATION = _table(
    "ssl_loss_ablation", "SSL-loss ablation, TETRIS-SEED, AttN+t (R² %; the text calls it Table 2)",
    ("Ec", "ED", "EcD", "Ec+D"), _ABL_COLS,
    ((None, 96.7, 90.8, 67.7, 72.0, 74.4, 85.8),
     (96.1, 88.3, 68.9, 47.8, 57.2, 33.0, 58.1),
     (84.1, 97.0, 90.2, 70.7, 75.9, 69.4, 86.6),
     (95.9, 94.0, 69.9, 48.9, 58.1, 32.5, 58.8)))

_AUG_COLS = ("none", "P", "E", "N", "P,E", "P,N", "E,N", "P,E,N")
AUGMENTATION_ABLATION = _table(
    "table3_augmentation", "Table 3: augmentation ablation, TETRIS-SEED, test reconstruction R² %",
    ("ED", "EcD", "Ec+D"), _AUG_COLS,
    ((88.1, 95.5, 89.8, 88.8, 96.1, 95.6, 89.7, 96.1),
     (49.2, 72.9, 67.3, 59.4, 84.1, 81.9, 65.4, 84.1),
     (86.3, 95.6, 88.5, 87.6, 95.9, 95.8, 89.0, 96.0)),
    uncertain=frozenset((r, c) for r in ("ED", "EcD", "Ec+D") for c in ("P", "E", "N")),
    note="The P / E / N columns are a row-major reading of 9 numbers (medium confidence).")

GENERATING_FACTORS = _table(
    "table4_generating_factors", "Table 4 (top): MNIST zoos' weight variance and reconstruction R² of Ec+D",
    ("MNIST-SEED", "MNIST-HYP-1-FIX-SEED", "MNIST-HYP-1-RAND-SEED", "MNIST-HYP-5-FIX-SEED",
     "MNIST-HYP-5-RAND-SEED"),
    ("VAR", "VARc", "R_tr", "R_tes"),
    ((0.234, 0.234, 73.4, 59.0), (0.155, 0.101, 91.3, 72.9), (0.152, 0.164, 80.0, 37.2),
     (0.091, 0.094, 81.3, 70.0), (0.092, 0.100, 65.6, 38.6)),
    fraction_columns=frozenset({"VAR", "VARc"}),
    note="VAR and VARc are weight variances (plain numbers); R_tr / R_tes are reconstruction R² in percent.")

_T4_ROWS = ("EPH", "ACC", "GGAP", "INIT")
_T4_METRIC = {"INIT": "accuracy"}


def _t4(key, zoo, learned, values, uncertain=()):
  return _table(key, f"Table 4 (bottom): {zoo}, W / s(W) / {learned} (R² %, INIT accuracy %)", _T4_ROWS,
                ("W", "s(W)", learned), values, metric=_T4_METRIC, uncertain=frozenset(uncertain))


TABLE4_MNIST_SEED = _t4("table4_mnist_seed", "MNIST-SEED", "Ec+D",
                        ((84.5, 97.7, 97.3), (91.3, 98.7, 98.9), (56.9, 66.2, 66.7), (None, None, None)))
TABLE4_HYP_1_FIX_SEED = _t4("table4_mnist_hyp_1_fix_seed", "MNIST-HYP-1-FIX-SEED", "EcD",
                            ((7.2, 6.2, 11.6), (73.6, 72.9, 89.5), (55.3, 42.1, 61.9), (87.7, 63.3, 75.4)))
TABLE4_HYP_1_RAND_SEED = _t4("table4_mnist_hyp_1_rand_seed", "MNIST-HYP-1-RAND-SEED", "Ec+D",
                             ((-34.0, 0.5, 4.1), (-6.0, 60.1, 85.7), (-36.0, 31.1, 54.9), (38.3, 56.1, 48.2)),
                             uncertain=[("EPH", "W"), ("EPH", "s(W)"), ("EPH", "Ec+D"), ("ACC", "W"),
                                        ("GGAP", "W")])
TABLE4_HYP_5_FIX_SEED = _t4("table4_mnist_hyp_5_fix_seed", "MNIST-HYP-5-FIX-SEED", "EcD",
                            ((10.2, -2.7, 7.4), (57.7, 75.1, 79.4), (37.8, 36.7, 57.7), (80.6, 54.5, 51.4)))
TABLE4_HYP_5_RAND_SEED = _t4("table4_mnist_hyp_5_rand_seed", "MNIST-HYP-5-RAND-SEED", "EcD",
                             ((-14.0, 9.6, 7.2), (-13.0, 74.5, 82.5), (-3.2, 46.1, 60.5), (35.5, 47.2, 40.4)),
                             uncertain=[("EPH", "W"), ("EPH", "s(W)"), ("EPH", "EcD"), ("ACC", "W")])

_T5_COLS = ("W", "PCAl", "PCAc", "PCAr", "UMAP", "s(W)", "EcD")
TABLE5_TETRIS_SEED = _table(
    "table5_tetris_seed", "Table 5 (left): TETRIS-SEED, test R² %",
    ("Eph", "Acc", "GGap", "F1C0", "F1C1", "F1C2", "F1C3"), _T5_COLS,
    ((55.4, 46.9, 77.8, 93.5, 0.00, 96.4, 97.0),
     (49.1, 23.9, 74.7, 74.9, 0.01, 86.9, 90.2),
     (43.9, 28.3, 72.9, 75.7, 0.01, 81.0, 81.9),
     (26.6, 0.07, 52.8, 49.1, 0.02, 62.5, 70.7),
     (41.4, 30.2, 48.6, 58.6, 0.01, 63.1, 75.9),
     (41.5, 0.06, 38.3, 38.5, 0.01, 60.9, 69.4),
     (53.9, 44.6, 73.8, 72.2, 0.00, 75.2, 86.6)),
    note="UMAP values are about 0 as printed.")

TABLE5_TETRIS_HYP = _table(
    "table5_tetris_hyp", "Table 5 (right): TETRIS-HYP, test R² % (Eph, Acc, GGap, LR), accuracy % (Act, Init)",
    ("Eph", "Acc", "GGap", "LR", "Act", "Init"), _T5_COLS,
    ((2.8, 2.7, 0.04, 13.1, 0.03, 16.3, 16.7),
     (80.2, 83.7, 11.0, 14.0, 0.81, 73.8, 0.7),
     (79.2, 81.6, 12.9, 12.9, 0.31, 76.0, 0.3),
     (-3.2, -1.3, 53.4, 51.1, -0.4, -4.7, -1.4),
     (74.7, 72.7, 45.1, 74.2, 45.9, 73.6, 86.9),
     (38.5, 36.4, 32.7, 35.4, 33.6, 46.6, 47.1)),
    metric={"Act": "accuracy", "Init": "accuracy"},
    uncertain=frozenset({("Acc", "EcD"), ("GGap", "EcD")} | {("LR", c) for c in _T5_COLS}),
    note="Acc/GGap EcD (0.7, 0.3) contradict the text; the LR row's column order is unreliable.")

_T6_ROWS = ("EPH", "ACC", "GGAP", "LR", "ℓ2-REG", "DROP", "TF", "ACT", "INIT", "OPT")
_T6_METRIC = {"ACT": "accuracy", "INIT": "accuracy", "OPT": "accuracy"}


def _t6(key, zoo, columns):
  return _table(key, f"Table 6: {zoo} (Unterthiner et al. zoo), test R² % (accuracy % for ACT, INIT, OPT)",
                _T6_ROWS, ("W", "s(W)", "EcD"), tuple(zip(*columns)), metric=_T6_METRIC,
                note="The caption says EcD; the CIFAR10 config trained Ec+D (the paper reports the better).")


TABLE6_MNIST_HYP = _t6("table6_mnist_hyp", "MNIST-HYP", (
    (25.8, 74.7, 23.4, 29.3, 12.5, 28.5, 3.8, 88.6, 94.6, 76.7),
    (33.2, 81.5, 24.4, 34.3, 16.5, 19.2, 7.8, 81.1, 72.0, 65.4),
    (50.0, 94.9, 27.4, 37.1, 20.1, 35.8, 15.9, 88.7, 80.6, 66.4)))
TABLE6_FASHION_HYP = _t6("table6_fashion_hyp", "FASHION-HYP", (
    (26.6, 70.9, 48.1, 33.5, 11.9, 26.7, 8.1, 89.8, 95.7, 79.9),
    (34.6, 78.5, 41.1, 35.6, 16.3, 21.3, 8.2, 82.4, 76.5, 67.4),
    (51.3, 96.2, 49.0, 42.4, 25.0, 38.3, 22.1, 90.1, 86.7, 73.0)))
TABLE6_CIFAR10_HYP = _t6("table6_cifar10_hyp", "CIFAR10-HYP", (
    (25.7, 76.4, 37.7, 27.4, 8.7, 16.7, 8.4, 88.3, 93.5, 74.0),
    (30.3, 82.9, 37.4, 32.3, 13.8, 16.5, 6.9, 80.3, 73.3, 65.5),
    (53.3, 92.7, 40.4, 44.7, 28.0, 33.8, 35.4, 90.0, 82.6, 71.0)))
TABLE6_SVHN_HYP = _t6("table6_svhn_hyp", "SVHN-HYP", (
    (22.8, 80.5, 38.7, 24.5, 9.0, 9.0, 3.2, 86.9, 91.0, 72.5),
    (37.8, 82.1, 42.2, 33.4, 13.6, 14.6, 8.8, 78.8, 73.0, 68.2),
    (52.6, 91.1, 44.2, 49.1, 28.0, 23.3, 21.4, 87.2, 82.8, 72.3)))

OOD_ZOOS = ("MNIST-HYP", "FASHION-HYP", "SVHN-HYP", "CIFAR10-HYP")
_T7_METHODS = ("W", "s(W)", "Ec+D")
TABLE7_OOD_GGAP = _table(
    "table7_ood_ggap", "Table 7: out-of-distribution Kendall's tau for GGap (rows: zoo the encoder and probe "
    "were trained on; columns: evaluated zoo:method)",
    OOD_ZOOS, tuple(f"{z}:{m}" for z in OOD_ZOOS for m in _T7_METHODS),
    ((0.36, 0.29, 0.36, 0.21, 0.14, 0.27, 0.26, 0.12, 0.23, -0.01, 0.41, 0.02),
     (-0.02, 0.08, 0.02, 0.54, 0.48, 0.56, 0.06, 0.14, 0.01, -0.04, 0.10, 0.27),
     (0.05, 0.15, -0.04, -0.02, 0.27, 0.10, 0.44, 0.34, 0.45, 0.07, 0.08, 0.10),
     (0.11, 0.09, 0.06, 0.38, 0.36, 0.39, 0.14, 0.14, 0.15, -0.02, 0.28, 0.35)),
    unit="fraction", metric={z: "kendall_tau" for z in OOD_ZOOS})


def ood_value(train_zoo: str, eval_zoo: str, method: str) -> float | None:
  """Table 7: Kendall's tau of the GGap probe trained on `train_zoo`, evaluated on `eval_zoo`."""
  return TABLE7_OOD_GGAP.value(train_zoo, f"{eval_zoo}:{method}")


TABLES: dict[str, PaperTable] = {t.key: t for t in (
    ARCHITECTURE_ABLATION, SSL_LOSS_ABLATION, AUGMENTATION_ABLATION, GENERATING_FACTORS,
    TABLE4_MNIST_SEED, TABLE4_HYP_1_FIX_SEED, TABLE4_HYP_1_RAND_SEED, TABLE4_HYP_5_FIX_SEED,
    TABLE4_HYP_5_RAND_SEED, TABLE5_TETRIS_SEED, TABLE5_TETRIS_HYP, TABLE6_MNIST_HYP, TABLE6_FASHION_HYP,
    TABLE6_CIFAR10_HYP, TABLE6_SVHN_HYP, TABLE7_OOD_GGAP)}

# Zoo (preset) name -> the table of its probe results.
ZOO_TABLES = {
    "tetris_seed": "table5_tetris_seed",
    "tetris_hyp": "table5_tetris_hyp",
    "mnist_seed": "table4_mnist_seed",
    "mnist_hyp_1_fix_seed": "table4_mnist_hyp_1_fix_seed",
    "mnist_hyp_1_rand_seed": "table4_mnist_hyp_1_rand_seed",
    "mnist_hyp_5_fix_seed": "table4_mnist_hyp_5_fix_seed",
    "mnist_hyp_5_rand_seed": "table4_mnist_hyp_5_rand_seed",
    "mnist_hyp": "table6_mnist_hyp",
    "fashion_hyp": "table6_fashion_hyp",
    "cifar10_hyp": "table6_cifar10_hyp",
    "svhn_hyp": "table6_svhn_hyp",
}


def for_zoo(name: str) -> PaperTable | None:
  """The paper's probe table for a zoo preset name (e.g. "tetris_seed"), or None."""
  key = ZOO_TABLES.get(name.lower().replace("-", "_"))
  return TABLES[key] if key else None


def get(table: str | PaperTable) -> PaperTable:
  """A table by key (or the table itself)."""
  if isinstance(table, PaperTable):
    return table
  if table not in TABLES:
    raise KeyError(f"no paper table {table!r}; tables: {sorted(TABLES)}")
  return TABLES[table]
