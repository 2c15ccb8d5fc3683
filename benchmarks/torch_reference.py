"""The PyTorch side of `benchmarks/vs_pytorch.py`: zoo members and the SSL auto-encoder in plain PyTorch.

Written here from the paper's description of the models (Schuerholt et al. 2021, §3 and appendix; the
architectures of `wsl_jax.weights.nets` and `wsl_jax.hyperrep.configs`), not copied from the original code. It imports
NumPy and torch only, so that worker processes start without JAX. Everything is plain data in, numbers
out: the architecture as `NetSpec.to_dict()`, hyper-parameters as dicts, arrays as NumPy.

Zoo members are trained as the original code trains them (one model per process, one thread each):
init, then per epoch a fresh shuffle of the model's training share, mini-batch steps (forward, loss,
backward, optimizer step), and at every checkpoint epoch an evaluation of the training-evaluation subset
and the test set in chunks (loss, accuracy, per-class F1) and a copy of the flat weights, which is the
work `wsl_jax.zoo.generate()` does per model.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ACTS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU,
        "leaky_relu": lambda: nn.LeakyReLU(0.01)}


# ---- zoo members ----------------------------------------------------------------------------------

def build_net(net: dict, activation: str, dropout: float) -> nn.Sequential:
  """The zoo network of `net` (a `NetSpec.to_dict()`): conv -> [max-pool] -> act [-> dropout] per conv
  block, channel-major flatten (or global average pooling), dense layers with act [-> dropout]."""
  layers, ch = [], net["input_shape"][-1]
  act = ACTS[activation]
  for c in net["convs"]:
    layers.append(nn.Conv2d(ch, c["out_channels"], c["kernel"], c["stride"], bias=net["bias"]))
    if c["pool"] > 1:
      layers.append(nn.MaxPool2d(c["pool"]))
    layers.append(act())
    if dropout > 0:
      layers.append(nn.Dropout(dropout))
    ch = c["out_channels"]
  if net["convs"]:
    layers.append(nn.AdaptiveAvgPool2d(1) if net["global_pool"] else nn.Identity())
    layers.append(nn.Flatten())
  widths = list(net["hidden"]) + [net["num_classes"]]
  features = _features(net)
  for j, width in enumerate(widths):
    layers.append(nn.Linear(features, width, bias=net["bias"]))
    if j < len(widths) - 1:
      layers.append(act())
      if dropout > 0:
        layers.append(nn.Dropout(dropout))
    features = width
  return nn.Sequential(*layers)


def _features(net: dict) -> int:
  if not net["convs"]:
    return net["input_shape"][0]
  h, w, _ = net["input_shape"]
  for c in net["convs"]:
    h, w = (h - c["kernel"]) // c["stride"] + 1, (w - c["kernel"]) // c["stride"] + 1
    h, w = h // c["pool"], w // c["pool"]
  ch = net["convs"][-1]["out_channels"]
  return ch if net["global_pool"] else ch * h * w


def make_optimizer(name: str, params, hp: dict) -> torch.optim.Optimizer:
  if name == "adam":
    return torch.optim.Adam(params, lr=hp["lr"], weight_decay=hp["wd"])
  if name == "sgd":
    return torch.optim.SGD(params, lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["wd"])
  if name == "rmsprop":
    return torch.optim.RMSprop(params, lr=hp["lr"], alpha=0.99, eps=1e-8, weight_decay=hp["wd"])
  raise ValueError(f"unknown optimizer {name!r}")


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int, classes: int) -> np.ndarray:
  """Loss, accuracy and per-class F1 of one split, in chunks of `chunk` examples."""
  loss, pred = 0.0, []
  with torch.no_grad():
    for s in range(0, x.shape[0], chunk or x.shape[0]):
      logits = model(x[s:s + (chunk or x.shape[0])])
      loss += F.cross_entropy(logits, y[s:s + logits.shape[0]], reduction="sum").item()
      pred.append(logits.argmax(1))
  pred = torch.cat(pred)
  tp = torch.bincount(y[pred == y], minlength=classes).double()
  denom = torch.bincount(pred, minlength=classes).double() + torch.bincount(y, minlength=classes).double()
  f1 = torch.where(denom > 0, 2 * tp / denom.clamp(min=1), torch.zeros_like(denom))
  return np.concatenate([[loss / len(y), (pred == y).double().mean().item()], f1.numpy()])


_DATA: dict = {}


def set_data(x_train, y_train, x_eval, y_eval, x_test, y_test, threads: int = 1) -> None:
  """Worker initializer: the data set as NCHW (or (B, F)) tensors, and the thread count."""
  torch.set_num_threads(threads)
  to_x = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2) if a.ndim == 4 else a))
  _DATA.update(x_train=to_x(x_train), y_train=torch.from_numpy(y_train.astype(np.int64)),
               x_eval=to_x(x_eval), y_eval=torch.from_numpy(y_eval.astype(np.int64)),
               x_test=to_x(x_test), y_test=torch.from_numpy(y_test.astype(np.int64)))


def train_models(job: dict) -> float:
  """Train the models of `job` (recipe + per-model hparams) one after the other; seconds taken."""
  t0 = time.perf_counter()
  net, d = job["net"], _DATA
  n_train = d["x_train"].shape[0]
  for hp in job["models"]:
    torch.manual_seed(hp["seed"])
    model = build_net(net, hp["activation"], hp["dropout"])
    opt = make_optimizer(hp["optimizer"], model.parameters(), hp)
    kernels = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    n_seen = max(job["batch_size"], int(math.floor(hp["train_fraction"] * n_train)))
    steps = n_seen // job["batch_size"]
    records = []

    def record():
      model.eval()
      records.append((torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy().copy(),
                      evaluate(model, d["x_eval"], d["y_eval"], job["eval_batch"], net["num_classes"]),
                      evaluate(model, d["x_test"], d["y_test"], job["eval_batch"], net["num_classes"])))
      model.train()

    if 0 in job["checkpoints"]:
      record()
    for epoch in range(1, job["epochs"] + 1):
      order = torch.randperm(n_seen)
      for s in range(steps):
        idx = order[s * job["batch_size"]:(s + 1) * job["batch_size"]]
        loss = F.cross_entropy(model(d["x_train"][idx]), d["y_train"][idx])
        if hp["l2"] > 0:
          loss = loss + hp["l2"] * sum((k * k).sum() for k in kernels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
      if epoch in job["checkpoints"]:
        record()
  return time.perf_counter() - t0


# ---- SSL auto-encoder -------------------------------------------------------------------------------

class HyperRepresentation(nn.Module):
  """The paper's attention auto-encoder (§3): neuron tokens embedded per group, a compression token,
  learned positions, pre-norm transformer blocks, the compression token's output -> Linear -> tanh = z;
  the decoder maps z to T tokens, runs its own blocks and projects each token back; a projection head
  (Linear, BatchNorm, ReLU)* for the contrastive loss."""

  def __init__(self, groups: list[tuple[int, int]], dim: int, heads: int, ff: int, blocks: int, latent: int,
               head: tuple[int, int, int], dropout: float):
    super().__init__()
    self.groups, self.tokens = groups, sum(c for c, _ in groups)
    block = lambda: nn.TransformerEncoderLayer(dim, heads, ff, dropout, batch_first=True, norm_first=True)
    self.embed = nn.ModuleList([nn.Linear(size, dim) for _, size in groups])
    self.comp = nn.Parameter(torch.randn(1, 1, dim))
    self.enc_pos = nn.Parameter(torch.randn(1, self.tokens + 1, dim))
    self.encoder = nn.TransformerEncoder(block(), blocks, enable_nested_tensor=False)
    self.to_z = nn.Linear(dim, latent)
    self.from_z = nn.Linear(latent, self.tokens * dim)
    self.dec_pos = nn.Parameter(torch.randn(1, self.tokens, dim))
    self.decoder = nn.TransformerEncoder(block(), blocks, enable_nested_tensor=False)
    self.project = nn.ModuleList([nn.Linear(dim, size) for _, size in groups])
    layers, hidden, out = head
    widths, mods = [latent] + [hidden] * layers + [out], []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
      mods += [nn.Linear(a, b), nn.BatchNorm1d(b)] + ([nn.ReLU()] if i < len(widths) - 2 else [])
    self.head = nn.Sequential(*mods)
    self.dim = dim

  def forward(self, tokens: list[torch.Tensor]):
    b = tokens[0].shape[0]
    h = torch.cat([self.comp.expand(b, -1, -1)] + [e(t) for e, t in zip(self.embed, tokens)], 1) + self.enc_pos
    z = torch.tanh(self.to_z(self.encoder(h)[:, 0]))
    h = self.decoder(self.from_z(z).reshape(b, self.tokens, self.dim) + self.dec_pos)
    out, start = [], 0
    for (count, _), p in zip(self.groups, self.project):
      out.append(p(h[:, start:start + count]))
      start += count
    return z, out, self.head(z)


def ntxent(p_i: torch.Tensor, p_j: torch.Tensor, temperature: float) -> torch.Tensor:
  """SimCLR's NT-Xent over 2B projections: the other view is the positive, the other 2B - 2 negatives."""
  p = F.normalize(torch.cat([p_i, p_j]), dim=1)
  sim = p @ p.T / temperature
  n = p_i.shape[0]
  sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
  target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
  return F.cross_entropy(sim, target)


def ssl_step_time(groups, model_kw: dict, views: np.ndarray, gamma: float, temperature: float, steps: int,
                  repeats: int, threads: int) -> float:
  """Seconds of the fastest of `repeats` timed runs of `steps` train steps (after one warm-up step):
  both views through encoder, decoder and head, NT-Xent + MSE, Adam. `views`: (2, B, groups tokens)
  pre-augmented, as a data loader would hand them over."""
  torch.set_num_threads(threads)
  torch.manual_seed(0)
  model = HyperRepresentation(groups, **model_kw)
  opt = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-9)
  v = [[torch.from_numpy(t) for t in view] for view in views]
  b = v[0][0].shape[0]

  def step():
    z, out, proj = model([torch.cat([a, c]) for a, c in zip(*v)])
    mse = sum(F.mse_loss(o, torch.cat([a, c]), reduction="sum") for o, a, c in zip(out, *v)) / (
        2 * b * sum(c * s for c, s in groups))
    loss = gamma * ntxent(proj[:b], proj[b:], temperature) + (1 - gamma) * mse
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()

  step()
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    for _ in range(steps):
      step()
    best = min(best, (time.perf_counter() - t0) / steps)
  return best

