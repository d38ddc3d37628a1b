"""Fused DNC temporal link update and directional reads, with a hand-written backward.

One call replaces ``linkage.update_link`` followed by ``linkage.directional_weights``
(Graves et al. 2016, methods, "Temporal memory linkage"):

    L_t[i, j] = (1 - w^w_t[i] - w^w_t[j]) L_{t-1}[i, j] + w^w_t[i] p_{t-1}[j]   (i != j)
    L_t[i, i] = 0
    f^h_t = L_t w^{r,h}_{t-1}          b^h_t = L_t^T w^{r,h}_{t-1}

The eager composition makes several N x N temporaries forward and many more in autograd's
backward; at N = 256 and beyond it dominates a DNC training step. The backends here compute
the same numbers with far fewer passes over the link matrix:

- ``"cpp"``: a C++ CPU kernel (``csrc/fused_link.cpp``) compiled on first use and cached in
  torch's extension directory. One pass over L_{t-1} forward, one backward.
- ``"torch"``: the same autograd Function written with torch ops; works on any device.
- ``"reference"``: the ``linkage`` functions, differentiated by autograd.
- ``"auto"``: ``"cpp"`` for float32/float64 CPU tensors when the extension builds, else
  ``"torch"``.

The fused backends are differentiable once (no double backward); use ``"reference"`` for
higher-order gradients.

The cpp backend takes its N x N outputs (L_t forward, dL_{t-1} backward) from a pool of blocks
that the tensors return when they are freed, so that a training loop reuses memory that is
already paged in instead of faulting fresh pages in every step. The tensors are ordinary CPU
tensors otherwise. The pool keeps at most ``TORCHMEM_LINK_POOL_MB`` megabytes of free blocks
(default 2048; 0 keeps none); see ``pool_stats``, ``clear_pool`` and ``set_pool_limit``.

Legend: B batch, R read heads, N memory slots.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import sys
import threading
import warnings
from pathlib import Path

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import linkage

__all__ = [
    "BACKENDS",
    "clear_pool",
    "cpp_available",
    "link_step",
    "pool_stats",
    "set_pool_limit",
]

BACKENDS = ("auto", "cpp", "torch", "reference")

_SOURCE = Path(__file__).with_name("csrc") / "fused_link.cpp"
_CPP_DTYPES = (torch.float32, torch.float64)

# Build state of the C++ extension: None until the first attempt, then True or False.
_build_lock = threading.Lock()
_build_ok: bool | None = None
_build_error = ""


def _cpu_tag() -> str:
    """A short hash of this CPU's feature flags.

    The native build uses ``-march=native``; naming it after the CPU keeps a shared extension
    cache from handing one machine's binary to a CPU that lacks its instructions.
    """
    flags = platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith(("flags", "Features")):
                    flags += line
                    break
    except OSError:
        pass
    return hashlib.sha1(flags.encode()).hexdigest()[:10]


def _source_tag() -> str:
    """A short hash of every file in csrc/. torch rebuilds an extension when its listed
    sources change, but not when a header they include does; naming the build after all of
    them makes any change a new build."""
    digest = hashlib.sha1()
    for path in sorted(_SOURCE.parent.iterdir()):
        if path.suffix in (".cpp", ".h"):
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:8]


def _ensure_ninja_on_path() -> None:
    # torch's builder runs `ninja` from PATH; a venv used without activation has it only next
    # to its interpreter.
    if shutil.which("ninja") is None:
        venv_bin = os.path.dirname(sys.executable)
        if shutil.which("ninja", path=venv_bin) is not None:
            os.environ["PATH"] = venv_bin + os.pathsep + os.environ.get("PATH", "")


def _build() -> None:
    from torch.utils import cpp_extension

    _ensure_ninja_on_path()
    # Reassociation lets g++ vectorise the row reductions; no flag here changes NaN or inf
    # handling (no -ffinite-math-only).
    portable = [
        "-O3",
        "-fno-math-errno",
        "-fno-trapping-math",
        "-fno-signed-zeros",
        "-fassociative-math",
    ]
    attempts = [
        # Vector width and FMA of this CPU, plus OpenMP so at::parallel_for spreads the batch
        # over torch's threads.
        (
            f"torchmem_fused_link_{_cpu_tag()}_{_source_tag()}",
            [*portable, "-march=native", "-fopenmp"],
            ["-fopenmp"],
        ),
        # Baseline ISA, single-threaded: for compilers without -march=native or OpenMP.
        (f"torchmem_fused_link_portable_{_source_tag()}", portable, []),
    ]
    errors = []
    for name, cflags, ldflags in attempts:
        try:
            cpp_extension.load(
                name=name,
                sources=[str(_SOURCE)],
                extra_cflags=cflags,
                extra_ldflags=ldflags,
                is_python_module=False,
                verbose=False,
            )
            torch.ops.torchmem_fused_link.forward  # noqa: B018  (raises if not registered)
            return
        except Exception as exc:  # a failed build raises several different types
            errors.append(f"{name}: {type(exc).__name__}: {_tail(str(exc))}")
    raise RuntimeError("\n".join(errors))


def _tail(text: str, lines: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def cpp_available() -> bool:
    """Whether the C++ kernel is usable, building it on the first call (tens of seconds once,
    then loaded from torch's extension cache). A failure is remembered and warned about once.
    """
    return _cpp_ready()


def _cpp_ready() -> bool:
    # Called straight from public functions, so stacklevel 3 names the user's line.
    global _build_ok, _build_error
    if _build_ok is None:
        with _build_lock:
            if _build_ok is None:
                try:
                    _build()
                    _build_ok = True
                except Exception as exc:
                    _build_ok, _build_error = False, str(exc)
                    warnings.warn(
                        "torchmem: the fused C++ link kernel could not be built; using the "
                        f"torch backend instead.\n{_build_error}",
                        RuntimeWarning,
                        stacklevel=3,
                    )
    return bool(_build_ok)


_POOL_STATS = (
    "held_bytes",  # free blocks kept for reuse
    "held_blocks",
    "in_use_bytes",  # blocks owned by live tensors
    "in_use_blocks",
    "hits",  # outputs served from a free block
    "misses",  # outputs that needed fresh memory
    "dropped",  # blocks really freed because of the limit
    "limit_bytes",
)


def pool_stats() -> dict[str, int]:
    """Counters of the cpp backend's buffer pool (building the kernel if needed): bytes and
    blocks held free and in use, hits, misses, blocks dropped because of the limit, and the
    limit. All zero where the kernel is unavailable."""
    if not _cpp_ready():
        return dict.fromkeys(_POOL_STATS, 0)
    return dict(zip(_POOL_STATS, torch.ops.torchmem_fused_link.pool_stats(), strict=True))


def clear_pool() -> int:
    """Free the pool's cached blocks and return how many bytes that released. Blocks of live
    tensors are untouched; they come back to the pool when the tensors are freed."""
    if not _build_ok:  # nothing was ever pooled
        return 0
    return int(torch.ops.torchmem_fused_link.clear_pool())


def set_pool_limit(limit_bytes: int) -> int:
    """Set how many bytes of free blocks the pool may keep (0 keeps none), dropping cached
    blocks beyond it, and return the previous limit. The default comes from the environment
    variable ``TORCHMEM_LINK_POOL_MB`` (megabytes, default 2048)."""
    if not _cpp_ready():
        raise RuntimeError(f"the cpp link backend failed to build:\n{_build_error}")
    return int(torch.ops.torchmem_fused_link.set_pool_limit(int(limit_bytes)))


def _decay(write_weights: Tensor) -> Tensor:
    """(1 - w[i] - w[j]) as a fresh (B, N, N) matrix."""
    return (1 - write_weights).unsqueeze(-1) - write_weights.unsqueeze(-2)


class _TorchLinkStep(torch.autograd.Function):
    """The fused maths in torch ops for any device: in-place updates of fresh N x N buffers
    instead of the reference's chain of temporaries, and a closed-form backward."""

    @staticmethod
    def forward(ctx, link, write_weights, precedence, read_weights):
        ctx.set_materialize_grads(False)
        new_link = _decay(write_weights).mul_(link)
        new_link.baddbmm_(write_weights.unsqueeze(-1), precedence.unsqueeze(-2))
        new_link.diagonal(dim1=-2, dim2=-1).zero_()
        forward = torch.matmul(read_weights, new_link.transpose(-1, -2))
        backward = torch.matmul(read_weights, new_link)
        ctx.save_for_backward(link, write_weights, precedence, read_weights, new_link)
        return new_link, forward, backward

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_new_link, grad_forward, grad_backward):
        # The formulas are derived in csrc/fused_link.cpp, above backward_block.
        link, write_weights, precedence, read_weights, new_link = ctx.saved_tensors
        if grad_new_link is None and grad_forward is None and grad_backward is None:
            return None, None, None, None
        grad_forward = torch.zeros_like(read_weights) if grad_forward is None else grad_forward
        grad_backward = torch.zeros_like(read_weights) if grad_backward is None else grad_backward
        # G = dL_t + df^T r + r^T db, as one (B, N, 2R) x (B, 2R, N) product.
        left = torch.cat([grad_forward, read_weights], dim=-2).transpose(-1, -2)
        right = torch.cat([read_weights, grad_backward], dim=-2)
        grad = torch.matmul(left, right)
        if grad_new_link is not None:
            grad.add_(grad_new_link)
        grad.diagonal(dim1=-2, dim2=-1).zero_()

        grad_precedence = torch.matmul(write_weights.unsqueeze(-2), grad).squeeze(-2)
        grad_read = torch.matmul(grad_forward, new_link) + torch.matmul(
            grad_backward, new_link.transpose(-1, -2)
        )
        grad_write = torch.matmul(grad, precedence.unsqueeze(-1)).squeeze(-1)
        grad_link = _decay(write_weights).mul_(grad)
        grad_times_link = grad.mul_(link)  # G is ours and no longer needed as itself
        grad_write -= grad_times_link.sum(dim=-1)
        grad_write -= grad_times_link.sum(dim=-2)
        return grad_link, grad_write, grad_precedence, grad_read


def _reference(link, write_weights, precedence, read_weights):
    new_link = linkage.update_link(link, write_weights, precedence)
    forward, backward = linkage.directional_weights(new_link, read_weights)
    return new_link, forward, backward


def _check_shapes(link: Tensor, write_weights: Tensor, precedence: Tensor, read: Tensor):
    if link.dim() != 3 or link.shape[-1] != link.shape[-2]:
        raise ValueError(f"link must have shape (B, N, N), got {tuple(link.shape)}")
    batch, slots = link.shape[0], link.shape[-1]
    for name, tensor in (("write_weights", write_weights), ("precedence", precedence)):
        if tuple(tensor.shape) != (batch, slots):
            raise ValueError(
                f"{name} must have shape (B, N) = ({batch}, {slots}), got {tuple(tensor.shape)}"
            )
    if read.dim() != 3 or read.shape[0] != batch or read.shape[-1] != slots:
        raise ValueError(
            f"read_weights must have shape (B, R, N) = ({batch}, R, {slots}), "
            f"got {tuple(read.shape)}"
        )
    tensors = (link, write_weights, precedence, read)
    if len({t.dtype for t in tensors}) != 1 or len({t.device for t in tensors}) != 1:
        raise ValueError(
            "link_step needs all inputs on one device with one dtype, got "
            f"{[(str(t.device), t.dtype) for t in tensors]}"
        )


def _cpp_supports(link: Tensor) -> bool:
    return link.device.type == "cpu" and link.dtype in _CPP_DTYPES


def link_step(
    link: Tensor,
    write_weights: Tensor,
    precedence: Tensor,
    read_weights: Tensor,
    *,
    backend: str = "auto",
) -> tuple[Tensor, Tensor, Tensor]:
    """Update the temporal link matrix and read along it, in one fused step.

    Args:
        link: L_{t-1}, (B, N, N), the previous link matrix.
        write_weights: w^w_t, (B, N), this step's write weighting.
        precedence: p_{t-1}, (B, N), the precedence *before* this step's update.
        read_weights: w^r_{t-1}, (B, R, N), the previous read weightings, one row per head.
        backend: ``"auto"``, ``"cpp"``, ``"torch"`` or ``"reference"`` (see the module doc).

    Returns:
        ``(new_link, forward, backward)``: L_t (B, N, N) with a zero diagonal; f_t = L_t w^r
        and b_t = L_t^T w^r, each (B, R, N). Equal (up to rounding) to
        ``linkage.update_link`` followed by ``linkage.directional_weights``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown link backend {backend!r}; choose one of {BACKENDS}")
    _check_shapes(link, write_weights, precedence, read_weights)
    if backend == "reference":
        return _reference(link, write_weights, precedence, read_weights)
    if backend == "auto":
        backend = "cpp" if _cpp_supports(link) and _cpp_ready() else "torch"
    if backend == "torch":
        return _TorchLinkStep.apply(link, write_weights, precedence, read_weights)
    if not _cpp_supports(link):
        raise ValueError(
            f"the cpp link backend needs float32 or float64 CPU tensors, got {link.dtype} on "
            f"{link.device}; use backend='torch'"
        )
    if not _cpp_ready():
        raise RuntimeError(f"the cpp link backend failed to build:\n{_build_error}")
    # A C++ autograd Function (csrc/fused_link.cpp, LinkStep); it makes inputs contiguous.
    return tuple(
        torch.ops.torchmem_fused_link.link_step(link, write_weights, precedence, read_weights)
    )
