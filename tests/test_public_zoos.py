"""Public zoo formats read without torch (`tests/data/public_zoos`, written by real PyTorch with
`make_fixtures.py`): every tensor equals what torch stored, the networks' logits equal PyTorch's, crafted
pickles are refused before anything runs, the formats are detected, NFN's split is reproduced, and
`export_hsg` writes folders that read back bit-identically (and that torch loads, where torch is installed).
"""

import importlib.util
import io
import json
import os
import pickle
import random
import shutil
import struct
import zipfile

import numpy as np
import pytest

from wsl_jax import outputs
from wsl_jax.weights import nets
from wsl_jax.zoo import formats, hsg, nfn, sane, torchfile, unterthiner
from wsl_jax.zoo import io as zoo_io
from wsl_jax.zoo.core import Zoo
from wsl_jax.zoo.io import ZooFormatError

DATA = os.path.join(os.path.dirname(__file__), "data", "public_zoos")
HSG = os.path.join(DATA, "hsg_ray", "mnist_cnn_zoo")
DUMP = os.path.join(DATA, "hsg_dump", "dataset_tiny_tetris_hyp.pt")
SANE = os.path.join(DATA, "sane", "cnn_zoo")
SANE_WINDOWED = os.path.join(DATA, "sane", "cnn_zoo_windowed")
NFN_CSV = os.path.join(DATA, "nfn", "tiny_split.csv")
EVIL = os.path.join(DATA, "malicious", "evil.pt")
MARKER = "wsl_jax_pwned.txt"


@pytest.fixture(scope="module")
def expected():
  with np.load(os.path.join(DATA, "expected.npz")) as f:
    return {k: f[k] for k in f.files}


def nhwc(x):
  return np.transpose(x, (0, 2, 3, 1))


def torch_zip(pickled: bytes, records: dict[str, bytes] | None = None, byteorder: str | None = None) -> bytes:
  """A torch-style zip archive around a hand-written pickle."""
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, "w") as archive:
    archive.writestr("archive/data.pkl", pickled)
    if byteorder:
      archive.writestr("archive/byteorder", byteorder)
    for key, raw in (records or {}).items():
      archive.writestr(f"archive/data/{key}", raw)
    archive.writestr("archive/version", "3\n")
  return buffer.getvalue()


def call_global(module: str, name: str, arg: str, proto: int = 2) -> bytes:
  """A pickle that calls module.name(arg) when unpickled."""
  if proto >= 4:
    head = (pickle.PROTO + bytes([proto]) + pickle.SHORT_BINUNICODE + bytes([len(module)]) + module.encode()
            + pickle.SHORT_BINUNICODE + bytes([len(name)]) + name.encode() + pickle.STACK_GLOBAL)
  else:
    head = pickle.PROTO + bytes([proto]) + pickle.GLOBAL + f"{module}\n{name}\n".encode()
  raw = arg.encode()
  return head + pickle.BINUNICODE + struct.pack("<I", len(raw)) + raw + pickle.TUPLE1 + pickle.REDUCE + pickle.STOP


# ---- torch's file format ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["tensors_zip.pt", "tensors_legacy.pt"])
def test_every_dtype_view_and_offset_read_as_torch_stored_it(expected, name):
  loaded = torchfile.load(os.path.join(DATA, "tensors", name))
  keys = [k[len("tensors/"):] for k in expected if k.startswith("tensors/")]
  assert list(loaded) == keys
  for key in keys:
    want, got = expected[f"tensors/{key}"], loaded[key]
    if key == "bf16":
      assert str(got.dtype) == "bfloat16"
      got = got.astype(np.float32)
    assert got.dtype == want.dtype and got.shape == want.shape, key
    np.testing.assert_array_equal(got, want, err_msg=key)


def test_big_endian_records_are_byte_swapped():
  tensors = {"w": np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3), "n": np.array([1, -2 ** 40])}
  pickled, records = torchfile.state_dict_bytes(tensors)
  swapped = {str(k): np.frombuffer(raw, v.dtype.newbyteorder("<")).astype(v.dtype.newbyteorder(">")).tobytes()
             for k, (raw, v) in enumerate(zip(records, tensors.values()))}
  path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"wsl_jax_be_{os.getpid()}.pt")
  with open(path, "wb") as f:
    f.write(torch_zip(pickled, swapped, byteorder="big"))
  try:
    loaded = torchfile.load(path)
  finally:
    os.unlink(path)
  for key, value in tensors.items():
    np.testing.assert_array_equal(loaded[key], value)
    assert loaded[key].dtype.isnative


def test_writer_round_trip(tmp_path):
  tensors = {"module_list.0.weight": np.random.default_rng(0).normal(size=(3, 2, 2, 2)).astype(np.float32),
             "module_list.0.bias": np.arange(3, dtype=np.float32), "f64": np.ones(2), "i8": np.array([-1], np.int8),
             "b": np.array([True]), "scalar": np.float32(2.5), "empty": np.zeros((0, 4), np.float32)}
  path = torchfile.save_state_dict(tmp_path / "checkpoints", tensors)
  loaded = torchfile.load(path)
  assert list(loaded) == list(tensors)
  for key, value in tensors.items():
    np.testing.assert_array_equal(loaded[key], value)
    assert loaded[key].dtype == np.asarray(value).dtype
  with zipfile.ZipFile(path) as archive:
    assert "checkpoints/data.pkl" in archive.namelist()


def test_malicious_torch_save_is_refused_and_nothing_runs(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  with pytest.raises(torchfile.TorchFileError, match=r"refusing to load global (posix|os|nt)\.system"):
    torchfile.load(EVIL)
  with pytest.raises(torchfile.TorchFileError):
    formats.load_any(EVIL)
  assert not (tmp_path / MARKER).exists()


@pytest.mark.parametrize("module,name,arg", [
    ("os", "system", f"echo pwned > {MARKER}"),
    ("posix", "system", f"echo pwned > {MARKER}"),
    ("builtins", "eval", f"open({MARKER!r}, 'w')"),
    ("builtins", "exec", f"open({MARKER!r}, 'w')"),
    ("subprocess", "getoutput", f"touch {MARKER}"),
    ("builtins", "getattr", "x"),
    ("torch", "load", MARKER),
    ("numpy", "load", MARKER),
    ("torch._utils", "_rebuild_qtensor", "x"),
    ("collections", "OrderedDict.fromkeys", "x"),
    ("checkpoints_to_datasets.dataset_simclr", "SimCLRDataset.__init__", "x"),
])
@pytest.mark.parametrize("proto", [2, 4])
def test_crafted_globals_are_refused(tmp_path, monkeypatch, module, name, arg, proto):
  monkeypatch.chdir(tmp_path)
  (tmp_path / "evil.pt").write_bytes(torch_zip(call_global(module, name, arg, proto)))
  with pytest.raises(torchfile.TorchFileError, match=f"{module}.{name}"):
    torchfile.load(tmp_path / "evil.pt")
  assert not (tmp_path / MARKER).exists()


def test_crafted_legacy_file_is_refused(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  header = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2) + pickle.dumps({}, 2)
  (tmp_path / "evil.pt").write_bytes(header + call_global("os", "system", f"echo pwned > {MARKER}"))
  with pytest.raises(torchfile.TorchFileError, match="os.system"):
    torchfile.load(tmp_path / "evil.pt")
  assert not (tmp_path / MARKER).exists()


def test_out_of_bounds_tensor_is_refused(tmp_path):
  pickled, records = torchfile.state_dict_bytes({"w": np.zeros(4, np.float32)})
  # the same pickle with size (40,) instead of (4,): a read past the storage
  evil = pickled.replace(pickle.MARK + pickle.BININT1 + bytes([4]) + pickle.TUPLE,
                         pickle.MARK + pickle.BININT1 + bytes([40]) + pickle.TUPLE, 1)
  assert evil != pickled
  (tmp_path / "oob.pt").write_bytes(torch_zip(evil, {"0": records[0]}))
  with pytest.raises(torchfile.TorchFileError, match="reads element 39 of storage 0"):
    torchfile.load(tmp_path / "oob.pt")


def test_numpy_values_in_pickles(tmp_path):
  values = {"acc": np.float64(0.25), "step": np.int64(3), "row": np.arange(6, dtype=np.float32).reshape(2, 3),
            "path": __import__("pathlib").PurePosixPath("/zoo/trial_1"), "tags": {"a", "b"}}
  (tmp_path / "values.pt").write_bytes(torch_zip(pickle.dumps(values, protocol=2)))
  loaded = torchfile.load(tmp_path / "values.pt")
  assert loaded["acc"] == 0.25 and loaded["step"] == 3 and loaded["path"] == "/zoo/trial_1"
  assert loaded["tags"] == {"a", "b"}
  np.testing.assert_array_equal(loaded["row"], values["row"])


def test_huge_stride_zero_view_is_refused(tmp_path):
  pickled, records = torchfile.state_dict_bytes({"w": np.zeros(1, np.float32)})
  # size (1,) stride (1,) -> size (2**40,) stride (0,): a view of one element copied out 2**40 times
  old = (pickle.MARK + pickle.BININT1 + b"\x01" + pickle.TUPLE) * 2
  new = pickle.MARK + pickle.LONG1 + b"\x06" + (2 ** 40).to_bytes(6, "little") + pickle.TUPLE
  new += pickle.MARK + pickle.BININT1 + b"\x00" + pickle.TUPLE
  assert old in pickled
  (tmp_path / "big.pt").write_bytes(torch_zip(pickled.replace(old, new), {"0": records[0]}))
  with pytest.raises(torchfile.TorchFileError, match="repeats"):
    torchfile.load(tmp_path / "big.pt")


@pytest.mark.parametrize("module,name", [("torch", "FloatStorage"), ("torch._utils", "_rebuild_tensor_v2"),
                                         ("torch", "Tensor"), ("collections", "OrderedDict"), ("_codecs", "encode")])
def test_build_cannot_change_allowed_globals(tmp_path, module, name):
  # GLOBAL <allowed>, then BUILD {"code": "f8"}: e.g. would make later loads misread float32 storages
  evil = (pickle.PROTO + b"\x02" + pickle.GLOBAL + f"{module}\n{name}\n".encode() + pickle.EMPTY_DICT
          + pickle.SHORT_BINUNICODE + b"\x04code" + pickle.SHORT_BINUNICODE + b"\x02f8" + pickle.SETITEM
          + pickle.BUILD + pickle.STOP)
  (tmp_path / "evil.pt").write_bytes(torch_zip(evil))
  with pytest.raises(torchfile.TorchFileError, match="modify|cannot unpickle"):
    torchfile.load(tmp_path / "evil.pt")
  np.testing.assert_array_equal(torchfile.load(os.path.join(DATA, "tensors", "tensors_zip.pt"))["f32"].dtype,
                                np.float32)


def test_not_torch_files_are_refused(tmp_path):
  (tmp_path / "text.pt").write_text("hello")
  with pytest.raises(torchfile.TorchFileError, match="not a torch file"):
    torchfile.load(tmp_path / "text.pt")
  data = open(os.path.join(DATA, "tensors", "tensors_zip.pt"), "rb").read()
  (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
  with pytest.raises(torchfile.TorchFileError):
    torchfile.load(tmp_path / "cut.pt")
  with pytest.raises(FileNotFoundError):
    torchfile.load(tmp_path / "missing.pt")


# ---- HSG ray folders ---------------------------------------------------------------------------------

def module_tensors(expected, prefix):
  """[(weight, bias)] of one checkpoint's stored tensors, by increasing module index."""
  keys = [k[len(prefix):] for k in expected if k.startswith(prefix)]
  indices = sorted({int(k.split(".")[1]) for k in keys})
  return indices, [(expected[f"{prefix}module_list.{i}.weight"], expected.get(f"{prefix}module_list.{i}.bias"))
                   for i in indices]


def test_hsg_ray_folder_tensors_and_logits_match_pytorch(expected):
  assert formats.detect_format(HSG) == "hsg"
  zoo = formats.load_any(HSG)
  assert zoo.net == nets.PAPER_CNN and zoo.weights.shape == (3, 3, 2464)
  assert list(zoo.epochs) == [0, 1, 2]
  x = nhwc(expected["x_cnn"])
  for m, trial in enumerate(zoo.meta["trials"]):
    for j, epoch in enumerate(zoo.epochs):
      _, tensors = module_tensors(expected, f"hsg/{trial}/{epoch}/")
      params = zoo.layout.unflatten(zoo.weights[m, j])
      assert len(params) == len(tensors)
      for p, (w, b) in zip(params, tensors):
        np.testing.assert_array_equal(p["w"], w)
        np.testing.assert_array_equal(p["b"], b)
      logits = np.asarray(zoo.forward(zoo.weights[m, j], x, m))
      np.testing.assert_allclose(logits, expected[f"hsg_logits/{trial}/{epoch}"], atol=1e-5, rtol=0)


def test_hsg_ray_folder_properties_hparams_and_module_indices():
  zoo = formats.load_any(HSG)
  assert zoo.meta["module_indices"] == [[0, 3, 6, 9, 11], [0, 4, 8, 11, 14]]  # dropout shifts them
  assert list(zoo.hparams["dropout"]) == [0.0, 0.5, 0.0]
  assert list(zoo.hparams["activation"]) == ["tanh", "leaky_relu", "relu"]
  assert list(zoo.hparams["seed"]) == [1, 2, 3] and list(zoo.hparams["optimizer"]) == ["sgd"] * 3
  for m, trial in enumerate(zoo.meta["trials"]):
    lines = hsg.read_result_lines(os.path.join(HSG, trial, "result.json"))
    np.testing.assert_array_equal(zoo.properties["test_acc"][m], np.float32([l["test_acc"] for l in lines]))
    np.testing.assert_array_equal(zoo.properties["val_loss"][m], np.float32([l["val_loss"] for l in lines]))
  np.testing.assert_array_equal(zoo.properties["ggap"], zoo.properties["train_acc"] - zoo.properties["test_acc"])
  assert "timestamp" not in zoo.properties and not zoo.diverged.any() and zoo.dataset == "mnist"


def test_hsg_result_line_rule():
  lines = tuple({"training_iteration": i} for i in range(3))
  with_init = hsg.Trial("t", "t", {}, lines, {0: "a", 1: "b", 2: "c"})
  without_init = hsg.Trial("t", "t", {}, lines, {1: "b", 2: "c", 3: "d"})
  assert hsg.result_line(with_init, 2) is lines[2]
  assert hsg.result_line(without_init, 2) is lines[1]
  assert hsg.result_line(without_init, 4) is None


def test_hsg_trials_missing_a_checkpoint_are_dropped(tmp_path):
  folder = shutil.copytree(HSG, tmp_path / "zoo")
  trial = sorted(os.listdir(folder))[2]
  shutil.rmtree(folder / trial / "checkpoint_2")
  zoo = formats.load_any(str(folder))
  assert zoo.num_models == 2 and zoo.meta["dropped_models"] == [trial]
  assert formats.load_any(str(folder), epochs=[0, 1]).num_models == 3


def test_infer_net_from_shapes():
  def layers(*shapes, bias=True):
    return [hsg.ModuleLayer(i, np.zeros(s, np.float32), np.zeros(s[0], np.float32) if bias else None)
            for i, s in enumerate(shapes)]
  cnn_l = layers((16, 3, 3, 3), (32, 16, 3, 3), (15, 32, 3, 3), (20, 60), (10, 20))
  spec = hsg.infer_net(cnn_l, {"model::type": "CNN3"})
  assert spec.input_shape == (32, 32, 3) and [c.pool for c in spec.convs] == [2, 2, 2]
  assert hsg.infer_net(layers((5, 16), (4, 5), bias=False)) == nets.TETRIS_MLP
  assert hsg.infer_net(layers((8, 3, 5, 5), (6, 8, 5, 5), (4, 6, 2, 2), (20, 64), (10, 20))).input_shape == (32, 32, 3)
  with pytest.raises(ZooFormatError, match="pass net="):
    hsg.infer_net(layers((8, 1, 5, 5), (10, 7)))
  with pytest.raises(ZooFormatError, match="module_list"):
    hsg.state_dict_layers({"features.0.weight": np.zeros((2, 2))}, "x")


# ---- HSG .pt dumps -----------------------------------------------------------------------------------

def test_hsg_dump_tensors_logits_and_split(expected):
  assert formats.detect_format(DUMP) == "hsg_dump"
  zoo = formats.load_any(DUMP)
  assert zoo.net == nets.TETRIS_MLP and zoo.weights.shape == (8, 3, 100) and list(zoo.epochs) == [1, 2, 3]
  assert zoo.meta["split"] == {"train": [0, 1, 2, 3], "val": [4, 5], "test": [6, 7]}
  split = formats.source_split(zoo)
  assert list(split.train) == [0, 1, 2, 3] and list(split.test) == [6, 7]
  assert list(zoo.hparams["activation"]) == ["tanh", "relu", "leaky_relu", "sigmoid"] * 2
  np.testing.assert_allclose(zoo.hparams["lr"], np.float32([1e-3 * (k + 1) for k in range(8)]))
  assert {"test_acc", "ggap", "training_iteration", "epoch"} <= set(zoo.properties)
  for m, path in enumerate(zoo.meta["models"]):
    name = os.path.basename(path)
    for j, epoch in enumerate(zoo.epochs):
      np.testing.assert_array_equal(zoo.weights[m, j], expected[f"dump/{name}/{epoch}"])
      logits = np.asarray(zoo.forward(zoo.weights[m, j], expected["x_mlp"], m))
      np.testing.assert_allclose(logits, expected[f"dump_logits/{name}/{epoch}"], atol=1e-5, rtol=0)


def test_hsg_dump_is_read_as_records():
  top = torchfile.load(DUMP)
  train = top["trainset"]
  assert train.cls == "checkpoints_to_datasets.dataset_simclr.SimCLRDataset"
  assert train["erase_augment"].cls == "checkpoints_to_datasets.random_erasing.RandomErasingVector"
  assert train["erase_augment"]["scale"] == (0.02, 0.33)
  assert train["paths"][0].startswith("/data/zoos/tetris_hyp/NN_tune_trainable_")  # PosixPath -> str


# ---- SANE --------------------------------------------------------------------------------------------

def test_sane_folder_rebuilds_the_networks(expected):
  assert formats.detect_format(SANE) == "sane"
  zoo = formats.load_any(SANE, activation="tanh")
  assert zoo.net == nets.PAPER_CNN and zoo.weights.shape == (4, 2, 2464)
  assert zoo.meta["split"] == {"train": [0, 1], "val": [2], "test": [3]}
  x = nhwc(expected["x_cnn"])
  splits = [("train", 0), ("train", 1), ("val", 2), ("test", 3)]
  for split, m in splits:
    first = zoo.meta["split"][split].index(m) * 2
    for j in range(2):
      np.testing.assert_allclose(zoo.weights[m, j], expected[f"sane_flat/{split}/{first + j}"], atol=1e-6, rtol=0)
      logits = np.asarray(zoo.forward(zoo.weights[m, j], x, m))
      np.testing.assert_allclose(logits, expected[f"sane_logits/{split}/{first + j}"], atol=1e-5, rtol=0)
  np.testing.assert_array_equal(zoo.properties["epoch"][0], [1, 2])


def test_sane_samples_as_stored(expected):
  samples = sane.load_samples(SANE)
  assert list(samples) == ["train", "val", "test"]
  for name, split in samples.items():
    for i in range(split.tokens.shape[0]):
      np.testing.assert_array_equal(split.tokens[i], expected[f"sane/{name}/{i}/w"])
  assert sane.token_structure(samples["train"]) == sane.layout_structure(nets.PAPER_CNN.layout())


def test_sane_windows_and_unstored_normalization_are_refused(tmp_path):
  with pytest.raises(sane.SaneFormatError, match="windows of 16 tokens"):
    formats.load_any(SANE_WINDOWED)
  assert sane.load_samples(SANE_WINDOWED)["train"].tokens.shape == (4, 16, 32)
  folder = shutil.copytree(SANE, tmp_path / "l2")
  for split in ("train", "val", "test"):
    info = json.loads((folder / f"dataset_info_{split}.json").read_text())
    (folder / f"dataset_info_{split}.json").write_text(json.dumps({**info, "standardize": "l2_ind"}))
    norm = json.loads((folder / f"dataset_normalization_{split}.json").read_text())
    (folder / f"dataset_normalization_{split}.json").write_text(json.dumps({**norm, "mode": None}))
  with pytest.raises(sane.SaneFormatError, match="l2_ind"):
    formats.load_any(str(folder))
  zoo = formats.load_any(str(folder), keep_normalized=True)
  assert zoo.meta["weights_normalized"] == ["l2_ind"]


# ---- NFN split files ---------------------------------------------------------------------------------

def nfn_reference(csv_path, steps):
  """NFN's ZooDataset split, written out from its description (pandas header=None, step 86, halves,
  random.Random(0))."""
  idcs = [int(line) for line in open(csv_path).read().split()]  # the header line "0" is data
  final = [i for i in idcs if steps[i] == 86]
  point = int(0.5 * len(final))
  trainval = list(range(point))
  val_point = int(0.8 * len(trainval))
  random.Random(0).shuffle(trainval)
  return {"train": [final[k] for k in trainval[:val_point]], "val": [final[k] for k in trainval[val_point:]],
          "test": final[point:]}


def tiny_unterthiner_zoo(num_models=6):
  rng = np.random.default_rng(0)
  steps = np.asarray([0, 1, 2, 3, 20, 40, 60, 80, 86], np.int32)
  m, e = num_models, len(steps)
  return Zoo(weights=rng.normal(size=(m, e, nets.UNTERTHINER_CNN.layout().num_params)).astype(np.float32),
             epochs=steps, properties={k: rng.uniform(size=(m, e)).astype(np.float32)
                                       for k in ("test_acc", "train_acc", "test_loss", "train_loss")},
             hparams={"activation": np.asarray(["relu", "tanh"] * (m // 2)), "seed": np.arange(m)},
             net=nets.UNTERTHINER_CNN, dataset="mnist", diverged=np.zeros(m, bool))


def test_nfn_split_csv_reproduces_nfn(tmp_path):
  rows = nfn.read_split_csv(NFN_CSV)
  assert rows[0] == 0 and (rows == 0).sum() == 2 and len(rows) == 55  # the header "0" is read as a row
  folder = unterthiner.export_zoo(tiny_unterthiner_zoo(), str(tmp_path / "smallcnnzoo"))
  assert formats.detect_format(folder) == "unterthiner"
  steps = np.tile([0, 1, 2, 3, 20, 40, 60, 80, 86], 6)
  reference = nfn_reference(NFN_CSV, steps)
  got = nfn.split_rows(rows, steps)
  assert {k: list(v) for k, v in got.items()} == reference
  zoo = formats.load_any(folder, split_file=NFN_CSV)
  assert zoo.meta["split"] == {k: [r // 9 for r in v] for k, v in reference.items()}
  assert zoo.meta["split_protocol"] == "nfn" and zoo.meta["split_unmapped_rows"] == 0
  split = formats.source_split(zoo)
  assert sorted(set(split.train) | set(split.val) | set(split.test)) == list(range(6))


# ---- detection and export ----------------------------------------------------------------------------

def test_detect_format_errors(tmp_path):
  with pytest.raises(ZooFormatError, match="no such file"):
    formats.detect_format(str(tmp_path / "missing"))
  with pytest.raises(ZooFormatError, match="not a zoo in a known format"):
    formats.detect_format(str(tmp_path))
  trial = os.path.join(HSG, sorted(os.listdir(HSG))[0])
  with pytest.raises(ZooFormatError, match="one HSG trial folder"):
    formats.detect_format(trial)
  (tmp_path / "notes.txt").write_text("x")
  with pytest.raises(ZooFormatError, match="not a torch file"):
    formats.detect_format(str(tmp_path / "notes.txt"))
  with pytest.raises(ValueError, match="does not take"):
    formats.load_any(HSG, split_file="x.csv")
  native = zoo_io.save(tiny_unterthiner_zoo(2), str(tmp_path / "native"))
  assert formats.detect_format(native) == "native" and formats.load_any(native).num_models == 2


def random_cnn_zoo(dropout=(0.0, 0.5, 0.0)):
  rng = np.random.default_rng(1)
  m, epochs = len(dropout), np.asarray([0, 2, 5], np.int32)
  return Zoo(weights=rng.normal(size=(m, 3, 2464)).astype(np.float32), epochs=epochs,
             properties={"test_acc": rng.uniform(size=(m, 3)).astype(np.float32),
                         "train_acc": rng.uniform(size=(m, 3)).astype(np.float32),
                         "f1_class_0": rng.uniform(size=(m, 3)).astype(np.float32)},
             hparams={"dropout": np.float32(dropout), "activation": np.asarray(["tanh", "relu", "leaky_relu"][:m]),
                      "seed": np.arange(1, m + 1), "init": np.asarray(["uniform"] * m), "lr": np.float32([1e-3] * m)},
             net=nets.PAPER_CNN, dataset="mnist", diverged=np.zeros(m, bool))


def test_export_hsg_reads_back_bit_identical(tmp_path):
  zoo = random_cnn_zoo()
  folder = hsg.export_hsg(zoo, str(tmp_path / "hsg"))
  back = formats.load_any(folder)
  np.testing.assert_array_equal(back.weights, zoo.weights)
  np.testing.assert_array_equal(back.epochs, zoo.epochs)
  assert back.meta["module_indices"] == [[0, 3, 6, 9, 11], [0, 4, 8, 11, 14]]
  for name in ("test_acc", "train_acc", "f1_class_0"):
    np.testing.assert_array_equal(back.properties[name], zoo.properties[name])
  for name in ("dropout", "activation", "seed", "init", "lr"):
    np.testing.assert_array_equal(back.hparams[name], zoo.hparams[name])
  lines = hsg.read_result_lines(os.path.join(folder, hsg.trial_name(0), "result.json"))
  assert [l["training_iteration"] for l in lines] == list(range(6))  # epochs 0..5, NaN where no checkpoint
  with pytest.raises(FileExistsError):
    hsg.export_hsg(zoo, folder)
  assert hsg.export_hsg(zoo, folder, overwrite=True) == folder  # our own export may be replaced
  downloaded = shutil.copytree(HSG, tmp_path / "downloaded")
  with pytest.raises(outputs.UnsafeOutputError, match="not a zoo written by wsl_jax"):
    hsg.export_hsg(zoo, str(downloaded), overwrite=True)  # a downloaded zoo never is
  assert sorted(os.listdir(downloaded)) == sorted(os.listdir(HSG))
  with pytest.raises(ValueError, match="global pooling"):
    hsg.export_hsg(tiny_unterthiner_zoo(2), str(tmp_path / "u"))


def load_make_fixtures():
  spec = importlib.util.spec_from_file_location("make_fixtures", os.path.join(DATA, "make_fixtures.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_exported_generated_zoo_loads_in_torch(tmp_path):
  pytest.importorskip("torch")
  from wsl_jax.zoo import generate
  fixtures = load_make_fixtures()
  for name, zoo in (("tetris", generate("tetris_seed", num_models=4, epochs=3, progress=False)),
                    ("cnn", random_cnn_zoo())):
    folder = hsg.export_hsg(zoo, str(tmp_path / name))
    vectors = fixtures.torch_load_hsg_folder(folder)  # strict load_state_dict into the publishers' modules
    assert list(vectors) == [hsg.trial_name(m) for m in range(zoo.num_models)]
    for m, trial in enumerate(vectors.values()):
      assert list(trial) == [int(e) for e in zoo.epochs]
      for j, vector in enumerate(trial.values()):
        np.testing.assert_array_equal(vector, zoo.weights[m, j])


@pytest.mark.parametrize("path,options", [(HSG, {}), (DUMP, {}), (SANE, {"activation": "tanh"})])
def test_public_zoos_convert_to_the_native_format(tmp_path, path, options):
  zoo = formats.load_any(path, **options)
  back = formats.load_any(zoo_io.save(zoo, str(tmp_path / "native")))
  np.testing.assert_array_equal(back.weights, zoo.weights)
  assert back.meta == zoo.meta and back.net == zoo.net
  assert set(back.hparams) == set(zoo.hparams) and set(back.properties) == set(zoo.properties)
  mine, theirs = formats.source_split(back), formats.source_split(zoo)
  assert (mine is None) == (theirs is None) == (path == HSG)
  assert mine is None or all(np.array_equal(mine[k], theirs[k]) for k in ("train", "val", "test"))
