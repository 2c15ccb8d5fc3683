"""wsl_jax: self-supervised hyper-representations of neural-network weights, in JAX/Flax."""

__version__ = "0.1.0"


# ---- module aliases (issue 18): the flat layout's names stay importable --------------------------------
# `from wsl_jax import augment`, `import wsl_jax.train`, `mock.patch("wsl_jax.train.x")` give the very
# module objects of the stage packages (no copies), so a patch through either name hits the same code.
import importlib as _importlib  # noqa: E402
import importlib.abc as _importlib_abc  # noqa: E402
import importlib.util as _importlib_util  # noqa: E402
import sys as _sys  # noqa: E402

MOVED = {
    "augment": "wsl_jax.hyperrep.augment",
    "baselines": "wsl_jax.evaluation.baselines",
    "configs": "wsl_jax.hyperrep.configs",
    "datasets": "wsl_jax.data.datasets",
    "evaluate": "wsl_jax.evaluation.evaluate",
    "image_data": "wsl_jax.data.image_data",
    "layout": "wsl_jax.weights.layout",
    "losses": "wsl_jax.hyperrep.losses",
    "models": "wsl_jax.hyperrep.models",
    "nets": "wsl_jax.weights.nets",
    "paper_results": "wsl_jax.evaluation.paper_results",
    "probe": "wsl_jax.evaluation.probe",
    "report": "wsl_jax.evaluation.report",
    "tokenize": "wsl_jax.hyperrep.tokenize",
    "train": "wsl_jax.hyperrep.train",
}


class _AliasFinder(_importlib_abc.MetaPathFinder, _importlib_abc.Loader):
  """Imports `wsl_jax.<old>` as its new module (the module itself, bound under both names)."""

  def find_spec(self, fullname, path=None, target=None):
    if fullname.startswith("wsl_jax.") and fullname[len("wsl_jax."):] in MOVED:
      return _importlib_util.spec_from_loader(fullname, self)
    return None

  def create_module(self, spec):
    module = _importlib.import_module(MOVED[spec.name[len("wsl_jax."):]])
    spec.loader_state = module.__spec__  # the import system sets __spec__ to the alias's; restored below
    return module

  def exec_module(self, module):
    module.__spec__ = module.__spec__.loader_state  # the module ran already: keep its own spec


if not any(type(f).__name__ == "_AliasFinder" for f in _sys.meta_path):  # once, also on reload
  _sys.meta_path.insert(0, _AliasFinder())


def __getattr__(name):
  if name in MOVED:  # `wsl_jax.augment` after a bare `import wsl_jax`
    return _importlib.import_module(f"wsl_jax.{name}")
  raise AttributeError(f"module 'wsl_jax' has no attribute {name!r}")
