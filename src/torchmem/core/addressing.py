"""Content- and location-based addressing, reads and erase/add writes.

Pure functions, one equation each (Graves et al. 2014, "Neural Turing Machines", section 3;
Graves et al. 2016, "Hybrid computing using a neural network with dynamic external memory").

Legend: B batch, H heads, N memory slots ("N" in both papers), W memory width ("M" in the
NTM paper, "W" in the DNC paper), S number of allowed shifts (2 * shift_range + 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

EPS = 1e-6


def _norm(x: Tensor, eps: float) -> Tensor:
    """sqrt(|x|^2 + eps^2) over the last dim: finite gradient at x = 0, and much cheaper on
    the CPU than ``Tensor.norm`` (whose backward masks zeros) at these sizes."""
    return (x * x).sum(dim=-1).add(eps * eps).sqrt()


def unit_vector(x: Tensor, eps: float = EPS) -> Tensor:
    """x / sqrt(|x|^2 + eps^2) over the last dim: a unit vector, defined and smooth at 0."""
    return x * torch.rsqrt((x * x).sum(-1, keepdim=True) + eps * eps)


def cosine_similarity(memory: Tensor, keys: Tensor, eps: float = EPS) -> Tensor:
    """K[k, M(i)] = k . M(i) / (|k| |M(i)|).

    memory (B, N, W), keys (B, H, W) -> (B, H, N). Each norm is taken as
    sqrt(|x|^2 + eps^2), which keeps an all-zero memory (and its gradient) finite.
    """
    dot = torch.matmul(keys, memory.transpose(-1, -2))  # (B, H, N)
    return dot / (_norm(keys, eps).unsqueeze(-1) * _norm(memory, eps).unsqueeze(-2))


def content_weights(
    memory: Tensor, keys: Tensor, strengths: Tensor, mask: Tensor | None = None
) -> Tensor:
    """w^c(i) = softmax_i(beta * K[k, M(i)]) (NTM eq. 5, DNC "content-based addressing").

    memory (B, N, W), keys (B, H, W), strengths beta (B, H) >= 0 -> (B, H, N).
    ``mask`` (B, H, W) in [0, 1] is the masked content addressing of Csordas & Schmidhuber
    (2019): key and memory are both multiplied by it, so a head can ignore some columns.
    """
    if mask is not None:
        # |M(i) o m|^2 = (M o M) (m o m)^T and (k o m).(M(i) o m) = (k o m o m) M(i)^T: no
        # (B, H, N, W) temporary is needed.
        masked_keys = keys * mask
        dot = torch.matmul(masked_keys * mask, memory.transpose(-1, -2))
        mem_norm = torch.matmul(mask * mask, (memory * memory).transpose(-1, -2))
        mem_norm = (mem_norm.clamp_min(0) + EPS * EPS).sqrt()  # finite gradient at 0
        similarity = dot / (_norm(masked_keys, EPS).unsqueeze(-1) * mem_norm)
    else:
        similarity = cosine_similarity(memory, keys)
    return torch.softmax(similarity * strengths.unsqueeze(-1), dim=-1)


def interpolate(content: Tensor, previous: Tensor, gate: Tensor) -> Tensor:
    """w^g = g w^c + (1 - g) w_{t-1} (NTM eq. 7). content, previous (B, H, N); gate (B, H)."""
    gate = gate.unsqueeze(-1)
    return gate * content + (1 - gate) * previous


def circular_shift(weights: Tensor, shift: Tensor) -> Tensor:
    """w~(i) = sum_j w(j) s(i - j), indices modulo N (NTM eq. 8).

    weights (B, H, N); shift (B, H, S) a distribution over offsets -k..k with S = 2k + 1.
    The loop runs over the S offsets (3 by default), never over the batch.
    """
    size = shift.shape[-1]
    if size % 2 != 1:
        raise ValueError(f"shift must have an odd number of offsets (2k+1), got {size}")
    radius = size // 2
    out = torch.zeros_like(weights)
    for index in range(size):
        offset = index - radius  # s(offset) moves weight from j to j + offset
        out = out + torch.roll(weights, shifts=offset, dims=-1) * shift[..., index : index + 1]
    return out


def sharpen(weights: Tensor, gamma: Tensor, eps: float = EPS) -> Tensor:
    """w(i) = w~(i)^gamma / sum_j w~(j)^gamma (NTM eq. 9). weights (B, H, N); gamma (B, H) >= 1.

    ``eps`` keeps 0 ** gamma differentiable in gamma (its log would otherwise be -inf).
    """
    powered = (weights + eps).pow(gamma.unsqueeze(-1))
    return powered / powered.sum(dim=-1, keepdim=True)


def ntm_address(
    memory: Tensor,
    previous: Tensor,
    keys: Tensor,
    strengths: Tensor,
    gate: Tensor,
    shift: Tensor,
    gamma: Tensor,
) -> Tensor:
    """The whole NTM addressing pipeline (NTM fig. 2): content -> gate -> shift -> sharpen.

    memory (B, N, W); previous w_{t-1} (B, H, N); keys (B, H, W); strengths, gate, gamma (B, H);
    shift (B, H, S) -> w_t (B, H, N).
    """
    content = content_weights(memory, keys, strengths)
    return sharpen(circular_shift(interpolate(content, previous, gate), shift), gamma)


def read_memory(memory: Tensor, weights: Tensor) -> Tensor:
    """r = sum_i w(i) M(i) (NTM eq. 2). memory (B, N, W), weights (B, H, N) -> (B, H, W)."""
    return torch.matmul(weights, memory)


def erase_and_add(memory: Tensor, weights: Tensor, erase: Tensor, add: Tensor) -> Tensor:
    """M_t(i) = M_{t-1}(i) prod_h [1 - w_h(i) e_h] + sum_h w_h(i) a_h (NTM eqs. 3-4).

    memory (B, N, W); weights (B, H, N); erase, add (B, H, W) -> (B, N, W). Erasures multiply,
    so the order of several write heads does not matter (NTM section 3.2).
    """
    if weights.shape[1] == 1:  # the common case, without a product over heads
        # M (1 - w e) + w a = M + w (a - M e): three passes over (B, N, W) instead of five.
        w = weights[:, 0].unsqueeze(-1)  # (B, N, 1)
        return torch.addcmul(memory, w, add[:, :1] - memory * erase[:, :1])
    keep = torch.prod(1 - weights.unsqueeze(-1) * erase.unsqueeze(2), dim=1)  # (B, N, W)
    return memory * keep + torch.matmul(weights.transpose(1, 2), add)


def oneplus(x: Tensor) -> Tensor:
    """oneplus(x) = 1 + log(1 + e^x), a value in [1, inf) (DNC methods)."""
    return 1 + F.softplus(x)
