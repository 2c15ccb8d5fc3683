"""Write tests/data/public_zoos/unterthiner_smoke: the `experiments.hyp_zoos` smoke zoo (8 models of
Unterthiner et al.'s CNN x 3 checkpoints, digits_28) exported in Unterthiner et al.'s file format
(weights.npy, metrics.csv, layout.csv), as a committed fixture for `hyp_zoos --zoo`. No torch needed.

    python tests/data/public_zoos/make_unterthiner_fixture.py     # made with Python 3.11, jax 0.10.2

The export's own marker file (wsl_jax_export.json) is removed, so that the folder looks like a
downloaded Unterthiner et al. data set.
"""

import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(HERE))))

from experiments import hyp_zoos, pipeline  # noqa: E402
from wsl_jax.zoo import unterthiner  # noqa: E402

OUT = os.path.join(HERE, "unterthiner_smoke")


def main() -> None:
  cache = tempfile.mkdtemp()
  try:
    zoo = pipeline.get_zoo(hyp_zoos.get_config("smoke").zoo, pipeline.Context(out="", zoo_cache=cache, progress=False))
    if os.path.exists(OUT):
      shutil.rmtree(OUT)  # this script's own output
    unterthiner.export_zoo(zoo, OUT)
    os.remove(os.path.join(OUT, unterthiner.EXPORT_MARKER))
  finally:
    shutil.rmtree(cache, ignore_errors=True)
  print(f"wrote {OUT}: {sorted(os.listdir(OUT))}")


if __name__ == "__main__":
  main()
