"""The models, data and training loop behind ``probecore study`` (PyTorch).

``probecore study`` trains small networks on scikit-learn's digits on the spot, then
measures them with probecore's framework-free core. This module holds the PyTorch side:

* :func:`digits`: the 1,797 images split into 1,347 training and 450 test images
  (stratified, fixed seed), as float64 tensors scaled to ``[0, 1]``;
* :func:`mlp` and :func:`deep_net`: a one-hidden-layer MLP, and a deep MLP in three
  variants of the same shape (``"plain"``, ``"residual"``, ``"residual-norm"``);
* :func:`train_sgd`: mini-batch SGD that stops when the loss on the **whole** training
  split first falls below a target (evaluated after every step, so models trained with
  different batch sizes stop at nearly the same training loss), recording the loss curve
  and, optionally, the first mini-batch gradients (for the effective dimension).

Everything is float64 and seeded: two runs give bitwise-equal models on the same machine
and thread count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "DeepNet",
    "Digits",
    "TrainingRun",
    "accuracy",
    "deep_net",
    "digits",
    "mlp",
    "objectives",
    "train_sgd",
]

_KINDS = ("plain", "residual", "residual-norm")


@dataclass(frozen=True)
class Digits:
    """Training and test split of scikit-learn's digits (float64 inputs in ``[0, 1]``)."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor


def digits(*, test_size: float = 0.25, seed: int = 0) -> Digits:
    """The digits data set, split with ``train_test_split(stratify=y, random_state=seed)``.

    With the default ``test_size`` there are 1,347 training and 450 test images.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(
        X / 16.0, y, test_size=test_size, stratify=y, random_state=seed
    )
    f64 = torch.float64
    return Digits(
        torch.as_tensor(Xtr, dtype=f64),
        torch.as_tensor(ytr, dtype=torch.long),
        torch.as_tensor(Xte, dtype=f64),
        torch.as_tensor(yte, dtype=torch.long),
    )


def mlp(*, hidden: int = 64, seed: int) -> nn.Module:
    """``64 → hidden → 10`` with ReLU, PyTorch's default initialization from ``seed``."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10)).double()


class DeepNet(nn.Module):
    """A deep MLP for digits: a stem, ``blocks`` blocks of two ``width × width`` layers, a head.

    ``kind`` only changes how a block combines its input ``h`` with its branch
    ``f(h) = W₂ relu(W₁ h)``:

    * ``"plain"``: ``h ← relu(f(h))``;
    * ``"residual"``: ``h ← relu(h + f(h))`` (He et al. 2016);
    * ``"residual-norm"``: ``h ← h + f(LayerNorm(h))`` (pre-normalization), which adds
      ``2·width`` parameters per block.

    The plain and residual networks have exactly the same parameters.
    """

    def __init__(self, kind: str, *, width: int = 64, blocks: int = 4) -> None:
        super().__init__()
        if kind not in _KINDS:
            raise ValueError(f"`kind` must be one of {_KINDS}; got {kind!r}.")
        self.kind = kind
        self.stem = nn.Linear(64, width)
        self.blocks = nn.ModuleList(
            nn.ModuleList([nn.Linear(width, width), nn.Linear(width, width)]) for _ in range(blocks)
        )
        self.norms = (
            nn.ModuleList(nn.LayerNorm(width) for _ in range(blocks))
            if kind == "residual-norm"
            else None
        )
        self.head = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the 10 classes for inputs ``x`` of shape ``(n, 64)``."""
        h = F.relu(self.stem(x))
        for i, (first, second) in enumerate(self.blocks):
            if self.kind == "plain":
                h = F.relu(second(F.relu(first(h))))
            elif self.kind == "residual":
                h = F.relu(h + second(F.relu(first(h))))
            else:
                h = h + second(F.relu(first(self.norms[i](h))))
        return self.head(h)


def deep_net(kind: str, *, width: int = 64, blocks: int = 4, seed: int) -> DeepNet:
    """A :class:`DeepNet` in float64 with He (Kaiming normal, fan-in) weights and zero biases.

    Every variant gets the same initialization scheme, and the plain and residual networks
    built from the same ``seed`` start from the same weights. (PyTorch's default
    initialization leaves an 8-layer plain ReLU network with a vanishing signal, so that
    it does not train at all: He initialization gives the plain network a fair chance.)
    """
    torch.manual_seed(seed)
    net = DeepNet(kind, width=width, blocks=blocks).double()
    for module in net.modules():
        if isinstance(module, nn.Linear):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            nn.init.zeros_(module.bias)
    return net


@dataclass(frozen=True)
class TrainingRun:
    """What :func:`train_sgd` did.

    Attributes
    ----------
    model : torch.nn.Module
        The trained model (in eval mode).
    reached : bool
        Whether the full training loss fell below the target.
    steps : int
        SGD steps taken.
    epochs : float
        Examples seen divided by the training-set size: epochs to the target when
        ``reached``.
    final_loss : float
        Full training loss at the end.
    epoch_losses : numpy.ndarray
        Full training loss at initialization, then at the end of every completed epoch
        (and at the stopping step).
    diverged : bool
        The loss became non-finite (training stopped there).
    gradients : numpy.ndarray or None
        ``(T, dim)`` mini-batch gradients of the first ``T = record_gradients`` steps.
    """

    model: nn.Module
    reached: bool
    steps: int
    epochs: float
    final_loss: float
    epoch_losses: np.ndarray
    diverged: bool
    gradients: np.ndarray | None


def _full_loss(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(F.cross_entropy(model(X), y))


def train_sgd(
    model: nn.Module,
    data: Digits,
    *,
    lr: float,
    batch_size: int,
    target_loss: float,
    max_epochs: int,
    seed: int,
    record_gradients: int = 0,
) -> TrainingRun:
    """Mini-batch SGD on the cross-entropy until the full training loss is below ``target_loss``.

    Each epoch visits the training split in a random order drawn from ``seed``; the last
    batch of an epoch may be short. After every step the loss on the whole training split
    is evaluated, and training stops at the first step where it is below ``target_loss``
    (or after ``max_epochs``, or when it becomes non-finite). Plain SGD: no momentum, so
    that the step size is the learning rate the stages compare.

    Training runs on one thread (restored afterwards): these matrices are too small for
    threads to pay, and the result then does not depend on the machine's core count.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(model, data, lr, batch_size, target_loss, max_epochs, seed, record_gradients)
    finally:
        torch.set_num_threads(threads)


def _train(model, data, lr, batch_size, target_loss, max_epochs, seed, record_gradients):
    X, y = data.X_train, data.y_train
    n = len(y)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    grads: list[np.ndarray] = []
    losses = [_full_loss(model, X, y)]
    steps, seen, reached, diverged = 0, 0, losses[0] < target_loss, False
    loss = losses[0]
    for _ in range(max_epochs):
        if reached or diverged:
            break
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            opt.zero_grad()
            F.cross_entropy(model(X[idx]), y[idx]).backward()
            if len(grads) < record_gradients:
                grads.append(torch.cat([p.grad.reshape(-1) for p in params]).numpy().copy())
            opt.step()
            steps += 1
            seen += len(idx)
            loss = _full_loss(model, X, y)
            if not np.isfinite(loss):
                diverged = True
                break
            if loss < target_loss:
                reached = True
                break
        losses.append(loss)
    model.eval()
    return TrainingRun(
        model=model,
        reached=reached,
        steps=steps,
        epochs=seen / n,
        final_loss=loss,
        epoch_losses=np.asarray(losses),
        diverged=diverged,
        gradients=np.asarray(grads) if grads else None,
    )


def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    """Share of ``X`` classified as ``y``."""
    with torch.no_grad():
        return float((model(X).argmax(dim=1) == y).double().mean())


def objectives(model: nn.Module, data: Digits) -> tuple:
    """The float64 cross-entropy Objectives of ``model`` on the training and the test split."""
    from probecore_torch import TorchObjective

    kw = {"dtype": torch.float64}
    return (
        TorchObjective(model, F.cross_entropy, (data.X_train, data.y_train), **kw),
        TorchObjective(model, F.cross_entropy, (data.X_test, data.y_test), **kw),
    )
