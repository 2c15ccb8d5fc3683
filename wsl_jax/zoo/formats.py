"""Every zoo format wsl_jax reads, detected from the path or named: `load_any(path, format=None) -> Zoo`.

  format        path                                             reader
  native        folder with zoo.json                             `io.load`
  unterthiner   folder with weights.npy, metrics.csv(.gz),       `unterthiner.import_zoo` (+ NFN's split
                layout.csv                                       with `split_file=`, `nfn.load_unterthiner`)
  hsg           folder of ray trial folders (params.json /       `hsg.load_ray_folder`
                config.json / result.json, checkpoint_<e>/)
  hsg_dump      a torch `.pt` file {"trainset", "valset",        `hsg.load_dump`
                "testset"} of the HSG dataset objects
  sane          folder with dataset_torch.<split>/sample_<i>.pt  `sane.load_sane`

A source with its own split (HSG dumps, SANE folders, Unterthiner with an NFN split file) puts it in
`zoo.meta["split"]` = {"train": [...], "val": [...], "test": [...]} (model indices); `source_split(zoo)`
returns it as a `Split` (or None), for the evaluation harness to use instead of `zoo.split()`.

Example (a generated zoo written in the HSG layout and read back):
  >>> from wsl_jax import zoo
  >>> z = zoo.generate("tetris_seed", num_models=4, epochs=1, progress=False)
  >>> _ = zoo.export_hsg(z, "hsg_zoo")
  >>> detect_format("hsg_zoo"), load_any("hsg_zoo").weights.shape
  ('hsg', (4, 2, 100))
  >>> split = source_split(z) or z.split()   # a generated zoo has no split of its own

With downloads: `load_any("downloads/mnist_cnn_zoo")` (detected: hsg), `load_any("dataset_11_tetris_seed.pt")`
(hsg_dump, with the dump's split).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from wsl_jax.zoo import hsg, io, nfn, sane, torchfile, unterthiner
from wsl_jax.zoo.core import Split, Zoo
from wsl_jax.zoo.io import ZooFormatError

FORMATS = ("native", "unterthiner", "hsg", "hsg_dump", "sane")


def detect_format(path: str) -> str:
  """The format of `path` (one of `FORMATS`); raises ZooFormatError saying what was looked for."""
  path = os.fspath(path)
  if os.path.isfile(path):
    if torchfile.is_torch_file(path):
      return "hsg_dump"
    raise ZooFormatError(f"{path} is a file but not a torch file; zoo files are HSG .pt dataset dumps")
  if not os.path.isdir(path):
    raise ZooFormatError(f"no zoo at {path}: no such file or folder")
  names = set(os.listdir(path))
  if io.META_FILE in names:
    return "native"
  if {"weights.npy", "layout.csv"} <= names and names & {"metrics.csv", "metrics.csv.gz"}:
    return "unterthiner"
  if sane.split_names(path):
    return "sane"
  if hsg.find_trials(path):
    return "hsg"
  if hsg.is_trial(path):
    raise ZooFormatError(f"{path} is one HSG trial folder; pass the zoo folder that holds the trials "
                         f"({os.path.dirname(os.path.abspath(path))})")
  raise ZooFormatError(f"{path}: not a zoo in a known format: no zoo.json (native), no weights.npy + "
                       "metrics.csv + layout.csv (Unterthiner et al.), no dataset_torch.<split> folders (SANE), "
                       "no trial folders with checkpoint_<e>/checkpoints (HSG ray zoo)")


def load_any(path: str, format: str | None = None, **options: Any) -> Zoo:
  """Read a zoo in any supported format (detected when `format` is None).

  `options` go to the reader: `net`, `dataset` (unterthiner, hsg, hsg_dump, sane), `epochs` (hsg,
  hsg_dump), `split_file` (unterthiner: NFN's split CSV), `activation` and `keep_normalized` (sane),
  `verify` and `mmap` (native). See each reader's docstring.
  """
  format = detect_format(path) if format is None else format
  if format not in FORMATS:
    raise ValueError(f"unknown zoo format {format!r}; choose from {FORMATS}")
  readers = {"native": io.load, "unterthiner": nfn.load_unterthiner, "hsg": hsg.load_ray_folder,
             "hsg_dump": hsg.load_dump, "sane": sane.load_sane}
  try:
    return readers[format](path, **options)
  except TypeError as e:  # an option the reader does not take
    if "unexpected keyword" in str(e):
      raise ValueError(f"format {format!r} does not take option(s) {sorted(options)}: {e}") from e
    raise


def source_split(zoo: Zoo) -> Split | None:
  """The source's own split (`zoo.meta["split"]`) as a `Split` of sorted unique model indices, or None.

  NFN's split lists a model twice when its split file does; a `Split` holds it once.
  """
  split = zoo.meta.get("split")
  if not split:
    return None
  parts = [np.unique(np.asarray(split.get(k, []), np.int64)) for k in ("train", "val", "test")]
  return Split(*parts)


def export(zoo: Zoo, folder: str, format: str, overwrite: bool = False) -> str:
  """Write `zoo` in `format`: "native" (`io.save`), "unterthiner" or "hsg"."""
  writers = {"native": io.save, "unterthiner": unterthiner.export_zoo, "hsg": hsg.export_hsg}
  if format not in writers:
    raise ValueError(f"cannot export format {format!r}; choose from {sorted(writers)}")
  return writers[format](zoo, folder, overwrite=overwrite)
