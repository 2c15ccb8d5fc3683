"""Damaged zoo folders: every case gives one ZooFormatError naming the file, on load and in the CLI."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

from wsl_jax import zoo as zoo_lib
from wsl_jax.zoo import __main__ as zoo_cli
from wsl_jax.zoo import io as zoo_io

ZooFormatError = zoo_lib.ZooFormatError


@pytest.fixture(scope="module")
def base(tmp_path_factory):
  """A small valid zoo (4 models x 3 checkpoints), written once for the module."""
  folder = str(tmp_path_factory.mktemp("zoo") / "base")
  zoo_lib.generate("tetris_seed", num_models=4, epochs=2, out=folder, progress=False)
  return folder


@pytest.fixture
def folder(base, tmp_path):
  """A fresh copy of the valid zoo, to damage."""
  path = str(tmp_path / "z")
  shutil.copytree(base, path)
  return path


# ---- damaging helpers -----------------------------------------------------------------------------

def _meta_path(folder):
  return os.path.join(folder, "zoo.json")


def edit_meta(change):
  """A damage: `change(meta)` edits the parsed zoo.json in place (or returns a replacement)."""
  def damage(folder):
    with open(_meta_path(folder)) as f:
      meta = json.load(f)
    out = change(meta)
    with open(_meta_path(folder), "w") as f:
      json.dump(meta if out is None else out, f)
  return damage


def write_meta_bytes(data):
  def damage(folder):
    with open(_meta_path(folder), "wb") as f:
      f.write(data)
  return damage


def _record(folder, name, arrays=None):
  """Make zoo.json's files record of `name` match the file on disk (so that checksums pass)."""
  path = os.path.join(folder, name)
  with open(_meta_path(folder)) as f:
    meta = json.load(f)
  rec = meta["files"][name]
  rec["bytes"] = os.path.getsize(path)
  rec["sha256"] = hashlib.sha256(open(path, "rb").read()).hexdigest()
  if arrays is not None:
    rec["arrays"] = {k: [list(v.shape), v.dtype.str] for k, v in arrays.items()}
  with open(_meta_path(folder), "w") as f:
    json.dump(meta, f)


def rewrite(name, change, update_arrays=True):
  """A damage: rewrite array file `name` with `change(arrays)` (a dict of its arrays, edited in place or
  returned) and update its size and checksum in zoo.json (and its array records, with `update_arrays`)."""
  def damage(folder):
    path = os.path.join(folder, name)
    if name.endswith(".npz"):
      with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    else:
      arrays = {name[:-4]: np.load(path)}
    out = change(arrays)
    arrays = arrays if out is None else out
    if name.endswith(".npz"):
      with open(path, "wb") as f:
        np.savez(f, **arrays)
    else:
      np.save(path, arrays[name[:-4]])
    _record(folder, name, arrays if update_arrays else None)
  return damage


def truncate(name, keep=0.5):
  def damage(folder):
    path = os.path.join(folder, name)
    os.truncate(path, int(os.path.getsize(path) * keep))
  return damage


def overwrite_bytes(name, offset, data):
  """A damage: overwrite bytes at `offset` (negative: from the end) of `name`, keeping its size."""
  def damage(folder):
    path = os.path.join(folder, name)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
      f.seek(offset if offset >= 0 else size + offset)
      f.write(data)
    assert os.path.getsize(path) == size
  return damage


def replace_in_file(name, old, new):
  """A damage: replace the bytes `old` by `new` (same length) in `name`."""
  assert len(old) == len(new)

  def damage(folder):
    path = os.path.join(folder, name)
    data = open(path, "rb").read()
    assert data.count(old) == 1, (old, data[:128])
    with open(path, "wb") as f:
      f.write(data.replace(old, new))
  return damage


def make_dir(name):
  def damage(folder):
    path = os.path.join(folder, name)
    os.remove(path)
    os.mkdir(path)
  return damage


def remove(name):
  return lambda folder: os.remove(os.path.join(folder, name))


def _pop(*keys):
  def change(meta):
    d = meta
    for k in keys[:-1]:
      d = d[k]
    del d[keys[-1]]
  return change


def _set(value, *keys):
  def change(meta):
    d = meta
    for k in keys[:-1]:
      d = d[k]
    d[keys[-1]] = value
  return change


def _layer(index, **fields):
  def change(meta):
    meta["layout"]["layers"][index].update(fields)
  return change


def _grow_hidden(meta):
  """A layout that parses (5 -> 6 hidden units, consistently) but is not the net's."""
  layers = meta["layout"]["layers"]
  layers[0]["out_units"] = 6
  layers[1]["in_units"] = 6
  meta["layout"]["num_params"] = 16 * 6 + 6 * 4


def _bias_on_last(meta):
  """A layout that parses (a bias on the output layer, num_params updated) but is not the net's."""
  meta["layout"]["layers"][1]["bias"] = True
  meta["layout"]["num_params"] += 4


def copy_over(source, name):
  """A damage: replace array file `name` by a copy of `source`, with a matching size and checksum."""
  def damage(folder):
    shutil.copy(os.path.join(folder, source), os.path.join(folder, name))
    _record(folder, name)
  return damage


def _drop_epoch(meta):
  meta["epochs"] = meta["epochs"][:-1]


# (id, damage, file named first in the message, pattern, load kwargs)
CASES = [
    # zoo.json: not a readable JSON object
    ("meta_list", write_meta_bytes(b"[1, 2, 3]"), "zoo.json", "holds an array, not a JSON object", {}),
    ("meta_string", write_meta_bytes(b'"zoo"'), "zoo.json", "holds a string, not a JSON object", {}),
    ("meta_null", write_meta_bytes(b"null"), "zoo.json", "holds null", {}),
    ("meta_dir", make_dir("zoo.json"), "zoo.json", "is a directory", {}),
    ("meta_not_utf8", write_meta_bytes(b'{"dataset": "\xff\xfe"}'), "zoo.json", "not UTF-8", {}),
    ("meta_bad_json", write_meta_bytes(b'{"format_version": 1, "dataset": '), "zoo.json", "not valid JSON", {}),
    ("meta_empty", write_meta_bytes(b""), "zoo.json", "not valid JSON", {}),
    ("format_version", edit_meta(_set(2, "format_version")), "zoo.json", "format_version 2 is not supported", {}),
    ("format_version_bool", edit_meta(_set(True, "format_version")), "zoo.json", "format_version True", {}),
    # zoo.json: keys of the wrong type
    ("dataset_type", edit_meta(_set(3, "dataset")), "zoo.json", "'dataset' must be a string", {}),
    ("epochs_type", edit_meta(_set("0,1,2", "epochs")), "zoo.json", "'epochs' must be a list", {}),
    ("epochs_float", edit_meta(_set([0, 1.5, 2], "epochs")), "zoo.json", "'epochs' must be a list", {}),
    ("num_models_str", edit_meta(_set("4", "num_models")), "zoo.json", "'num_models' must be", {}),
    ("num_models_neg", edit_meta(_set(-4, "num_models")), "zoo.json", "'num_models' must be", {}),
    ("properties_type", edit_meta(_set("test_acc", "properties")), "zoo.json", "'properties' must be a list", {}),
    ("hparams_twice", edit_meta(lambda m: m["hparams"].append("seed")), "zoo.json", "more than once", {}),
    ("meta_meta_list", edit_meta(_set([], "meta")), "zoo.json", "'meta' is an array", {}),
    ("files_list", edit_meta(_set([], "files")), "zoo.json", "'files' is an array", {}),
    ("files_unlisted", edit_meta(_pop("files", "hparams.npz")), "zoo.json", "does not list hparams.npz", {}),
    ("record_not_object", edit_meta(_set(7, "files", "diverged.npy")), "zoo.json", "is a number, not an object", {}),
    ("sha_not_hex", edit_meta(_set("abc", "files", "weights.npy", "sha256")), "zoo.json", "not a SHA-256", {}),
    ("bytes_str", edit_meta(_set("12", "files", "weights.npy", "bytes")), "zoo.json", "'bytes'.*not a non-neg", {}),
    ("arrays_entry", edit_meta(_set({"weights": [4, "float32"]}, "files", "weights.npy", "arrays")), "zoo.json",
     r"\['arrays'\]\['weights'\] is not \[shape, dtype\]", {}),
    ("arrays_dtype", edit_meta(_set({"weights": [[4, 3, 100], "floaty"]}, "files", "weights.npy", "arrays")),
     "zoo.json", "is not \\[shape, dtype\\]", {}),
    ("arrays_names", edit_meta(_set({"w": [[4, 3, 100], "float32"]}, "files", "weights.npy", "arrays")),
     "zoo.json", r"lists \['w'\], expected \['weights'\]", {}),
    # zoo.json: net and layout
    ("net_list", edit_meta(_set([16, 5, 4], "net")), "zoo.json", "'net' is an array, not an object", {}),
    ("net_hidden_float", edit_meta(_set([5.5], "net", "hidden")), "zoo.json", r"\[.hidden.\] must be a list of", {}),
    ("net_classes_str", edit_meta(_set("4", "net", "num_classes")), "zoo.json", r"\['num_classes'\] must be", {}),
    ("net_bias_str", edit_meta(_set("no", "net", "bias")), "zoo.json", r"\['bias'\] must be true or false", {}),
    ("net_unknown", edit_meta(_set(3, "net", "depth")), "zoo.json", r"unknown fields \['depth'\]", {}),
    ("net_no_classes", edit_meta(_pop("net", "num_classes")), "zoo.json", r"'net' lacks \['num_classes'\]", {}),
    ("net_conv_in_mlp", edit_meta(_set([{"out_channels": 2, "kernel": 3}], "net", "convs")), "zoo.json",
     "not a valid architecture: a CNN takes", {}),
    ("net_conv_float", edit_meta(_set([{"out_channels": 2, "kernel": 2.5}], "net", "convs")), "zoo.json",
     r"\['kernel'\] must be positive integers", {}),
    ("layout_str", edit_meta(_set("mlp", "layout")), "zoo.json", "'layout' is a string, not an object", {}),
    ("layout_kind", edit_meta(_layer(0, kind="pool")), "zoo.json", "'layout' is not valid: layers.0.: layer kind", {}),
    ("layout_float_units", edit_meta(_layer(0, out_units=5.5)), "zoo.json", "out_units must be a positive integer", {}),
    ("layout_bool_units", edit_meta(_layer(0, out_units=True)), "zoo.json", "out_units must be a positive integer", {}),
    ("layout_kernel", edit_meta(_layer(0, kernel_size=[1])), "zoo.json", "kernel_size must be two positive", {}),
    ("layout_bias_str", edit_meta(_layer(0, bias="no")), "zoo.json", "bias must be True or False", {}),
    ("layout_layer_list", edit_meta(lambda m: m["layout"]["layers"].__setitem__(0, [5, 16])), "zoo.json",
     "a layer must be a dict", {}),
    ("layout_layers_missing", edit_meta(_pop("layout", "layers")), "zoo.json", "needs a 'layers' list", {}),
    ("layout_num_params", edit_meta(_set(99, "layout", "num_params")), "zoo.json", "num_params=99", {}),
    ("layout_vs_net", edit_meta(_grow_hidden), "zoo.json", "'layout' does not match 'net'.*layer 0", {}),
    ("layout_bias_vs_net", edit_meta(_bias_on_last), "zoo.json", "'layout' does not match 'net'.*layer 1", {}),
    # metadata that disagrees with the arrays
    ("num_models", edit_meta(_set(5, "num_models")), "weights.npy", "holds 4 models, zoo.json says num_models=5",
     {}),
    ("num_models_noverify", edit_meta(_set(3, "num_models")), "weights.npy", "holds 4 models", {"verify": False}),
    ("epochs_length", edit_meta(_drop_epoch), "weights.npy", "holds 3 checkpoints per model, zoo.json lists 2", {}),
    ("property_shape", rewrite("properties.npz", lambda a: a.update(test_acc=a["test_acc"][:, :2])),
     "properties.npz", r"'test_acc' has shape \(4, 2\), expected \(4, 3\)", {}),
    ("property_dtype", rewrite("properties.npz", lambda a: a.update(ggap=a["ggap"].astype(str))),
     "properties.npz", "'ggap' has dtype <U.*not a numeric array", {}),
    ("hparam_shape", rewrite("hparams.npz", lambda a: a.update(seed=a["seed"][:3])), "hparams.npz",
     r"'seed' has shape \(3,\), expected \(4,\)", {}),
    ("hparam_2d", rewrite("hparams.npz", lambda a: a.update(lr=np.stack([a["lr"]] * 2, 1))), "hparams.npz",
     r"'lr' has shape \(4, 2\)", {"mmap": True}),
    ("diverged_shape", rewrite("diverged.npy", lambda a: a.update(diverged=np.zeros(5, bool))), "diverged.npy",
     r"'diverged' has shape \(5,\), expected \(4,\)", {}),
    ("diverged_dtype", rewrite("diverged.npy", lambda a: a.update(diverged=a["diverged"].astype(np.int64))),
     "diverged.npy", "has dtype int64, not a bool array", {}),
    ("weights_dtype", rewrite("weights.npy", lambda a: a.update(weights=a["weights"].astype(np.float64))),
     "weights.npy", "holds a float64 array", {}),
    ("weights_params", rewrite("weights.npy", lambda a: a.update(weights=a["weights"][:, :, :90])),
     "weights.npy", "holds 90 parameters per network, the layout in zoo.json has 100", {}),
    ("weights_record", edit_meta(_set({"weights": [[4, 3, 101], "float32"]}, "files", "weights.npy", "arrays")),
     "weights.npy", r"zoo.json's files record says \[4, 3, 101\]", {}),
    ("properties_listed_extra", edit_meta(lambda m: m["properties"].append("bogus")), "zoo.json",
     r"'properties' lists .*'bogus'.* but files\['properties.npz'\]", {}),
    ("properties_npz_lacks", rewrite("properties.npz", lambda a: a.__delitem__("ggap"), update_arrays=False),
     "properties.npz", r"holds \[.*\], zoo.json 'properties' lists \[.*'ggap'", {}),
    ("hparams_npz_extra", rewrite("hparams.npz", lambda a: a.update(extra=a["seed"]), update_arrays=False),
     "hparams.npz", r"holds \[.*'extra'.*\], zoo.json 'hparams' lists", {}),
    # damaged or misplaced array files
    ("weights_dir", make_dir("weights.npy"), "weights.npy", "is a directory, not a file", {}),
    ("properties_dir", make_dir("properties.npz"), "properties.npz", "is a directory, not a file", {}),
    ("hparams_missing", remove("hparams.npz"), "hparams.npz", "is missing", {}),
    ("weights_truncated", truncate("weights.npy"), "weights.npy", "truncated", {}),
    ("weights_truncated_noverify_mmap", truncate("weights.npy", 0.9), "weights.npy", "truncated",
     {"verify": False, "mmap": True}),
    ("npz_truncated", truncate("properties.npz"), "properties.npz", "truncated", {}),
    ("npz_truncated_noverify", truncate("hparams.npz", 0.95), "hparams.npz", "truncated", {"verify": False}),
    ("npy_truncated_noverify", truncate("diverged.npy", 0.9), "diverged.npy", "truncated", {"verify": False}),
    ("npz_corrupt", overwrite_bytes("properties.npz", 100, b"\x00" * 8), "properties.npz", "SHA-256", {}),
    ("npz_header_noverify", overwrite_bytes("properties.npz", 0, b"XXXX"), "properties.npz",
     "not a readable .npz file", {"verify": False}),
    ("npz_directory_noverify", overwrite_bytes("hparams.npz", -22, b"\x00" * 22), "hparams.npz",
     "not a readable .npz file", {"verify": False}),
    ("npz_member_noverify", overwrite_bytes("properties.npz", 200, b"\xff" * 8), "properties.npz",
     "not a readable .npz file", {"verify": False}),
    ("npy_magic_noverify", overwrite_bytes("weights.npy", 0, b"\x00" * 6), "weights.npy",
     "not a readable .npy file", {"verify": False}),
    ("npy_header_noverify", replace_in_file("weights.npy", b"(4, 3, 100)", b"(4, 3, 900)"), "weights.npy",
     "not a readable .npy file", {"verify": False}),
    ("npy_header_noverify_mmap", replace_in_file("weights.npy", b"(4, 3, 100)", b"(4, 3, 900)"), "weights.npy",
     "not a readable .npy file", {"verify": False, "mmap": True}),
    ("npy_shape_noverify", replace_in_file("weights.npy", b"(4, 3, 100)", b"(4, 3, 10) "), "weights.npy",
     "holds 10 parameters per network", {"verify": False}),
    ("npy_dtype_noverify", replace_in_file("weights.npy", b"'<f4'", b"'<i4'"), "weights.npy",
     "holds a int32 array", {"verify": False}),
    ("npy_is_npz", copy_over("hparams.npz", "diverged.npy"), "diverged.npy", "not a .npy array file", {}),
    ("npz_is_npy", copy_over("diverged.npy", "hparams.npz"), "hparams.npz", "is a .npy array, not an .npz archive",
     {}),
]

for _key in zoo_io.REQUIRED_KEYS:
  CASES.append((f"missing_{_key}", edit_meta(_pop(_key)), "zoo.json", rf"lacks the keys \['{_key}'\]", {}))
for _name in zoo_io.ARRAY_FILES:
  for _field in ("sha256", "bytes", "arrays"):
    CASES.append((f"record_{_name}_{_field}", edit_meta(_pop("files", _name, _field)), "zoo.json",
                  rf"files\['{_name}'\] lacks \['{_field}'\]", {}))


def _check_message(message, folder, name):
  assert "\n" not in message, message
  assert message.startswith(os.path.join(folder, name)), message


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_damaged_zoo_gives_one_clear_error(folder, case, capsys):
  _, damage, name, pattern, kwargs = case
  damage(folder)
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # no warning on the way to the error
    with pytest.raises(ZooFormatError, match=pattern) as info:
      zoo_lib.load(folder, **kwargs)
  assert type(info.value) is ZooFormatError
  _check_message(str(info.value), folder, name)
  # The CLI prints that one line and fails, without a traceback.
  assert zoo_cli.main(["info", folder]) == 1
  out, err = capsys.readouterr()
  assert out == ""
  lines = err.splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: " + os.path.join(folder, name)), err
  assert "Traceback" not in err


def test_the_undamaged_copy_loads(folder):
  z = zoo_lib.load(folder)
  assert z.weights.shape == (4, 3, 100) and not z.diverged.any()
  assert zoo_lib.load(folder, verify=False, mmap=True).weights.shape == (4, 3, 100)


def test_no_zoo_at_all(tmp_path, capsys):
  with pytest.raises(ZooFormatError, match="does not exist"):
    zoo_lib.load(str(tmp_path / "nothing"))
  (tmp_path / "file").write_text("x")
  with pytest.raises(ZooFormatError, match="it is a file, not a folder"):
    zoo_lib.load(str(tmp_path / "file"))
  with pytest.raises(ZooFormatError, match="no zoo.json"):
    zoo_lib.load(str(tmp_path))
  assert zoo_cli.main(["info", str(tmp_path / "nothing")]) == 1
  assert capsys.readouterr().err.startswith("error: no zoo at ")


def test_the_cli_in_a_subprocess(folder):
  data = b'{"format_version": 1, "net": "\xc3\x28"}'
  offset = data.index(b"\xc3")
  write_meta_bytes(data)(folder)
  proc = subprocess.run([sys.executable, "-m", "wsl_jax.zoo", "info", folder], capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 1
  assert proc.stdout == ""
  assert proc.stderr.splitlines() == [f"error: {os.path.join(folder, 'zoo.json')} is not UTF-8 text "
                                      f"(invalid byte at offset {offset})"], proc.stderr


# ---- non-finite weights in models not flagged as diverged -------------------------------------------

def _poison(folder, cells, flag=()):
  def change(arrays):
    w = arrays["weights"].copy()
    for (m, e, i), value in cells:
      w[m, e, i] = value
    arrays["weights"] = w
  rewrite("weights.npy", change)(folder)
  if flag:
    rewrite("diverged.npy", lambda a: a["diverged"].__setitem__(list(flag), True))(folder)


@pytest.mark.parametrize("mmap", [False, True])
def test_unflagged_nonfinite_weights_are_flagged_with_a_warning(folder, mmap):
  _poison(folder, [((1, 2, 7), np.nan), ((3, 0, 99), np.inf), ((0, 1, 0), -np.inf)], flag=[0])
  path = os.path.join(folder, "weights.npy")
  with pytest.warns(UserWarning, match=r"models \[1, 3\] \(2 in all\) hold NaN or inf") as record:
    z = zoo_lib.load(folder, mmap=mmap)
  assert len(record) == 1
  message = str(record[0].message)
  assert message.startswith(path + ": ") and "diverged.npy" in message and "\n" not in message
  np.testing.assert_array_equal(z.diverged, [True, True, False, True])
  assert np.isnan(z.weights[1, 2, 7])  # the weights are returned as stored
  # verify=False skips the scan (it reads every byte): the zoo is returned as stored.
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    z = zoo_lib.load(folder, verify=False, mmap=mmap)
  np.testing.assert_array_equal(z.diverged, [True, False, False, False])


def test_flagged_nonfinite_models_load_silently(folder):
  _poison(folder, [((2, 1, 3), np.nan)], flag=[2])
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    z = zoo_lib.load(folder)
  np.testing.assert_array_equal(z.diverged, [False, False, True, False])


@pytest.mark.parametrize("chunk", [1, 7, 299, 300, 301, 650, 10_000])
def test_the_finiteness_scan_reads_in_blocks(folder, monkeypatch, chunk):
  """Any block size (smaller than one checkpoint, than one model, or several models) finds the same."""
  _poison(folder, [((0, 0, 0), np.nan), ((2, 2, 99), np.inf)])
  w = np.load(os.path.join(folder, "weights.npy"), mmap_mode="r")
  monkeypatch.setattr(zoo_io, "_NONFINITE_CHUNK", chunk)
  np.testing.assert_array_equal(zoo_io._nonfinite_models(w), [True, False, True, False])
  with pytest.warns(UserWarning, match=r"models \[0, 2\]"):
    z = zoo_lib.load(folder, mmap=True)
  np.testing.assert_array_equal(z.diverged, [True, False, True, False])


def test_cli_info_on_unflagged_nonfinite_weights_warns_and_succeeds(folder, capsys):
  _poison(folder, [((1, 0, 0), np.nan)])
  with pytest.warns(UserWarning, match=r"models \[1\]"):
    assert zoo_cli.main(["info", folder]) == 0
  assert "diverged: 1" in capsys.readouterr().out
