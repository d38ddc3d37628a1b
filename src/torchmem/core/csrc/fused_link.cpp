// Fused CPU kernels for the DNC temporal link update and its directional reads.
//
// torchmem/core/fused_link.py compiles this file on first use of the "cpp" backend and calls
// torch.ops.torchmem_fused_link.link_step, a C++ autograd Function over the two kernels; the
// raw kernels (forward, backward) and the buffer pool's controls are registered beside it.
//
// Legend: B batch, R read heads, N memory slots. Per batch element
//   L_t[i, j] = (1 - w[i] - w[j]) L_{t-1}[i, j] + w[i] p[j]  (i != j),  L_t[i, i] = 0
//   f[h, i]   = sum_j L_t[i, j] r[h, j]      (f = L_t w^r_{t-1})
//   b[h, j]   = sum_i L_t[i, j] r[h, i]      (b = L_t^T w^r_{t-1})
// with w the write weights, p the previous precedence and r the previous read weights.
//
// The link matrices are the only large operands, so each kernel streams through them once:
// the forward reads L_{t-1} and writes L_t, the backward reads L_{t-1} and dL_t and writes
// dL_{t-1}, over dL_t when autograd holds the only reference to it (see "Autograd"). Every
// other operand (w, p, r, the accumulators) is a few vectors of length N that stay in L1.
// The N x N outputs come from a pool of blocks that stay paged in between steps.
//
// The parallel loop over the batch uses OpenMP through at::parallel_for when built with
// -fopenmp (and runs serially otherwise); the any-heads kernels' reductions need
// -fassociative-math to vectorise. The blocked kernels use GCC/Clang vector extensions.

#include <ATen/CachedTensorUtils.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/TensorSubclassLikeUtils.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros_like.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/accumulate.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/functions/basic_ops.h>
#include <torch/library.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <cmath>
#include <iterator>
#include <limits>
#include <mutex>
#include <numeric>
#include <string>
#include <new>
#include <optional>
#include <type_traits>
#include <tuple>
#include <unordered_map>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#endif

namespace {

// ------------------------------------------------------------------------------------------
// A pool for the N x N outputs (L_t forward, dL_{t-1} backward).
//
// A training step allocates one link per time step and frees them all in the backward, then
// does the same again. Blocks of several MB come from mmap and go back to the kernel on free
// (glibc's defaults), so every step would fault each page in afresh, which costs about as
// much as the kernels. The pool keeps freed blocks, keyed by size, and hands them out again
// already paged in. The tensors own their block through a DataPtr whose deleter returns it
// here, so they behave as ordinary CPU tensors (autograd, views, copies, torch.save, resize).
//
// A block is either on a free list or owned by exactly one DataPtr, whose deleter runs once.
// The free lists keep at most `limit_` bytes (TORCHMEM_LINK_POOL_MB, default 2048); a block
// returned beyond that evicts cached blocks of other sizes first, else it is freed. The pool
// object is never destroyed, so tensors that outlive static destruction still free safely.

constexpr size_t kMinPooledBytes = size_t(64) << 10;  // smaller outputs use at::empty
constexpr size_t kHugePage = size_t(2) << 20;
constexpr size_t kMappedBytes = kHugePage;  // blocks this large are mmapped on huge pages
constexpr size_t kCacheLine = 64;
constexpr int64_t kDefaultLimitMb = 2048;

size_t round_up(size_t value, size_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

struct Block {
  void* data;     // handed to the tensor, 64-byte (or 2 MB) aligned
  size_t bytes;   // usable size: the free-list key
  void* base;     // what to give back to the system
  size_t mapped;  // length of the mapping at `base`, 0 for the heap
};

// Key for a request: whole cache lines, or whole pages for mapped blocks, so that requests
// of nearly the same size share blocks.
size_t block_bytes(size_t request) {
  return request >= kMappedBytes ? round_up(request, 4096) : round_up(request, kCacheLine);
}

// nullptr when the system has no memory left.
Block* system_allocate(size_t bytes) {
#if defined(__unix__) || defined(__APPLE__)
  if (bytes >= kMappedBytes) {
    // Map a spare huge page so that the block can start on a 2 MB boundary, then cut off the
    // unaligned head and the tail.
    const size_t span = round_up(bytes, kHugePage);
    const size_t length = span + kHugePage;
    void* raw = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return nullptr;
    const auto start = reinterpret_cast<uintptr_t>(raw);
    const uintptr_t aligned = round_up(start, kHugePage);
    if (aligned > start) munmap(raw, aligned - start);
    const uintptr_t end = aligned + span;
    if (start + length > end) munmap(reinterpret_cast<void*>(end), start + length - end);
    void* data = reinterpret_cast<void*>(aligned);
#if defined(MADV_HUGEPAGE)
    // A hint, for the whole 2 MB pages of the block only (a huge page over the ragged end
    // would hold memory that no tensor uses): fewer faults and TLB misses where transparent
    // huge pages are set to "madvise".
    madvise(data, bytes / kHugePage * kHugePage, MADV_HUGEPAGE);
#endif
    Block* block = new (std::nothrow) Block{data, bytes, data, span};
    if (block == nullptr) munmap(data, span);
    return block;
  }
  void* data = nullptr;
  if (posix_memalign(&data, kCacheLine, bytes) != 0) return nullptr;
  Block* block = new (std::nothrow) Block{data, bytes, data, 0};
  if (block == nullptr) free(data);
  return block;
#else
  void* data = _aligned_malloc(bytes, kCacheLine);
  if (data == nullptr) return nullptr;
  Block* block = new (std::nothrow) Block{data, bytes, data, 0};
  if (block == nullptr) _aligned_free(data);
  return block;
#endif
}

void system_free(Block* block) noexcept {
#if defined(__unix__) || defined(__APPLE__)
  if (block->mapped != 0) {
    munmap(block->base, block->mapped);
  } else {
    free(block->base);
  }
#else
  _aligned_free(block->base);
#endif
  delete block;
}

int64_t limit_from_environment() {
  const char* text = std::getenv("TORCHMEM_LINK_POOL_MB");
  if (text == nullptr || *text == '\0') return kDefaultLimitMb << 20;
  char* end = nullptr;
  const long long megabytes = std::strtoll(text, &end, 10);
  if (end == text || *end != '\0' || megabytes < 0) {
    TORCH_WARN_ONCE("torchmem: ignoring TORCHMEM_LINK_POOL_MB=", text,
                    " (not a whole number of megabytes >= 0); using ", kDefaultLimitMb);
    return kDefaultLimitMb << 20;
  }
  return std::min<long long>(megabytes, (int64_t(1) << 43) >> 20) << 20;
}

class Pool {
 public:
  Pool() : limit_(static_cast<size_t>(limit_from_environment())) {}

  Block* acquire(size_t request) {
    const size_t bytes = block_bytes(request);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto found = free_.find(bytes);
      if (found != free_.end() && !found->second.empty()) {
        Block* block = found->second.back();
        found->second.pop_back();
        held_ -= bytes;
        note_in_use(bytes);
        ++hits_;
        return block;
      }
      ++misses_;
    }
    Block* block = system_allocate(bytes);
    if (block == nullptr) {  // give the cached blocks back to the system and try once more
      clear();
      block = system_allocate(bytes);
    }
    TORCH_CHECK(block != nullptr, "torchmem link pool: out of memory allocating ", bytes,
                " bytes");
    std::lock_guard<std::mutex> lock(mutex_);
    note_in_use(bytes);
    return block;
  }

  void release(Block* block) noexcept {
    std::vector<Block*> to_free;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      in_use_ -= block->bytes;
      --in_use_blocks_;
      if (block->bytes <= limit_) {
        evict_locked(limit_ - block->bytes, block->bytes, to_free);
        if (held_ + block->bytes <= limit_) {
          try {
            free_[block->bytes].push_back(block);
            held_ += block->bytes;
            block = nullptr;
          } catch (...) {  // no memory for the list entry: free the block instead
          }
        }
      }
      if (block != nullptr) {
        to_free.push_back(block);
        ++dropped_;
      }
    }
    for (Block* b : to_free) system_free(b);  // outside the lock: munmap can take a while
  }

  // Frees every cached block; blocks owned by live tensors are untouched.
  int64_t clear() noexcept {
    std::vector<Block*> to_free;
    int64_t bytes = 0;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto& entry : free_) {
        to_free.insert(to_free.end(), entry.second.begin(), entry.second.end());
      }
      free_.clear();
      bytes = static_cast<int64_t>(held_);
      held_ = 0;
    }
    for (Block* b : to_free) system_free(b);
    return bytes;
  }

  int64_t set_limit(int64_t limit) {
    TORCH_CHECK(limit >= 0, "the link pool limit must be >= 0 bytes, got ", limit);
    std::vector<Block*> to_free;
    int64_t previous = 0;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      previous = static_cast<int64_t>(limit_);
      limit_ = static_cast<size_t>(limit);
      evict_locked(limit_, 0, to_free);
    }
    for (Block* b : to_free) system_free(b);
    return previous;
  }

  std::vector<int64_t> stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    int64_t held_blocks = 0;
    for (const auto& entry : free_) held_blocks += static_cast<int64_t>(entry.second.size());
    return {static_cast<int64_t>(held_), held_blocks, static_cast<int64_t>(in_use_),
            in_use_blocks_, hits_, misses_, dropped_, static_cast<int64_t>(limit_)};
  }

 private:
  void note_in_use(size_t bytes) {
    in_use_ += bytes;
    ++in_use_blocks_;
  }

  // Moves cached blocks into `to_free` until at most `target` bytes are held, never taking
  // blocks of `keep` bytes (0 takes any size).
  void evict_locked(size_t target, size_t keep, std::vector<Block*>& to_free) {
    for (auto entry = free_.begin(); entry != free_.end() && held_ > target;) {
      auto& blocks = entry->second;
      while (entry->first != keep && !blocks.empty() && held_ > target) {
        to_free.push_back(blocks.back());
        held_ -= blocks.back()->bytes;
        blocks.pop_back();
        ++dropped_;
      }
      entry = blocks.empty() ? free_.erase(entry) : std::next(entry);
    }
  }

  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<Block*>> free_;
  size_t limit_;
  size_t held_ = 0;
  size_t in_use_ = 0;
  int64_t in_use_blocks_ = 0;
  int64_t hits_ = 0;
  int64_t misses_ = 0;
  int64_t dropped_ = 0;
};

Pool& pool() {
  static Pool* const instance = new Pool();  // deliberately never destroyed
  return *instance;
}

void release_block(void* context) { pool().release(static_cast<Block*>(context)); }

// An uninitialised contiguous tensor, from the pool when it is large.
at::Tensor pooled_empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
  const size_t bytes = static_cast<size_t>(c10::multiply_integers(sizes)) *
                       c10::elementSize(c10::typeMetaToScalarType(options.dtype()));
  if (bytes < kMinPooledBytes) return at::empty(sizes, options);
  Block* block = pool().acquire(bytes);
  try {
    return at::for_blob(block->data, sizes)
        .context(block, &release_block)
        .options(options)
        .target_device(at::Device(at::kCPU))
        .allocator(c10::GetCPUAllocator())  // for resize_, which reallocates like any tensor
        .resizeable_storage()
        .make_tensor();
  } catch (...) {
    release_block(block);
    throw;
  }
}

// Whether `tensor` lives in a pool block (for tests).
bool is_pooled(const at::Tensor& tensor) {
  return tensor.defined() && tensor.has_storage() &&
         tensor.storage().data_ptr().get_deleter() == &release_block;
}

// ------------------------------------------------------------------------------------------
// Kernels.
//
// The forward and backward work on blocks of kRows consecutive rows at once: every vector of
// w, p, r (and of the column accumulators b, dw, dp, dr) that a block loads serves kRows rows,
// which halves the loads and stores per element of L against going row by row. The column
// loop runs in whole SIMD vectors (GCC/Clang vector extensions: 64 bytes with AVX-512, 32
// with AVX, else 16), split so that only the one or two vectors holding a diagonal element
// of the block pay for the select that zeroes it; the ragged end of a row runs scalar.
// Software prefetches fetch the next block while this one is computed: with rows of a few
// hundred elements the rows of a block share one 4 KB page, and the hardware prefetcher, which
// follows one stream per page, falls behind (measured without them: 1.5 to 2 times slower).

#if !defined(__GNUC__)
#error "the torchmem link kernels need GCC or Clang vector extensions"
#endif

#if defined(__AVX512F__)
constexpr int kVectorBytes = 64;
#elif defined(__AVX__)
constexpr int kVectorBytes = 32;
#else
constexpr int kVectorBytes = 16;
#endif

#define TORCHMEM_INLINE __attribute__((always_inline))

constexpr int kRows = 2;  // rows per block (4 measured no faster, and needs more registers)

template <typename T>
struct LaneIndexOf;
template <>
struct LaneIndexOf<float> {
  using type = int32_t;
};
template <>
struct LaneIndexOf<double> {
  using type = int64_t;
};

template <typename T>
struct Simd {
  typedef T V __attribute__((vector_size(kVectorBytes)));
  using Index = typename LaneIndexOf<T>::type;
  typedef Index I __attribute__((vector_size(kVectorBytes)));
  static constexpr int64_t kLanes = kVectorBytes / static_cast<int64_t>(sizeof(T));

  static inline V load(const T* p) {
    V v;
    std::memcpy(&v, p, sizeof(V));
    return v;
  }
  static inline void store(T* p, V v) { std::memcpy(p, &v, sizeof(V)); }
  static inline T sum(V v) {
    T total = T(0);
    for (int64_t k = 0; k < kLanes; ++k) total += v[k];
    return total;
  }
  static inline I lane_index() {
    I index;
    for (int64_t k = 0; k < kLanes; ++k) index[k] = static_cast<Index>(k);
    return index;
  }
};

// Runs the column loop of the block of `rows` rows starting at row `first`: `whole(j)` for
// vectors without a diagonal element of the block, `diagonal(j)` for the vectors with one,
// `scalar(j)` for the columns after the last whole vector.
template <int64_t kLanes, int rows, typename Whole, typename Diagonal, typename Scalar>
TORCHMEM_INLINE inline void sweep_columns(int64_t n, int64_t first, Whole whole,
                                          Diagonal diagonal, Scalar scalar) {
  const int64_t vector_end = n - n % kLanes;
  const int64_t lo = std::min(vector_end, first / kLanes * kLanes);
  const int64_t hi =
      std::max(lo, std::min(vector_end, (first + rows + kLanes - 1) / kLanes * kLanes));
  int64_t j = 0;
  for (; j < lo; j += kLanes) whole(j);
  for (; j < hi; j += kLanes) diagonal(j);
  for (; j < vector_end; j += kLanes) whole(j);
  for (; j < n; ++j) scalar(j);
}

// How far ahead to prefetch, in bytes: the next block, but at least 2 KB.
template <typename T>
uintptr_t prefetch_distance(int64_t n, int rows) {
  return static_cast<uintptr_t>(std::max<int64_t>(rows * n * sizeof(T), 2048));
}

// Prefetches `bytes` past `p` + j. The address may lie past the end of the buffer (the last
// blocks, or the row of zeros standing in for a missing dL_t): prefetches never fault, and
// the address is computed in integers so that no out-of-range pointer is formed.
template <int write_intent, typename T>
TORCHMEM_INLINE inline void prefetch(const T* p, int64_t j, uintptr_t bytes) {
  __builtin_prefetch(
      reinterpret_cast<const void*>(reinterpret_cast<uintptr_t>(p + j) + bytes), write_intent,
      3);
}

// Forward for rows [first, first + rows) of one batch element, `heads` read heads.
// `backward_read` accumulates over blocks (zeroed by the caller).
template <typename T, int rows, int heads>
void forward_block(const T* __restrict__ prev_link, const T* __restrict__ write,
                   const T* __restrict__ precedence, const T* __restrict__ read,
                   T* __restrict__ new_link, T* __restrict__ forward_read,
                   T* __restrict__ backward_read, int64_t n, int64_t first) {
  using S = Simd<T>;
  using V = typename S::V;
  using Index = typename S::Index;
  const uintptr_t ahead = prefetch_distance<T>(n, rows);
  const T* prev_row[rows];
  T* row[rows];
  T w_i[rows], keep_i[rows], r_i[rows][heads], f_tail[rows][heads];
  V f_acc[rows][heads];
  for (int k = 0; k < rows; ++k) {
    const int64_t i = first + k;
    prev_row[k] = prev_link + i * n;
    row[k] = new_link + i * n;
    w_i[k] = write[i];
    keep_i[k] = T(1) - w_i[k];
    for (int h = 0; h < heads; ++h) {
      r_i[k][h] = read[h * n + i];
      f_tail[k][h] = T(0);
      f_acc[k][h] = V{};
    }
  }
  const auto lanes = S::lane_index();
  // L_t[i, j] for the block's rows and one vector of columns; f[h, i] += L_t[i, j] r[h, j],
  // b[h, j] += L_t[i, j] r[h, i].
  auto columns = [&](int64_t j, auto has_diagonal) TORCHMEM_INLINE {
    const V w = S::load(write + j);
    const V p = S::load(precedence + j);
    V r[heads], b[heads];
    for (int h = 0; h < heads; ++h) {
      r[h] = S::load(read + h * n + j);
      b[h] = S::load(backward_read + h * n + j);
    }
    for (int k = 0; k < rows; ++k) {
      prefetch<0>(prev_row[k], j, ahead);
      prefetch<1>(row[k], j, ahead);
      V value = (keep_i[k] - w) * S::load(prev_row[k] + j) + w_i[k] * p;
      if constexpr (decltype(has_diagonal)::value) {
        value = lanes == static_cast<Index>(first + k - j) ? V{} : value;
      }
      S::store(row[k] + j, value);
      for (int h = 0; h < heads; ++h) {
        f_acc[k][h] += value * r[h];
        b[h] += r_i[k][h] * value;
      }
    }
    for (int h = 0; h < heads; ++h) S::store(backward_read + h * n + j, b[h]);
  };
  sweep_columns<S::kLanes, rows>(
      n, first, [&](int64_t j) TORCHMEM_INLINE { columns(j, std::false_type{}); },
      [&](int64_t j) TORCHMEM_INLINE { columns(j, std::true_type{}); },
      [&](int64_t j) TORCHMEM_INLINE {
        for (int k = 0; k < rows; ++k) {
          T value = (keep_i[k] - write[j]) * prev_row[k][j] + w_i[k] * precedence[j];
          value = j == first + k ? T(0) : value;
          row[k][j] = value;
          for (int h = 0; h < heads; ++h) {
            f_tail[k][h] += value * read[h * n + j];
            backward_read[h * n + j] += r_i[k][h] * value;
          }
        }
      });
  for (int k = 0; k < rows; ++k) {
    for (int h = 0; h < heads; ++h) {
      forward_read[h * n + first + k] = S::sum(f_acc[k][h]) + f_tail[k][h];
    }
  }
}

// One batch element of the forward pass. `backward_read` must arrive zeroed.
template <typename T, int heads>
void forward_one(const T* prev_link, const T* write, const T* precedence, const T* read,
                 T* new_link, T* forward_read, T* backward_read, int64_t n) {
  int64_t i = 0;
  for (; i + kRows <= n; i += kRows) {
    forward_block<T, kRows, heads>(prev_link, write, precedence, read, new_link, forward_read,
                                   backward_read, n, i);
  }
  for (; i < n; ++i) {
    forward_block<T, 1, heads>(prev_link, write, precedence, read, new_link, forward_read,
                               backward_read, n, i);
  }
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

// Forward for more than four heads, row by row with auto-vectorised loops.
template <typename T>
void forward_one_any_heads(const T* __restrict__ prev_link, const T* __restrict__ write,
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
//
// dL_{t-1} may be written over dL_t (`grad_prev_link == grad_new_link`): each element of dL_t
// is read before the same element of dL_{t-1} is written and never after, so those two
// pointers are not __restrict__.
template <typename T, int rows, int heads>
void backward_block(const T* __restrict__ prev_link, const T* __restrict__ write,
                    const T* __restrict__ precedence, const T* __restrict__ read,
                    const T* grad_new_link, const T* __restrict__ grad_forward,
                    const T* __restrict__ grad_backward, T* grad_prev_link,
                    T* __restrict__ grad_write, T* __restrict__ grad_precedence,
                    T* __restrict__ grad_read, const T* __restrict__ zeros, int64_t n,
                    int64_t first) {
  using S = Simd<T>;
  using V = typename S::V;
  using Index = typename S::Index;
  const uintptr_t ahead = prefetch_distance<T>(n, rows);
  const T* prev_row[rows];
  const T* grad_new_row[rows];
  T* grad_prev_row[rows];
  T w_i[rows], keep_i[rows], df_i[rows][heads], r_i[rows][heads];
  T dw_tail[rows], dr_tail[rows][heads];
  V dw_acc[rows], dr_acc[rows][heads];
  for (int k = 0; k < rows; ++k) {
    const int64_t i = first + k;
    prev_row[k] = prev_link + i * n;
    grad_new_row[k] = grad_new_link != nullptr ? grad_new_link + i * n : zeros;
    grad_prev_row[k] = grad_prev_link + i * n;
    w_i[k] = write[i];
    keep_i[k] = T(1) - w_i[k];
    dw_tail[k] = T(0);
    dw_acc[k] = V{};
    for (int h = 0; h < heads; ++h) {
      df_i[k][h] = grad_forward[h * n + i];
      r_i[k][h] = read[h * n + i];
      dr_tail[k][h] = T(0);
      dr_acc[k][h] = V{};
    }
  }
  const auto lanes = S::lane_index();
  auto columns = [&](int64_t j, auto has_diagonal) TORCHMEM_INLINE {
    const V w = S::load(write + j);
    const V p = S::load(precedence + j);
    V dw_col = S::load(grad_write + j);
    V dp_col = S::load(grad_precedence + j);
    V r[heads], db[heads], dr_col[heads];
    for (int h = 0; h < heads; ++h) {
      r[h] = S::load(read + h * n + j);
      db[h] = S::load(grad_backward + h * n + j);
      dr_col[h] = S::load(grad_read + h * n + j);
    }
    for (int k = 0; k < rows; ++k) {
      prefetch<0>(prev_row[k], j, ahead);
      prefetch<0>(grad_new_row[k], j, ahead);
      prefetch<1>(grad_prev_row[k], j, ahead);
      const V old = S::load(prev_row[k] + j);
      const V decay = keep_i[k] - w;
      V g = S::load(grad_new_row[k] + j);
      for (int h = 0; h < heads; ++h) g += df_i[k][h] * r[h] + r_i[k][h] * db[h];
      V value = decay * old + w_i[k] * p;  // L_t[i, j]
      if constexpr (decltype(has_diagonal)::value) {
        const auto on_diagonal = lanes == static_cast<Index>(first + k - j);
        g = on_diagonal ? V{} : g;
        value = on_diagonal ? V{} : value;
      }
      S::store(grad_prev_row[k] + j, g * decay);
      dw_acc[k] += g * (p - old);
      dw_col -= g * old;
      dp_col += g * w_i[k];
      for (int h = 0; h < heads; ++h) {
        dr_col[h] += df_i[k][h] * value;
        dr_acc[k][h] += value * db[h];
      }
    }
    S::store(grad_write + j, dw_col);
    S::store(grad_precedence + j, dp_col);
    for (int h = 0; h < heads; ++h) S::store(grad_read + h * n + j, dr_col[h]);
  };
  sweep_columns<S::kLanes, rows>(
      n, first, [&](int64_t j) TORCHMEM_INLINE { columns(j, std::false_type{}); },
      [&](int64_t j) TORCHMEM_INLINE { columns(j, std::true_type{}); },
      [&](int64_t j) TORCHMEM_INLINE {
        for (int k = 0; k < rows; ++k) {
          const T old = prev_row[k][j];
          const T decay = keep_i[k] - write[j];
          T g = grad_new_row[k][j];
          for (int h = 0; h < heads; ++h) {
            g += df_i[k][h] * read[h * n + j] + r_i[k][h] * grad_backward[h * n + j];
          }
          T value = decay * old + w_i[k] * precedence[j];
          g = j == first + k ? T(0) : g;
          value = j == first + k ? T(0) : value;
          grad_prev_row[k][j] = g * decay;
          dw_tail[k] += g * (precedence[j] - old);
          grad_write[j] -= g * old;
          grad_precedence[j] += g * w_i[k];
          for (int h = 0; h < heads; ++h) {
            grad_read[h * n + j] += df_i[k][h] * value;
            dr_tail[k][h] += value * grad_backward[h * n + j];
          }
        }
      });
  for (int k = 0; k < rows; ++k) {
    grad_write[first + k] += S::sum(dw_acc[k]) + dw_tail[k];
    for (int h = 0; h < heads; ++h) {
      grad_read[h * n + first + k] += S::sum(dr_acc[k][h]) + dr_tail[k][h];
    }
  }
}

template <typename T, int heads>
void backward_one(const T* prev_link, const T* write, const T* precedence, const T* read,
                  const T* grad_new_link, const T* grad_forward, const T* grad_backward,
                  T* grad_prev_link, T* grad_write, T* grad_precedence, T* grad_read,
                  const T* zeros, int64_t n) {
  int64_t i = 0;
  for (; i + kRows <= n; i += kRows) {
    backward_block<T, kRows, heads>(prev_link, write, precedence, read, grad_new_link,
                                    grad_forward, grad_backward, grad_prev_link, grad_write,
                                    grad_precedence, grad_read, zeros, n, i);
  }
  for (; i < n; ++i) {
    backward_block<T, 1, heads>(prev_link, write, precedence, read, grad_new_link, grad_forward,
                                grad_backward, grad_prev_link, grad_write, grad_precedence,
                                grad_read, zeros, n, i);
  }
}

// Backward for more than four heads: the same sums in several short loops over L1-resident
// rows. `scratch` holds 2 n elements. Row i of dL_t is copied to scratch before row i of
// dL_{t-1} is written, so the two may be one buffer.
template <typename T>
void backward_one_any_heads(const T* __restrict__ prev_link, const T* __restrict__ write,
                            const T* __restrict__ precedence, const T* __restrict__ read,
                            const T* grad_new_link, const T* __restrict__ grad_forward,
                            const T* __restrict__ grad_backward, T* grad_prev_link,
                            T* __restrict__ grad_write, T* __restrict__ grad_precedence,
                            T* __restrict__ grad_read, const T* __restrict__ zeros,
                            T* __restrict__ scratch, int64_t n, int64_t heads) {
  T* __restrict__ g = scratch;            // row i of G
  T* __restrict__ new_row = scratch + n;  // row i of L_t
  for (int64_t i = 0; i < n; ++i) {
    const T* grad_new_row = grad_new_link != nullptr ? grad_new_link + i * n : zeros;
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
using ForwardKernel = void (*)(const T*, const T*, const T*, const T*, T*, T*, T*, int64_t);
template <typename T>
using BackwardKernel = void (*)(const T*, const T*, const T*, const T*, const T*, const T*,
                                const T*, T*, T*, T*, T*, const T*, int64_t);

// The blocked kernels for 1 to 4 heads, or null where only the any-heads ones apply.
template <typename T>
ForwardKernel<T> forward_kernel_for(int64_t heads) {
  switch (heads) {
    case 1: return &forward_one<T, 1>;
    case 2: return &forward_one<T, 2>;
    case 3: return &forward_one<T, 3>;
    case 4: return &forward_one<T, 4>;
    default: return nullptr;
  }
}

template <typename T>
BackwardKernel<T> backward_kernel_for(int64_t heads) {
  switch (heads) {
    case 1: return &backward_one<T, 1>;
    case 2: return &backward_one<T, 2>;
    case 3: return &backward_one<T, 3>;
    case 4: return &backward_one<T, 4>;
    default: return nullptr;
  }
}

// ------------------------------------------------------------------------------------------
// Operators.

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
    TORCH_CHECK(t->device().is_cpu() && t->layout() == at::kStrided,
                "the cpp link kernel runs on dense CPU tensors only");
    TORCH_CHECK(t->scalar_type() == prev_link.scalar_type(),
                "all inputs must share one dtype, got ", prev_link.scalar_type(), " and ",
                t->scalar_type());
    TORCH_CHECK(t->is_contiguous() && !t->is_neg(),
                "the cpp link kernel needs contiguous inputs");
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
  at::Tensor new_link = pooled_empty(prev_link.sizes(), prev_link.options());
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
    const ForwardKernel<scalar_t> blocked = forward_kernel_for<scalar_t>(heads);
    at::parallel_for(0, batch, grain_for(n), [&](int64_t first, int64_t last) {
      for (int64_t b = first; b < last; ++b) {
        const scalar_t* prev_b = prev_ptr + b * n * n;
        const scalar_t* write_b = write_ptr + b * n;
        const scalar_t* prec_b = prec_ptr + b * n;
        const scalar_t* read_b = read_ptr + b * heads * n;
        if (blocked != nullptr) {
          blocked(prev_b, write_b, prec_b, read_b, new_ptr + b * n * n, fwd_ptr + b * heads * n,
                  bwd_ptr + b * heads * n, n);
        } else {
          forward_one_any_heads<scalar_t>(prev_b, write_b, prec_b, read_b, new_ptr + b * n * n,
                                          fwd_ptr + b * heads * n, bwd_ptr + b * heads * n, n,
                                          heads);
        }
      }
    });
  });
  return {new_link, forward_read, backward_read};
}

// (dL_{t-1}, dw, dp, dr). dL_{t-1} is written over `grad_new_link` (and returned as it) when
// `overwrite_grad`, else into a fresh pooled tensor.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> link_backward_into(
    const at::Tensor& prev_link, const at::Tensor& write, const at::Tensor& precedence,
    const at::Tensor& read, const at::Tensor& grad_new_link, const at::Tensor& grad_forward,
    const at::Tensor& grad_backward, bool overwrite_grad) {
  check_inputs(prev_link, write, precedence, read);
  const bool has_grad_new = grad_new_link.defined();
  if (has_grad_new) {
    TORCH_CHECK(grad_new_link.sizes() == prev_link.sizes() && grad_new_link.is_contiguous() &&
                    grad_new_link.scalar_type() == prev_link.scalar_type() &&
                    grad_new_link.device().is_cpu() && !grad_new_link.is_neg(),
                "grad of the new link must be contiguous with the link's shape and dtype");
  }
  for (const at::Tensor* t : {&grad_forward, &grad_backward}) {
    TORCH_CHECK(t->sizes() == read.sizes() && t->is_contiguous() &&
                    t->scalar_type() == read.scalar_type() && t->device().is_cpu() &&
                    !t->is_neg(),
                "grads of the directional weights must be contiguous (B, R, N) tensors");
  }
  TORCH_CHECK(!overwrite_grad || has_grad_new, "nothing to overwrite");
  const int64_t batch = prev_link.size(0);
  const int64_t n = prev_link.size(1);
  const int64_t heads = read.size(1);
  at::Tensor grad_prev_link =
      overwrite_grad ? grad_new_link : pooled_empty(prev_link.sizes(), prev_link.options());
  at::Tensor grad_write = at::zeros_like(write);
  at::Tensor grad_precedence = at::zeros_like(precedence);
  at::Tensor grad_read = at::zeros_like(read);
  AT_DISPATCH_FLOATING_TYPES(prev_link.scalar_type(), "torchmem_link_backward", [&] {
    const scalar_t* prev_ptr = prev_link.const_data_ptr<scalar_t>();
    const scalar_t* write_ptr = write.const_data_ptr<scalar_t>();
    const scalar_t* prec_ptr = precedence.const_data_ptr<scalar_t>();
    const scalar_t* read_ptr = read.const_data_ptr<scalar_t>();
    // With overwrite_grad both point at one buffer; the kernels allow that (see above).
    const scalar_t* grad_new_ptr = has_grad_new ? grad_new_link.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* grad_fwd_ptr = grad_forward.const_data_ptr<scalar_t>();
    const scalar_t* grad_bwd_ptr = grad_backward.const_data_ptr<scalar_t>();
    scalar_t* grad_prev_ptr = grad_prev_link.mutable_data_ptr<scalar_t>();
    scalar_t* grad_write_ptr = grad_write.mutable_data_ptr<scalar_t>();
    scalar_t* grad_prec_ptr = grad_precedence.mutable_data_ptr<scalar_t>();
    scalar_t* grad_read_ptr = grad_read.mutable_data_ptr<scalar_t>();
    const BackwardKernel<scalar_t> blocked = backward_kernel_for<scalar_t>(heads);
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
        if (blocked != nullptr) {
          blocked(prev_b, write_b, prec_b, read_b, grad_new_b, grad_fwd_b, grad_bwd_b,
                  grad_prev_b, grad_write_b, grad_prec_b, grad_read_b, zeros, n);
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

// The raw backward operator: never overwrites its arguments.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> link_backward(
    const at::Tensor& prev_link, const at::Tensor& write, const at::Tensor& precedence,
    const at::Tensor& read, const std::optional<at::Tensor>& grad_new_link,
    const at::Tensor& grad_forward, const at::Tensor& grad_backward) {
  return link_backward_into(prev_link, write, precedence, read,
                            grad_new_link.has_value() ? *grad_new_link : at::Tensor(),
                            grad_forward, grad_backward, /*overwrite_grad=*/false);
}

// ------------------------------------------------------------------------------------------
// Autograd.
//
// link_step is a C++ autograd Function, so that its backward receives the incoming gradients
// the way autograd's own nodes do: moved out of the engine's buffers, not copied into Python
// objects. That makes the reference counts meaningful. When dL_t is a block of our pool that
// nothing else references (the usual case in an unrolled DNC: it is the dL_{t-1} that the
// next step's backward just returned), dL_{t-1} is written over it, saving one N x N buffer
// and its write-allocate traffic per step. The test is the one autograd applies before it
// accumulates gradients in place into a buffer (InputBuffer, can_accumulate_inplace): a single
// reference to the tensor and a single reference to its storage. A gradient that a hook kept,
// that torch.autograd.grad captured, or that has views or a Python storage object fails it.
// Gradients from anywhere but this pool (a user's grad_tensors, say) are never overwritten.

bool may_overwrite(const at::Tensor& grad, const at::Tensor& like) {
  return grad.defined() && grad.has_storage() &&
         grad.storage().data_ptr().get_deleter() == &release_block &&
         at::caching::adjusted_use_count(grad) == 1 && grad.storage().use_count() == 1 &&
         !grad.requires_grad() && !grad.is_inference() && !grad.is_neg() &&
         grad.layout() == at::kStrided && grad.device().is_cpu() &&
         grad.scalar_type() == like.scalar_type() && grad.sizes() == like.sizes() &&
         grad.is_contiguous() && !at::isTensorSubclassLike(grad);
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// As Python's @once_differentiable, for a backward that ran with grad mode on: the gradients
// are correct, and differentiating them again raises instead of silently missing the
// second-order terms of `what`.
variable_list differentiable_once(variable_list result, const std::string& what) {
  variable_list fakes;
  for (const at::Tensor& g : result) {
    fakes.push_back(g.defined() ? g.detach().requires_grad_(true) : at::Tensor());
  }
  auto error = std::make_shared<torch::autograd::DelayedError>(
      "trying to differentiate twice " + what +
          ", which is differentiable once; use the reference backends for higher-order "
          "gradients",
      static_cast<int64_t>(fakes.size()));
  return error->apply(std::move(fakes));
}

struct LinkStep : public torch::autograd::Function<LinkStep> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& link,
                               const at::Tensor& write, const at::Tensor& precedence,
                               const at::Tensor& read) {
    ctx->set_materialize_grads(false);
    const at::Tensor link_c = link.contiguous().resolve_neg();
    const at::Tensor write_c = write.contiguous().resolve_neg();
    const at::Tensor precedence_c = precedence.contiguous().resolve_neg();
    const at::Tensor read_c = read.contiguous().resolve_neg();
    auto [new_link, forward_read, backward_read] =
        link_forward(link_c, write_c, precedence_c, read_c);
    // L_t is recomputed in the backward from L_{t-1}, which costs less than reading it.
    ctx->save_for_backward({link_c, write_c, precedence_c, read_c});
    return {new_link, forward_read, backward_read};
  }

  // `grads` by reference: CppNode passes its own list, which holds the only references the
  // engine gave up (a by-value parameter would copy them and defeat may_overwrite).
  static variable_list backward(AutogradContext* ctx, variable_list& grads) {
    const bool any_grad = grads[0].defined() || grads[1].defined() || grads[2].defined();
    if (!any_grad) return {at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor& link = saved[0];
    const at::Tensor& read = saved[3];
    // create_graph=True: the gradient may be differentiated again, also where no incoming
    // gradient requires grad (it can meet others that do), so it must raise, not act constant.
    const bool differentiable = at::GradMode::is_enabled();
    // Decided before anything else takes a reference to grads[0].
    const bool overwrite = !differentiable && may_overwrite(grads[0], link);
    at::Tensor grad_forward, grad_backward;
    at::Tensor grad_prev_link, grad_write, grad_precedence, grad_read;
    {
      at::AutoGradMode no_grad(false);
      grad_forward = grads[1].defined() ? grads[1].contiguous().resolve_neg() : at::zeros_like(read);
      grad_backward = grads[2].defined() ? grads[2].contiguous().resolve_neg() : at::zeros_like(read);
      at::Tensor grad_new_link;
      if (grads[0].defined()) {
        grad_new_link = overwrite ? grads[0] : grads[0].contiguous().resolve_neg();
      }
      std::tie(grad_prev_link, grad_write, grad_precedence, grad_read) = link_backward_into(
          link, saved[1], saved[2], read, grad_new_link, grad_forward, grad_backward, overwrite);
    }
    variable_list result = {ctx->needs_input_grad(0) ? grad_prev_link : at::Tensor(),
                            ctx->needs_input_grad(1) ? grad_write : at::Tensor(),
                            ctx->needs_input_grad(2) ? grad_precedence : at::Tensor(),
                            ctx->needs_input_grad(3) ? grad_read : at::Tensor()};
    if (!differentiable) return result;
    return differentiable_once(std::move(result), "the fused link step (cpp backend)");
  }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor> link_step(const at::Tensor& link,
                                                         const at::Tensor& write,
                                                         const at::Tensor& precedence,
                                                         const at::Tensor& read) {
  variable_list out = LinkStep::apply(link, write, precedence, read);
  return {out[0], out[1], out[2]};
}

#include "dnc_step.h"
#include "lstm_cell.h"

}  // namespace

TORCH_LIBRARY(torchmem_fused_link, m) {
  // Differentiable once, through LinkStep.
  m.def("link_step(Tensor link, Tensor write_weights, Tensor precedence, Tensor read_weights) "
        "-> (Tensor, Tensor, Tensor)");
  // The raw kernels, without autograd.
  m.def("forward(Tensor link, Tensor write_weights, Tensor precedence, Tensor read_weights) "
        "-> (Tensor, Tensor, Tensor)",
        &link_forward);
  m.def("backward(Tensor link, Tensor write_weights, Tensor precedence, Tensor read_weights, "
        "Tensor? grad_new_link, Tensor grad_forward, Tensor grad_backward) "
        "-> (Tensor, Tensor, Tensor, Tensor)",
        &link_backward);
  // The pool: [held_bytes, held_blocks, in_use_bytes, in_use_blocks, hits, misses, dropped,
  // limit_bytes]; clear_pool returns the bytes it freed; set_pool_limit the previous limit.
  m.def("pool_stats() -> int[]", [] { return pool().stats(); });
  m.def("clear_pool() -> int", [] { return pool().clear(); });
  m.def("set_pool_limit(int limit_bytes) -> int",
        [](int64_t limit) { return pool().set_limit(limit); });
  m.def("is_pooled(Tensor tensor) -> bool", &is_pooled);
  // The whole DNC memory step (dnc_step.h), differentiable once through DncStep.
  m.def("dnc_step(Tensor interface, Tensor memory, Tensor usage, Tensor link, "
        "Tensor precedence, Tensor write_weights, Tensor read_weights) -> Tensor[]");
  // One nn.LSTMCell step (lstm_cell.h), differentiable once through LstmCell: -> (h_t, c_t).
  m.def("lstm_cell(Tensor input, Tensor hidden, Tensor cell, Tensor weight_ih, "
        "Tensor weight_hh, Tensor bias_ih, Tensor bias_hh) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(torchmem_fused_link, CompositeImplicitAutograd, m) {
  m.impl("link_step", &link_step);
  m.impl("dnc_step", &dnc_step);
  m.impl("lstm_cell", &lstm_cell);
}
