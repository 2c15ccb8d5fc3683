"""The library's module-level imports form no cycle (registries are filled by modules that import them,
never the other way round), and no experiment module imports another."""

import ast
import importlib
import os
import pkgutil

import wsl_jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _modules(package) -> dict[str, str]:
  out = {package.__name__: package.__file__}
  for m in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
    out[m.name] = importlib.util.find_spec(m.name).origin
  return out


def _edges(name: str, path: str, known: set[str]) -> set[str]:
  """The known modules that `name` imports at module level (imports inside functions are lazy)."""
  tree = ast.parse(open(path, encoding="utf-8").read())
  package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
  out = set()
  for node in tree.body:
    if isinstance(node, ast.Import):
      out |= {a.name for a in node.names if a.name in known}
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
      for alias in node.names:
        target = f"{base}.{alias.name}"
        if target in known:
          out.add(target)
        elif base in known:
          out.add(base)
  return out - {name}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
  state, stack = {}, []

  def visit(n):
    state[n] = "open"
    stack.append(n)
    for m in sorted(graph.get(n, ())):
      if state.get(m) == "open":
        return stack[stack.index(m):] + [m]
      if m not in state and (found := visit(m)):
        return found
    state[n] = "done"
    stack.pop()
    return None

  for n in sorted(graph):
    if n not in state and (found := visit(n)):
      return found
  return None


def test_the_library_has_no_import_cycle():
  modules = _modules(wsl_jax)
  graph = {name: _edges(name, path, set(modules)) for name, path in modules.items()}
  assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


def test_no_experiment_imports_another():
  folder = os.path.join(ROOT, "experiments")
  shared = {"common", "pipeline", "__init__"}
  for file in sorted(os.listdir(folder)):
    if not file.endswith(".py"):
      continue
    tree = ast.parse(open(os.path.join(folder, file), encoding="utf-8").read())
    for node in ast.walk(tree):
      names = []
      if isinstance(node, ast.ImportFrom) and node.module == "experiments":
        names = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("experiments."):
        names = [node.module.split(".")[1]]
      elif isinstance(node, ast.Import):
        names = [a.name.split(".")[1] for a in node.names if a.name.startswith("experiments.")]
      others = [n for n in names if n not in shared]
      assert not others, f"experiments/{file} imports experiment module(s) {others}"
