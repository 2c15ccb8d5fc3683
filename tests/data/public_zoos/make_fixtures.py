"""Write the public-zoo fixtures of `tests/test_public_zoos.py` with real PyTorch (not run in CI).

Needs torch and numpy, not wsl_jax. From the repository root:

  python3 -m venv /tmp/torchvenv
  /tmp/torchvenv/bin/pip install /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl numpy
  /tmp/torchvenv/bin/python tests/data/public_zoos/make_fixtures.py

(any CPU build of torch >= 2.0 will do: `pip install torch --index-url https://download.pytorch.org/whl/cpu`).
It rewrites, deterministically up to torch's own serialization ids, everything beside this script:

  hsg_ray/mnist_cnn_zoo/   3 trials x checkpoints 0, 1, 2 of the paper's CNN (CNN-s) built as the publishers'
                           `def_net.CNN` module list; trial 1 has dropout 0.5 (weight modules 0, 4, 8, 11, 14,
                           the others 0, 3, 6, 9, 11), uses `config.json` and `checkpoint_<e:06d>` folders
  hsg_dump/dataset_tiny_tetris_hyp.pt   a `.pt` dump {"trainset", "valset", "testset"} of `SimCLRDataset`
                           objects (module `checkpoints_to_datasets.dataset_simclr`, registered here as a
                           stand-in package so the pickle names the original classes): 4 / 2 / 2 TETRIS MLPs
                           (16-5-4, no bias) x epochs 1, 2, 3, with PosixPath paths and a RandomErasingVector
  sane/cnn_zoo/            SANE samples (`dataset_torch.<split>/sample_<i>.pt` = {"w", "m", "p", "props"},
                           dataset_info_<split>.json, dataset_normalization_<split>.json): CNN-s checkpoints
                           tokenized per neuron (tokensize 32), standardized per layer, full sequences
  sane/cnn_zoo_windowed/   the same zoo cut into 16-token windows (what SANE's WindowCutter writes)
  nfn/tiny_split.csv       an NFN split file for a 54-row (6 models x 9 steps) Unterthiner zoo: a pandas
                           header line "0", then a permutation of 0..53 (so 0 appears twice)
  malicious/evil.pt        torch.save of a state_dict beside an object whose __reduce__ is
                           (os.system, ("echo pwned > wsl_jax_pwned.txt",))
  tensors/tensors_zip.pt, tensors/tensors_legacy.pt   every dtype, a transposed view, a sliced view (storage
                           offset) and a Parameter, in the zip and the legacy (torch < 1.6) formats
  expected.npz             every tensor above as NumPy, and the logits PyTorch computes for fixed inputs

`torch_load_hsg_folder` below is a torch-based reader written the way the publishers' loader works (it
tries `checkpoint_<e>` then `checkpoint_<e:06d>`, loads each state_dict into the publishers' module list
with strict key matching, and vectorizes weight then bias per layer); the export test uses it.
"""

from __future__ import annotations

import collections
import json
import os
import pathlib
import shutil
import sys
import types

import numpy as np
import torch
from torch import nn

HERE = pathlib.Path(__file__).resolve().parent
TOKENSIZE = 32
NLIN = {"leakyrelu": nn.LeakyReLU, "relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}


# ---- the publishers' architectures (module lists as in their def_net) -------------------------------

class ModuleListNet(nn.Module):
  def __init__(self, modules):
    super().__init__()
    self.module_list = nn.ModuleList(modules)

  def forward(self, x):
    for m in self.module_list:
      x = m(x)
    return x


def cnn_s(nlin: str = "tanh", dropout: float = 0.0, channels_in: int = 1) -> ModuleListNet:
  """def_net.CNN: conv 8x5x5, pool, act, [drop], conv 6x5x5, pool, act, [drop], conv 4x2x2, act, flatten,
  linear 36->20, act, [drop], linear 20->10."""
  drop = [nn.Dropout(dropout)] if dropout > 0 else []
  act = NLIN[nlin]
  return ModuleListNet([nn.Conv2d(channels_in, 8, 5), nn.MaxPool2d(2, 2), act(), *drop,
                        nn.Conv2d(8, 6, 5), nn.MaxPool2d(2, 2), act(), *drop,
                        nn.Conv2d(6, 4, 2), act(), nn.Flatten(),
                        nn.Linear(36, 20), act(), *([nn.Dropout(dropout)] if dropout > 0 else []),
                        nn.Linear(20, 10)])


def mlp(nlin: str = "tanh", dropout: float = 0.0, sizes=(16, 5, 4), bias: bool = False) -> ModuleListNet:
  """def_net.MLP: Linear, act, [Dropout] per hidden layer, then the output Linear."""
  modules = []
  for a, b in zip(sizes[:-2], sizes[1:-1]):
    modules += [nn.Linear(a, b, bias=bias), NLIN[nlin]()] + ([nn.Dropout(dropout)] if dropout > 0 else [])
  modules.append(nn.Linear(sizes[-2], sizes[-1], bias=bias))
  return ModuleListNet(modules)


def vectorize(state: dict) -> np.ndarray:
  """Weight then bias of every weight module, by increasing module index (the canonical order)."""
  indices = sorted({int(k.split(".")[1]) for k in state})
  parts = []
  for i in indices:
    parts.append(state[f"module_list.{i}.weight"].detach().reshape(-1))
    if f"module_list.{i}.bias" in state:
      parts.append(state[f"module_list.{i}.bias"].detach().reshape(-1))
  return torch.cat(parts).numpy().astype(np.float32)


def train_epoch(model: nn.Module, gen: torch.Generator, steps: int = 3, inputs=(1, 28, 28), classes=10) -> None:
  opt = torch.optim.SGD(model.parameters(), lr=0.05)
  model.train()
  for _ in range(steps):
    x = torch.randn((16, *inputs), generator=gen)
    y = torch.randint(0, classes, (16,), generator=gen)
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def evaluate(model: nn.Module, gen: torch.Generator, inputs=(1, 28, 28), classes=10) -> tuple[float, float]:
  model.eval()
  with torch.no_grad():
    x = torch.randn((64, *inputs), generator=gen)
    y = torch.randint(0, classes, (64,), generator=gen)
    out = model(x)
    return float(nn.functional.cross_entropy(out, y)), float((out.argmax(1) == y).float().mean())


def logits(model: nn.Module, x: torch.Tensor) -> np.ndarray:
  model.eval()
  with torch.no_grad():
    return model(x).numpy().astype(np.float32)


# ---- HSG ray folder ---------------------------------------------------------------------------------

TRIALS = [  # (name, nlin, dropout, seed, init, config file, checkpoint folder format)
    ("NN_tune_trainable_8c3f2_00000_0_seed=1_2022-05-30_10-11-12", "tanh", 0.0, 1, "kaiming_uniform",
     "params.json", "checkpoint_{}"),
    ("NN_tune_trainable_8c3f2_00001_1_seed=2_2022-05-30_10-11-13", "leakyrelu", 0.5, 2, "xavier_normal",
     "config.json", "checkpoint_{:06d}"),
    ("NN_tune_trainable_8c3f2_00002_2_seed=3_2022-05-30_10-11-14", "relu", 0.0, 3, "uniform",
     "params.json", "checkpoint_{}"),
]


def write_hsg_ray(out: pathlib.Path, expected: dict, x_cnn: torch.Tensor) -> None:
  for name, nlin, dropout, seed, init, config_file, ck_format in TRIALS:
    torch.manual_seed(seed)
    model = cnn_s(nlin, dropout)
    gen = torch.Generator().manual_seed(100 + seed)
    trial = out / name
    trial.mkdir(parents=True)
    config = {"model::type": "CNN", "model::channels_in": 1, "model::nlin": nlin, "model::dropout": dropout,
              "model::init_type": init, "optim::optimizer": "sgd", "optim::lr": 0.05, "optim::wd": 0.0,
              "seed": seed, "training::batchsize": 16, "training::epochs_train": 2,
              "dataset::dump": "/data/mnist/dataset.pt", "cuda": False}
    (trial / config_file).write_text(json.dumps(config, indent=2))
    lines = []
    for epoch in range(3):
      if epoch > 0:
        train_epoch(model, gen)
      train_loss, train_acc = evaluate(model, gen)
      test_loss, test_acc = evaluate(model, gen)
      val_loss, val_acc = evaluate(model, gen)
      lines.append({"train_loss": train_loss, "train_acc": train_acc, "test_loss": test_loss, "test_acc": test_acc,
                    "val_loss": val_loss, "val_acc": val_acc, "training_iteration": epoch,
                    "time_this_iter_s": 0.5, "timestamp": 1653900000 + epoch, "trial_id": name[18:29],
                    "date": "2022-05-30_10-11-12", "done": epoch == 2, "config": config})
      folder = trial / ck_format.format(epoch)
      folder.mkdir()
      state = model.state_dict()
      torch.save(state, folder / "checkpoints")
      for key, value in state.items():
        expected[f"hsg/{name}/{epoch}/{key}"] = value.numpy().copy()
      expected[f"hsg_flat/{name}/{epoch}"] = vectorize(state)
      expected[f"hsg_logits/{name}/{epoch}"] = logits(model, x_cnn)
    with open(trial / "result.json", "w") as f:
      f.writelines(json.dumps(line) + "\n" for line in lines)
    columns = [k for k in lines[0] if k != "config"]
    (trial / "progress.csv").write_text(",".join(columns) + "\n" + "".join(
        ",".join(str(line[c]) for c in columns) + "\n" for line in lines))


def torch_load_hsg_folder(folder: str | os.PathLike) -> dict[str, dict[int, np.ndarray]]:
  """{trial name: {epoch: flat vector}} read with torch, the way the publishers' loader reads a folder."""
  out = {}
  for trial in sorted(pathlib.Path(folder).iterdir()):
    if not trial.is_dir():
      continue
    config = json.loads((trial / "params.json").read_text())
    epochs = sorted(int(p.name.split("_")[1]) for p in trial.iterdir() if p.name.startswith("checkpoint_"))
    vectors = {}
    for e in epochs:
      path = trial / f"checkpoint_{e}" / "checkpoints"
      if not path.exists():
        path = trial / f"checkpoint_{e:06d}" / "checkpoints"
      state = torch.load(path, map_location="cpu", weights_only=True)
      if config["model::type"] == "CNN":
        model = cnn_s(_nlin(config), config.get("model::dropout", 0.0), config["model::channels_in"])
      else:
        sizes = (config["model::i_dim"], *config["model::h_dim"], config["model::o_dim"])
        model = mlp(_nlin(config), config.get("model::dropout", 0.0), sizes, config["model::use_bias"])
      model.load_state_dict(state, strict=True)  # the module indices must be the publishers'
      vectors[e] = vectorize(model.state_dict())
    out[trial.name] = vectors
  return out


def _nlin(config: dict) -> str:
  nlin = config.get("model::nlin", "tanh")
  return nlin if nlin in NLIN else "tanh"  # the activation does not change the state_dict


# ---- HSG .pt dump -----------------------------------------------------------------------------------

def original_dataset_classes():
  """Stand-ins for the publishers' `checkpoints_to_datasets` classes, under their module names."""
  package = types.ModuleType("checkpoints_to_datasets")
  package.__path__ = []
  modules = {}
  for sub in ("dataset_base", "dataset_simclr", "random_erasing"):
    modules[sub] = types.ModuleType(f"checkpoints_to_datasets.{sub}")
    sys.modules[f"checkpoints_to_datasets.{sub}"] = modules[sub]
    setattr(package, sub, modules[sub])
  sys.modules["checkpoints_to_datasets"] = package

  class ModelDatasetBase(torch.utils.data.Dataset):
    pass

  class SimCLRDataset(ModelDatasetBase):
    pass

  class RandomErasingVector:
    pass

  for cls, sub in ((ModelDatasetBase, "dataset_base"), (SimCLRDataset, "dataset_simclr"),
                   (RandomErasingVector, "random_erasing")):
    cls.__module__ = f"checkpoints_to_datasets.{sub}"
    cls.__qualname__ = cls.__name__
    setattr(modules[sub], cls.__name__, cls)
  return SimCLRDataset, RandomErasingVector


def write_hsg_dump(out: pathlib.Path, expected: dict, x_mlp: torch.Tensor) -> None:
  simclr, erasing = original_dataset_classes()
  layer_lst = [(0, "fc"), (2, "fc")]
  epochs = [1, 2, 3]
  models = {"trainset": 4, "valset": 2, "testset": 2}
  nlins = ["tanh", "relu", "leakyrelu", "sigmoid"]
  root = pathlib.PosixPath("/data/zoos/tetris_hyp")
  sets, number = {}, 0
  for key, count in models.items():
    ds = simclr.__new__(simclr)
    data_in, paths, ep, labels = [], [], [], []
    props = {"test_acc": [], "training_iteration": [], "ggap": [], "model::nlin": [], "optim::lr": []}
    for _ in range(count):
      nlin = nlins[number % len(nlins)]
      torch.manual_seed(1000 + number)
      model = mlp(nlin)
      gen = torch.Generator().manual_seed(2000 + number)
      path = root / f"NN_tune_trainable_a1b2c_{number:05d}_{number}_seed={number + 1}"
      for e in epochs:
        train_epoch(model, gen, inputs=(16,), classes=4)
        loss, acc = evaluate(model, gen, inputs=(16,), classes=4)
        _, train_acc = evaluate(model, gen, inputs=(16,), classes=4)
        vector = torch.from_numpy(vectorize(model.state_dict()))
        data_in.append(vector)
        paths.append(path)
        ep.append(e)
        labels.append(f"{path}#_#epoch_{e}#_#layer_{layer_lst}")
        props["test_acc"].append(acc)
        props["training_iteration"].append(e)
        props["ggap"].append(train_acc - acc)
        props["model::nlin"].append(nlin)
        props["optim::lr"].append(1e-3 * (number + 1))
        expected[f"dump/{path.name}/{e}"] = vector.numpy().copy()
        expected[f"dump_logits/{path.name}/{e}"] = logits(model, x_mlp)
      number += 1
    erase = erasing.__new__(erasing)
    erase.__dict__.update({"p": 0.5, "scale": (0.02, 0.33), "value": 0, "mode": "block"})
    ds.__dict__.update({
        "layer_lst": layer_lst, "epoch_lst": epochs, "mode": "vector", "task": "reconstruction", "use_bias": False,
        "verbosity": 0, "weight_threshold": float("inf"), "train_val_test": key[:-3], "ds_split": [0.5, 0.25, 0.25],
        "property_keys": {"result_keys": ["test_acc", "training_iteration", "ggap"],
                          "config_keys": ["model::nlin", "optim::lr"]},
        "root": [root], "path_list": sorted(set(paths)), "data_in": data_in, "data_out": data_in,
        "labels_in": labels, "labels_out": labels, "paths": paths, "epochs": ep, "properties": props,
        "permutations_number": 0, "erase_augment": erase, "add_noise_input": False})
    sets[key] = ds
  out.mkdir(parents=True)
  torch.save(sets, out / "dataset_tiny_tetris_hyp.pt")


# ---- SANE samples -----------------------------------------------------------------------------------

def tokenize(state: dict, tokensize: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
  """SANE's tokenization: per weight module, each unit's row (weights, then bias) cut into tokens of
  `tokensize`, zero-padded; positions (sequence index, layer, unit)."""
  tokens, masks, pos, layer = [], [], [], 0
  for key in state:
    if "weight" not in key:
      continue
    w = state[key].reshape(state[key].shape[0], -1)
    bias_key = key.replace("weight", "bias")
    if bias_key in state:
      w = torch.cat([w, state[bias_key].unsqueeze(1)], dim=1)
    per_unit = -(-w.shape[1] // tokensize)
    padded = torch.zeros(w.shape[0], per_unit * tokensize)
    mask = torch.zeros(w.shape[0], per_unit * tokensize, dtype=torch.bool)
    padded[:, :w.shape[1]] = w
    mask[:, :w.shape[1]] = True
    tokens.append(padded.reshape(-1, tokensize))
    masks.append(mask.reshape(-1, tokensize))
    pos += [(layer, unit) for unit in range(w.shape[0]) for _ in range(per_unit)]
    layer += 1
  positions = torch.tensor([(n, l, u) for n, (l, u) in enumerate(pos)], dtype=torch.int16)
  return torch.cat(tokens), torch.cat(masks), positions


def write_sane(out: pathlib.Path, windowed: pathlib.Path, expected: dict, x_cnn: torch.Tensor) -> None:
  splits = {"train": 2, "val": 1, "test": 1}
  epochs = [1, 2]
  number = 0
  for split, count in splits.items():
    states, props, flats, outs = [], [], [], []
    for _ in range(count):
      torch.manual_seed(3000 + number)
      model = cnn_s("tanh")
      gen = torch.Generator().manual_seed(4000 + number)
      for e in epochs:
        train_epoch(model, gen)
        loss, acc = evaluate(model, gen)
        _, train_acc = evaluate(model, gen)
        states.append({k: v.clone() for k, v in model.state_dict().items()})
        props.append([acc, float(e), train_acc - acc])
        flats.append(vectorize(model.state_dict()))
        outs.append(logits(model, x_cnn))
      number += 1
    # per-layer standardization over the split (SANE's standardize=True): weights and biases of a layer
    # share the layer's mean and std
    layers = {}
    for key in states[0]:
      if "weight" not in key:
        continue
      bias_key = key.replace("weight", "bias")
      means = [torch.cat([s[key].reshape(s[key].shape[0], -1), s[bias_key].unsqueeze(1)], 1).mean().item()
               for s in states]
      stds = [torch.cat([s[key].reshape(s[key].shape[0], -1), s[bias_key].unsqueeze(1)], 1).std().item()
              for s in states]
      mu, sigma = float(np.mean(means)), float(np.sqrt(np.mean(np.square(stds))))
      layers[key] = {"mean": mu, "std": sigma}
      for s in states:
        s[key] = (s[key] - mu) / sigma
        s[bias_key] = (s[bias_key] - mu) / sigma
    folder = out / f"dataset_torch.{split}"
    folder.mkdir(parents=True)
    positions = None
    for i, (state, p) in enumerate(zip(states, props)):
      w, m, positions = tokenize(state, TOKENSIZE)
      torch.save({"w": w, "m": m, "p": positions, "props": torch.tensor(p)}, folder / f"sample_{i}.pt")
      expected[f"sane/{split}/{i}/w"] = w.numpy().copy()
      expected[f"sane_flat/{split}/{i}"] = flats[i]
      expected[f"sane_logits/{split}/{i}"] = outs[i]
    info = {"zoo_path": "/data/zoos/mnist_cnn", "num_samples": len(states), "supersample": 1,
            "properties": ["test_acc", "training_iteration", "ggap"], "epoch_list": epochs,
            "map_to_canonical": False, "permutation_number": 0, "permutations_per_sample": 0,
            "standardize": True, "ds_split": [0.5, 0.25, 0.25], "max_samples": 4, "weight_threshold": 15,
            "property_keys": {"result_keys": ["test_acc", "training_iteration", "ggap"], "config_keys": []},
            "num_threads": 1, "shuffle_path": True, "windowsize": int(positions.shape[0]), "split": split,
            "max_positions": positions.max(dim=0).values.tolist()}
    (out / f"dataset_info_{split}.json").write_text(json.dumps(info))
    (out / f"dataset_normalization_{split}.json").write_text(json.dumps({**layers, "mode": "standardize"}))
    if split == "train":  # a windowed copy: 16-token windows, supersample 2, of the first two samples
      folder = windowed / "dataset_torch.train"
      folder.mkdir(parents=True)
      gen = torch.Generator().manual_seed(5)
      for i in range(4):
        w, m, p = tokenize(states[i % 2], TOKENSIZE)
        start = int(torch.randint(0, w.shape[0] - 16, (1,), generator=gen))
        window = slice(start, start + 16)  # copies, as SANE's DataLoader batches them before saving
        torch.save({"w": w[window].clone(), "m": m[window].clone(), "p": p[window].clone(),
                    "props": torch.tensor(props[i % 2])}, folder / f"sample_{i}.pt")
      (windowed / "dataset_info_train.json").write_text(json.dumps(
          {**info, "num_samples": 2, "supersample": 2, "windowsize": 16, "epoch_list": [1, 2]}))
      (windowed / "dataset_normalization_train.json").write_text(json.dumps({**layers, "mode": "standardize"}))


# ---- NFN split, malicious file, tensor zoo ----------------------------------------------------------

def write_nfn(out: pathlib.Path) -> None:
  out.mkdir(parents=True)
  order = np.random.default_rng(0).permutation(54)
  (out / "tiny_split.csv").write_text("0\n" + "".join(f"{i}\n" for i in order))


class Evil:
  def __reduce__(self):
    return os.system, ("echo pwned > wsl_jax_pwned.txt",)


def write_malicious(out: pathlib.Path) -> None:
  out.mkdir(parents=True)
  torch.save({"state_dict": collections.OrderedDict(w=torch.ones(2)), "evil": Evil()}, out / "evil.pt")


def write_tensors(out: pathlib.Path, expected: dict) -> None:
  out.mkdir(parents=True)
  base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 7
  tensors = collections.OrderedDict([
      ("f32", base.clone()), ("transposed", base.t()), ("sliced", base[1:, 2:5]),
      ("f64", torch.linspace(-1, 1, 5, dtype=torch.float64)), ("f16", torch.tensor([0.5, -2.25], dtype=torch.float16)),
      ("bf16", torch.tensor([1.5, -0.125], dtype=torch.bfloat16)), ("i64", torch.tensor([-3, 2 ** 40])),
      ("i32", torch.tensor([7, -8], dtype=torch.int32)), ("i16", torch.tensor([300], dtype=torch.int16)),
      ("i8", torch.tensor([-5], dtype=torch.int8)), ("u8", torch.tensor([250], dtype=torch.uint8)),
      ("bool", torch.tensor([True, False])), ("c64", torch.tensor([1 + 2j], dtype=torch.complex64)),
      ("param", nn.Parameter(torch.ones(3))), ("scalar", torch.tensor(3.5)), ("empty", torch.zeros(0, 3)),
  ])
  torch.save(tensors, out / "tensors_zip.pt")
  torch.save(tensors, out / "tensors_legacy.pt", _use_new_zipfile_serialization=False)
  for key, value in tensors.items():
    value = value.detach()
    expected[f"tensors/{key}"] = (value.float() if value.dtype == torch.bfloat16 else value).numpy().copy()


def main() -> None:
  torch.manual_seed(0)
  for name in ("hsg_ray", "hsg_dump", "sane", "nfn", "malicious", "tensors", "expected.npz"):
    path = HERE / name
    if path.is_dir():
      shutil.rmtree(path)
    elif path.exists():
      path.unlink()
  expected: dict[str, np.ndarray] = {}
  gen = torch.Generator().manual_seed(7)
  x_cnn = torch.randn((4, 1, 28, 28), generator=gen)
  x_mlp = torch.randn((8, 16), generator=gen)
  expected["x_cnn"] = x_cnn.numpy()
  expected["x_mlp"] = x_mlp.numpy()
  write_hsg_ray(HERE / "hsg_ray" / "mnist_cnn_zoo", expected, x_cnn)
  write_hsg_dump(HERE / "hsg_dump", expected, x_mlp)
  write_sane(HERE / "sane" / "cnn_zoo", HERE / "sane" / "cnn_zoo_windowed", expected, x_cnn)
  write_nfn(HERE / "nfn")
  write_malicious(HERE / "malicious")
  write_tensors(HERE / "tensors", expected)
  np.savez_compressed(HERE / "expected.npz", **expected)
  total = sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file())
  print(f"wrote {len(expected)} expected arrays; fixtures total {total / 1024:.0f} KiB")


if __name__ == "__main__":
  main()
