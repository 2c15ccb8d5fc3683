"""Progress bars (tqdm) that show rate and ETA, and can be switched off."""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm


def progress_bar(total: int, desc: str, unit: str = "it", enabled: bool = True, **kwargs: Any) -> tqdm:
  """A tqdm bar on stderr; `enabled=False` gives a silent one with the same interface."""
  return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, file=sys.stderr, dynamic_ncols=True,
              smoothing=0.1, **kwargs)
