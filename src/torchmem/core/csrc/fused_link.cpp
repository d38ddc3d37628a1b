// Fused CPU kernels for the DNC temporal link update and its directional reads.
//
// torchmem/core/fused_link.py compiles this file on first use of the "cpp" backend and calls
// the two operators registered at the bottom, torch.ops.torchmem_fused_link.forward/backward.
//
// Legend: B batch, R read heads, N memory slots. Per batch element
//   L_t[i, j] = (1 - w[i] - w[j]) L_{t-1}[i, j] + w[i] p[j]  (i != j),  L_t[i, i] = 0
//   f[h, i]   = sum_j L_t[i, j] r[h, j]      (f = L_t w^r_{t-1})
//   b[h, j]   = sum_i L_t[i, j] r[h, i]      (b = L_t^T w^r_{t-1})
// with w the write weights, p the previous precedence and r the previous read weights.
//
// The link matrices are the only large operands, so each kernel streams through L_{t-1} once,
// row by row: the forward reads L_{t-1} and writes L_t, the backward reads L_{t-1} and dL_t
// and writes dL_{t-1}. Everything else the row loop touches (w, p, r, the accumulators and a
// scratch row or two) is a few vectors of length N that stay in L1. Every inner loop runs
// over a whole contiguous row without branches, so g++ vectorises it; the diagonal is either
// overwritten between loops or masked with a select.
//
// The parallel loop over the batch uses OpenMP through at::parallel_for when built with
// -fopenmp (and runs serially otherwise); reductions need -fassociative-math to vectorise.

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>
#include <torch/library.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <tuple>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace {

// A fresh output of 32 MB or more (N = 1024 at B = 16 gives 64 MB) comes straight from mmap,
// and faulting it in 4 KB pages costs as much as the kernel itself. Asking for transparent
// huge pages before the first write cuts the faults 512-fold. Only whole 2 MB blocks inside
// the tensor are advised, and smaller tensors, which glibc may carve from its heap, are left
// alone. The call is a hint: failure changes nothing.
void advise_huge_pages(const at::Tensor& fresh) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHugePage = uintptr_t(2) << 20;
  constexpr size_t kMinBytes = size_t(32) << 20;
  const size_t bytes = fresh.nbytes();
  if (bytes < kMinBytes) return;
  const auto start = reinterpret_cast<uintptr_t>(fresh.data_ptr());
  const uintptr_t begin = (start + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t end = (start + bytes) & ~(kHugePage - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)fresh;
#endif
}

// Reductions vectorise because the build allows reassociation (-fassociative-math).
template <typename T>
inline T dot(const T* __restrict__ a, const T* __restrict__ b, int64_t n) {
  T total = T(0);
  for (int64_t j = 0; j < n; ++j) total += a[j] * b[j];
  return total;
}

// y += alpha * x
template <typename T>
inline void axpy(T alpha, const T* __restrict__ x, T* __restrict__ y, int64_t n) {
  for (int64_t j = 0; j < n; ++j) y[j] += alpha * x[j];
}

// One batch element of the forward pass. `backward_read` must arrive zeroed.
template <typename T>
void forward_one(const T* __restrict__ prev_link, const T* __restrict__ write,
                 const T* __restrict__ precedence, const T* __restrict__ read,
                 T* __restrict__ new_link, T* __restrict__ forward_read,
                 T* __restrict__ backward_read, int64_t n, int64_t heads) {
  for (int64_t i = 0; i < n; ++i) {
    const T* __restrict__ prev_row = prev_link + i * n;
    T* __restrict__ row = new_link + i * n;
    const T w_i = write[i];
    const T keep_i = T(1) - w_i;
    for (int64_t j = 0; j < n; ++j) {
      row[j] = (keep_i - write[j]) * prev_row[j] + w_i * precedence[j];
    }
    row[i] = T(0);
    // The finished row is hot in L1: f[h, i] is its dot with r[h], and it is row i's share of
    // every b[h, :].
    for (int64_t h = 0; h < heads; ++h) {
      const T* __restrict__ read_h = read + h * n;
      forward_read[h * n + i] = dot(row, read_h, n);
      axpy(read_h[i], row, backward_read + h * n, n);
    }
  }
}

// Backward pass. Derivation (G = dLoss/dL_t, zero on the diagonal because L_t[i, i] is the
// constant 0, so nothing flows back through it):
//   G[i, j]  = dL_t[i, j] + sum_h (df[h, i] r[h, j] + r[h, i] db[h, j])          (i != j)
//   dL_{t-1} = G * (1 - w[i] - w[j])
//   dw[k]    = sum_j G[k, j] (p[j] - L_{t-1}[k, j]) - sum_i G[i, k] L_{t-1}[i, k]
//              (w[k] appears as w[i] in row k and as w[j] in column k)
//   dp[j]    = sum_i G[i, j] w[i]
//   dr[h, j] = sum_i df[h, i] L_t[i, j] + sum_k L_t[j, k] db[h, k]
// Row i of L_t is recomputed from L_{t-1} (two flops an element) instead of being saved and
// read back (a third N x N stream). grad_write, grad_precedence and grad_read must arrive
// zeroed; a missing dL_t is read as `zeros` (one row of n zeros) for every row.

// The common case, 1 to 4 heads: everything for element (i, j) in one loop over the row.
template <typename T, int kHeads>
void backward_one_fused(const T* __restrict__ prev_link, const T* __restrict__ write,
                        const T* __restrict__ precedence, const T* __restrict__ read,
                        const T* __restrict__ grad_new_link, const T* __restrict__ grad_forward,
                        const T* __restrict__ grad_backward, T* __restrict__ grad_prev_link,
                        T* __restrict__ grad_write, T* __restrict__ grad_precedence,
                        T* __restrict__ grad_read, const T* __restrict__ zeros, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const T* __restrict__ prev_row = prev_link + i * n;
    const T* __restrict__ grad_new_row = grad_new_link != nullptr ? grad_new_link + i * n : zeros;
    T* __restrict__ grad_prev_row = grad_prev_link + i * n;
    const T w_i = write[i];
    const T keep_i = T(1) - w_i;
    T df_i[kHeads], r_i[kHeads], row_read_grad[kHeads];
    for (int h = 0; h < kHeads; ++h) {
      df_i[h] = grad_forward[h * n + i];
      r_i[h] = read[h * n + i];
      row_read_grad[h] = T(0);
    }
    T row_write_grad = T(0);
    for (int64_t j = 0; j < n; ++j) {
      const T old = prev_row[j];
      const T decay = keep_i - write[j];
      T g = grad_new_row[j];
      for (int h = 0; h < kHeads; ++h) {
        g += df_i[h] * read[h * n + j] + r_i[h] * grad_backward[h * n + j];
      }
      T value = decay * old + w_i * precedence[j];  // L_t[i, j]
      // Masking the diagonal with a select keeps the loop branch-free and exact.
      g = j == i ? T(0) : g;
      value = j == i ? T(0) : value;
      grad_prev_row[j] = g * decay;
      row_write_grad += g * (precedence[j] - old);
      grad_write[j] -= g * old;
      grad_precedence[j] += g * w_i;
      for (int h = 0; h < kHeads; ++h) {
        grad_read[h * n + j] += df_i[h] * value;
        row_read_grad[h] += value * grad_backward[h * n + j];
      }
    }
    grad_write[i] += row_write_grad;
    for (int h = 0; h < kHeads; ++h) grad_read[h * n + i] += row_read_grad[h];
  }
}

// Any number of heads: the same sums in several short loops over L1-resident rows. `scratch`
// holds 2 n elements.
template <typename T>
void backward_one_any_heads(const T* __restrict__ prev_link, const T* __restrict__ write,
                            const T* __restrict__ precedence, const T* __restrict__ read,
                            const T* __restrict__ grad_new_link,
                            const T* __restrict__ grad_forward,
                            const T* __restrict__ grad_backward, T* __restrict__ grad_prev_link,
                            T* __restrict__ grad_write, T* __restrict__ grad_precedence,
                            T* __restrict__ grad_read, const T* __restrict__ zeros,
                            T* __restrict__ scratch, int64_t n, int64_t heads) {
  T* __restrict__ g = scratch;            // row i of G
  T* __restrict__ new_row = scratch + n;  // row i of L_t
  for (int64_t i = 0; i < n; ++i) {
    const T* __restrict__ grad_new_row = grad_new_link != nullptr ? grad_new_link + i * n : zeros;
    std::copy(grad_new_row, grad_new_row + n, g);
    for (int64_t h = 0; h < heads; ++h) {
      const T* __restrict__ read_h = read + h * n;
      const T* __restrict__ grad_backward_h = grad_backward + h * n;
      const T df_hi = grad_forward[h * n + i];
      const T r_hi = read_h[i];
      for (int64_t j = 0; j < n; ++j) g[j] += df_hi * read_h[j] + r_hi * grad_backward_h[j];
    }
    g[i] = T(0);

    // With g[i] = 0 the diagonal adds nothing to dw and dp and writes dL_{t-1}[i, i] = 0.
    const T* __restrict__ prev_row = prev_link + i * n;
    T* __restrict__ grad_prev_row = grad_prev_link + i * n;
    const T w_i = write[i];
    const T keep_i = T(1) - w_i;
    T row_write_grad = T(0);
    for (int64_t j = 0; j < n; ++j) {
      const T old = prev_row[j];
      const T decay = keep_i - write[j];
      grad_prev_row[j] = g[j] * decay;
      new_row[j] = decay * old + w_i * precedence[j];
      row_write_grad += g[j] * (precedence[j] - old);
      grad_write[j] -= g[j] * old;
      grad_precedence[j] += g[j] * w_i;
    }
    grad_write[i] += row_write_grad;
    new_row[i] = T(0);

    for (int64_t h = 0; h < heads; ++h) {
      T* __restrict__ grad_read_h = grad_read + h * n;
      axpy(grad_forward[h * n + i], new_row, grad_read_h, n);
      grad_read_h[i] += dot(new_row, grad_backward + h * n, n);
    }
  }
}

template <typename T>
using FusedBackward = void (*)(const T*, const T*, const T*, const T*, const T*, const T*,
                               const T*, T*, T*, T*, T*, const T*, int64_t);

// The fused backward for `heads` heads, or null where only the any-heads kernel applies.
template <typename T>
FusedBackward<T> fused_backward_for(int64_t heads) {
  switch (heads) {
    case 1: return &backward_one_fused<T, 1>;
    case 2: return &backward_one_fused<T, 2>;
    case 3: return &backward_one_fused<T, 3>;
    case 4: return &backward_one_fused<T, 4>;
    default: return nullptr;
  }
}

void check_inputs(const at::Tensor& prev_link, const at::Tensor& write,
                  const at::Tensor& precedence, const at::Tensor& read) {
  TORCH_CHECK(prev_link.dim() == 3 && prev_link.size(1) == prev_link.size(2),
              "link must have shape (B, N, N), got ", prev_link.sizes());
  const int64_t batch = prev_link.size(0);
  const int64_t n = prev_link.size(1);
  TORCH_CHECK(write.dim() == 2 && write.size(0) == batch && write.size(1) == n,
              "write_weights must have shape (B, N) = (", batch, ", ", n, "), got ",
              write.sizes());
  TORCH_CHECK(precedence.sizes() == write.sizes(), "precedence must have shape (B, N) = (",
              batch, ", ", n, "), got ", precedence.sizes());
  TORCH_CHECK(read.dim() == 3 && read.size(0) == batch && read.size(2) == n,
              "read_weights must have shape (B, R, N), got ", read.sizes());
  for (const at::Tensor* t : {&prev_link, &write, &precedence, &read}) {
    TORCH_CHECK(t->device().is_cpu(), "the cpp link kernel runs on CPU tensors only");
    TORCH_CHECK(t->scalar_type() == prev_link.scalar_type(),
                "all inputs must share one dtype, got ", prev_link.scalar_type(), " and ",
                t->scalar_type());
    TORCH_CHECK(t->is_contiguous(), "the cpp link kernel needs contiguous inputs");
  }
}

// Batch elements per task: keep tiny problems on one thread.
int64_t grain_for(int64_t n) { return std::max<int64_t>(1, 65536 / std::max<int64_t>(1, n * n)); }

std::tuple<at::Tensor, at::Tensor, at::Tensor> link_forward(const at::Tensor& prev_link,
                                                             const at::Tensor& write,
                                                             const at::Tensor& precedence,
                                                             const at::Tensor& read) {
  check_inputs(prev_link, write, precedence, read);
  const int64_t batch = prev_link.size(0);
  const int64_t n = prev_link.size(1);
  const int64_t heads = read.size(1);
  at::Tensor new_link = at::empty_like(prev_link);
  advise_huge_pages(new_link);
  at::Tensor forward_read = at::empty_like(read);
  at::Tensor backward_read = at::zeros_like(read);
  AT_DISPATCH_FLOATING_TYPES(prev_link.scalar_type(), "torchmem_link_forward", [&] {
    const scalar_t* prev_ptr = prev_link.const_data_ptr<scalar_t>();
    const scalar_t* write_ptr = write.const_data_ptr<scalar_t>();
    const scalar_t* prec_ptr = precedence.const_data_ptr<scalar_t>();
    const scalar_t* read_ptr = read.const_data_ptr<scalar_t>();
    scalar_t* new_ptr = new_link.mutable_data_ptr<scalar_t>();
    scalar_t* fwd_ptr = forward_read.mutable_data_ptr<scalar_t>();
    scalar_t* bwd_ptr = backward_read.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, batch, grain_for(n), [&](int64_t first, int64_t last) {
      for (int64_t b = first; b < last; ++b) {
        forward_one<scalar_t>(prev_ptr + b * n * n, write_ptr + b * n, prec_ptr + b * n,
                              read_ptr + b * heads * n, new_ptr + b * n * n,
                              fwd_ptr + b * heads * n, bwd_ptr + b * heads * n, n, heads);
      }
    });
  });
  return {new_link, forward_read, backward_read};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> link_backward(
    const at::Tensor& prev_link, const at::Tensor& write, const at::Tensor& precedence,
    const at::Tensor& read, const std::optional<at::Tensor>& grad_new_link,
    const at::Tensor& grad_forward, const at::Tensor& grad_backward) {
  check_inputs(prev_link, write, precedence, read);
  const bool has_grad_new = grad_new_link.has_value() && grad_new_link->defined();
  if (has_grad_new) {
    TORCH_CHECK(grad_new_link->sizes() == prev_link.sizes() && grad_new_link->is_contiguous() &&
                    grad_new_link->scalar_type() == prev_link.scalar_type(),
                "grad of the new link must be contiguous with the link's shape and dtype");
  }
  for (const at::Tensor* t : {&grad_forward, &grad_backward}) {
    TORCH_CHECK(t->sizes() == read.sizes() && t->is_contiguous() &&
                    t->scalar_type() == read.scalar_type(),
                "grads of the directional weights must be contiguous (B, R, N) tensors");
  }
  const int64_t batch = prev_link.size(0);
  const int64_t n = prev_link.size(1);
  const int64_t heads = read.size(1);
  at::Tensor grad_prev_link = at::empty_like(prev_link);
  advise_huge_pages(grad_prev_link);
  at::Tensor grad_write = at::zeros_like(write);
  at::Tensor grad_precedence = at::zeros_like(precedence);
  at::Tensor grad_read = at::zeros_like(read);
  AT_DISPATCH_FLOATING_TYPES(prev_link.scalar_type(), "torchmem_link_backward", [&] {
    const scalar_t* prev_ptr = prev_link.const_data_ptr<scalar_t>();
    const scalar_t* write_ptr = write.const_data_ptr<scalar_t>();
    const scalar_t* prec_ptr = precedence.const_data_ptr<scalar_t>();
    const scalar_t* read_ptr = read.const_data_ptr<scalar_t>();
    const scalar_t* grad_new_ptr =
        has_grad_new ? grad_new_link->const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* grad_fwd_ptr = grad_forward.const_data_ptr<scalar_t>();
    const scalar_t* grad_bwd_ptr = grad_backward.const_data_ptr<scalar_t>();
    scalar_t* grad_prev_ptr = grad_prev_link.mutable_data_ptr<scalar_t>();
    scalar_t* grad_write_ptr = grad_write.mutable_data_ptr<scalar_t>();
    scalar_t* grad_prec_ptr = grad_precedence.mutable_data_ptr<scalar_t>();
    scalar_t* grad_read_ptr = grad_read.mutable_data_ptr<scalar_t>();
    const FusedBackward<scalar_t> fused = fused_backward_for<scalar_t>(heads);
    at::parallel_for(0, batch, grain_for(n), [&](int64_t first, int64_t last) {
      // n zeros stand in for a missing dL_t, then 2 n scratch for the any-heads kernel.
      std::vector<scalar_t> buffer(3 * n, scalar_t(0));
      const scalar_t* zeros = buffer.data();
      for (int64_t b = first; b < last; ++b) {
        const scalar_t* prev_b = prev_ptr + b * n * n;
        const scalar_t* write_b = write_ptr + b * n;
        const scalar_t* prec_b = prec_ptr + b * n;
        const scalar_t* read_b = read_ptr + b * heads * n;
        const scalar_t* grad_new_b = has_grad_new ? grad_new_ptr + b * n * n : nullptr;
        const scalar_t* grad_fwd_b = grad_fwd_ptr + b * heads * n;
        const scalar_t* grad_bwd_b = grad_bwd_ptr + b * heads * n;
        scalar_t* grad_prev_b = grad_prev_ptr + b * n * n;
        scalar_t* grad_write_b = grad_write_ptr + b * n;
        scalar_t* grad_prec_b = grad_prec_ptr + b * n;
        scalar_t* grad_read_b = grad_read_ptr + b * heads * n;
        if (fused != nullptr) {
          fused(prev_b, write_b, prec_b, read_b, grad_new_b, grad_fwd_b, grad_bwd_b, grad_prev_b,
                grad_write_b, grad_prec_b, grad_read_b, zeros, n);
        } else {
          backward_one_any_heads<scalar_t>(prev_b, write_b, prec_b, read_b, grad_new_b,
                                           grad_fwd_b, grad_bwd_b, grad_prev_b, grad_write_b,
                                           grad_prec_b, grad_read_b, zeros, buffer.data() + n, n,
                                           heads);
        }
      }
    });
  });
  return {grad_prev_link, grad_write, grad_precedence, grad_read};
}

}  // namespace

TORCH_LIBRARY(torchmem_fused_link, m) {
  m.def("forward(Tensor link, Tensor write_weights, Tensor precedence, Tensor read_weights) "
        "-> (Tensor, Tensor, Tensor)",
        &link_forward);
  m.def("backward(Tensor link, Tensor write_weights, Tensor precedence, Tensor read_weights, "
        "Tensor? grad_new_link, Tensor grad_forward, Tensor grad_backward) "
        "-> (Tensor, Tensor, Tensor, Tensor)",
        &link_backward);
}
