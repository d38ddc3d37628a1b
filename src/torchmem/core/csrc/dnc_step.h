// The whole DNC memory step as one CPU operator with a hand-written backward.
//
// Included by fused_link.cpp inside its anonymous namespace, after the link kernels and the
// buffer pool, which it uses; not a standalone header.
//
// Why: at the benchmark's sizes a DNC memory step is a few hundred small tensor operations
// (forward and backward), each costing the dispatcher and autograd a few microseconds while
// doing almost no arithmetic, plus the N x N link update. This operator does the interface
// squashing, usage, allocation, write, link, precedence and reads of one time step for one
// batch element in one pass of plain loops, and the same in reverse for the gradient.
//
// Legend: B batch, N slots, W slot width, R read heads, I interface size (R W + 3 W + 5 R + 3).
// Per batch element, with xi the raw interface vector split as in DNCMemory.sizes:
//   beta^r = oneplus(.), beta^w = oneplus(.), e = sigmoid(.), f = sigmoid(.),
//   g^a = sigmoid(.), g^w = sigmoid(.), pi^h = softmax over 3 (backward, content, forward)
//   psi[n]    = prod_h (1 - f[h] w^r_{t-1}[h, n])                           retention
//   u[n]      = (u_{t-1}[n] + w^w_{t-1}[n] - u_{t-1}[n] w^w_{t-1}[n]) psi[n]  usage
//   a         = allocation(eps + (1 - eps) u)                               free list
//   c^w       = softmax(beta^w cos(k^w, M_{t-1}))                           write content
//   w^w[n]    = g^w (g^a a[n] + (1 - g^a) c^w[n])                           write weights
//   M[n, :]   = M_{t-1}[n, :] + w^w[n] (v - M_{t-1}[n, :] o e)              erase and add
//   L, f, b   = the fused link step (fused_link.cpp's kernels)              temporal link
//   p         = (1 - sum_n w^w[n]) p_{t-1} + w^w                            precedence
//   c^r[h]    = softmax(beta^r[h] cos(k^r[h], M))                           read content
//   w^r[h]    = pi^h[0] b[h] + pi^h[1] c^r[h] + pi^h[2] f[h]                read modes
//   r[h, :]   = sum_n w^r[h, n] M[n, :]                                     read vectors
// cos(k, M[n]) = k . M[n] / (sqrt(|k|^2 + eps^2) sqrt(|M[n]|^2 + eps^2)), as in addressing.py.
// The Python composition in memories/dnc_memory.py is the reference; tests compare the two.

constexpr double kNormEps = 1e-6;   // addressing.EPS
constexpr double kUsageEps = 1e-6;  // allocation.EPS
constexpr double kSoftplusThreshold = 20.0;  // torch.nn.functional.softplus's default

// Offsets of the interface parts (DNCMemory.sizes order) and of the saved intermediates.
struct DncLayout {
  int64_t n, width, heads;
  // interface
  int64_t read_keys, read_strengths, write_key, write_strength, erase, write_vector,
      free_gates, allocation_gate, write_gate, read_modes, interface;
  // saved per batch element for the backward ("aux")
  int64_t write_weights, allocation, write_content, write_cos, prev_norms, sorted,
      free_before, norms, read_content, read_cos, forward, backward, read_weights, aux;

  DncLayout(int64_t n_, int64_t width_, int64_t heads_) : n(n_), width(width_), heads(heads_) {
    int64_t at = 0;
    auto take = [&at](int64_t size) {
      const int64_t start = at;
      at += size;
      return start;
    };
    read_keys = take(heads * width);
    read_strengths = take(heads);
    write_key = take(width);
    write_strength = take(1);
    erase = take(width);
    write_vector = take(width);
    free_gates = take(heads);
    allocation_gate = take(1);
    write_gate = take(1);
    read_modes = take(3 * heads);
    interface = at;
    at = 0;
    write_weights = take(n);
    allocation = take(n);
    write_content = take(n);
    write_cos = take(n);
    prev_norms = take(n);
    sorted = take(n);
    free_before = take(n);
    norms = take(n);
    read_content = take(heads * n);
    read_cos = take(heads * n);
    forward = take(heads * n);
    backward = take(heads * n);
    read_weights = take(heads * n);
    aux = at;
  }
};

template <typename T>
inline T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

template <typename T>
inline T oneplus(T x) {
  return x > T(kSoftplusThreshold) ? T(1) + x : T(1) + std::log1p(std::exp(x));
}

// d oneplus / dx, as torch's softplus backward computes it.
template <typename T>
inline T oneplus_slope(T x) {
  if (x > T(kSoftplusThreshold)) return T(1);
  const T z = std::exp(x);
  return z / (z + T(1));
}

// The squashed interface parameters of one batch element, in the interface layout.
template <typename T>
void squash_interface(const DncLayout& l, const T* __restrict__ raw, T* __restrict__ out) {
  std::copy(raw, raw + l.interface, out);
  for (int64_t h = 0; h < l.heads; ++h) {
    out[l.read_strengths + h] = oneplus(raw[l.read_strengths + h]);
    out[l.free_gates + h] = sigmoid(raw[l.free_gates + h]);
    const T* modes = raw + l.read_modes + 3 * h;
    const T top = std::max(modes[0], std::max(modes[1], modes[2]));
    T e[3], total = T(0);
    for (int k = 0; k < 3; ++k) total += (e[k] = std::exp(modes[k] - top));
    for (int k = 0; k < 3; ++k) out[l.read_modes + 3 * h + k] = e[k] / total;
  }
  out[l.write_strength] = oneplus(raw[l.write_strength]);
  for (int64_t k = 0; k < l.width; ++k) out[l.erase + k] = sigmoid(raw[l.erase + k]);
  out[l.allocation_gate] = sigmoid(raw[l.allocation_gate]);
  out[l.write_gate] = sigmoid(raw[l.write_gate]);
}

// row = old + w (add - old o erase), one slot of the erase-and-add write.
template <typename T>
inline void erase_and_add_row(const T* __restrict__ old, const T* __restrict__ erase,
                              const T* __restrict__ add, T w, T* __restrict__ row, int64_t width) {
  for (int64_t k = 0; k < width; ++k) row[k] = old[k] + w * (add[k] - old[k] * erase[k]);
}

// Backward of erase_and_add_row given d row: writes d old, adds to d add and d erase, returns
// d w. The pointers must not alias: written with __restrict__ so that the loop vectorises.
template <typename T>
inline T erase_and_add_row_backward(const T* __restrict__ old, const T* __restrict__ erase,
                                    const T* __restrict__ add, T w, const T* __restrict__ grad_row,
                                    T* __restrict__ grad_old, T* __restrict__ grad_add,
                                    T* __restrict__ grad_erase, int64_t width) {
  T grad_w = T(0);
  for (int64_t k = 0; k < width; ++k) {
    grad_w += grad_row[k] * (add[k] - old[k] * erase[k]);
    grad_old[k] = grad_row[k] * (T(1) - w * erase[k]);
    grad_add[k] += grad_row[k] * w;
    grad_erase[k] -= grad_row[k] * w * old[k];
  }
  return grad_w;
}

// out = source, or zeros where source is null.
template <typename T>
inline void copy_or_zero(const T* source, int64_t size, T* out) {
  if (source != nullptr) {
    std::copy(source, source + size, out);
  } else {
    std::fill(out, out + size, T(0));
  }
}

// norms[n] = sqrt(|M[n]|^2 + eps^2), M (N, W).
template <typename T>
void slot_norms(const T* __restrict__ memory, int64_t n, int64_t width, T* __restrict__ norms) {
  for (int64_t i = 0; i < n; ++i) {
    const T* row = memory + i * width;
    norms[i] = std::sqrt(dot(row, row, width) + T(kNormEps * kNormEps));
  }
}

// Content weights of one key: cos[n] and weights[n] = softmax_n(beta cos[n]).
template <typename T>
void content_forward(const T* __restrict__ memory, const T* __restrict__ norms,
                     const T* __restrict__ key, T beta, int64_t n, int64_t width,
                     T* __restrict__ cos, T* __restrict__ weights) {
  const T key_norm = std::sqrt(dot(key, key, width) + T(kNormEps * kNormEps));
  T top = -std::numeric_limits<T>::infinity();
  for (int64_t i = 0; i < n; ++i) {
    cos[i] = dot(key, memory + i * width, width) / (key_norm * norms[i]);
    top = std::max(top, beta * cos[i]);
  }
  T total = T(0);
  for (int64_t i = 0; i < n; ++i) total += (weights[i] = std::exp(beta * cos[i] - top));
  const T scale = T(1) / total;
  for (int64_t i = 0; i < n; ++i) weights[i] *= scale;
}

// Backward of content_forward for one key, given dweights. Adds to grad_key (W), grad_memory
// (N, W) and grad_norms (N, the gradient reaching the slot norms; the caller turns it into a
// memory gradient once for all keys) and returns d beta. `dcos` is n elements of scratch.
//   dz = c o (dc - <c, dc>),  d beta = <dz, cos>,  dcos = beta dz
//   cos = dot / (|k| |M[n]|):  d dot = dcos / (|k| |M[n]|),  d|k| = -<dcos, cos> / |k|,
//   d|M[n]| = -dcos[n] cos[n] / |M[n]|,  and d|x| / dx = x / |x|.
template <typename T>
T content_backward(const T* __restrict__ memory, const T* __restrict__ norms,
                   const T* __restrict__ key, T beta, const T* __restrict__ cos,
                   const T* __restrict__ weights, const T* __restrict__ grad_weights, int64_t n,
                   int64_t width, T* __restrict__ grad_key, T* __restrict__ grad_memory,
                   T* __restrict__ grad_norms, T* __restrict__ dcos) {
  const T key_norm = std::sqrt(dot(key, key, width) + T(kNormEps * kNormEps));
  T mean = T(0);
  for (int64_t i = 0; i < n; ++i) mean += weights[i] * grad_weights[i];
  T grad_beta = T(0), grad_key_norm = T(0);
  for (int64_t i = 0; i < n; ++i) {
    const T dz = weights[i] * (grad_weights[i] - mean);
    grad_beta += dz * cos[i];
    dcos[i] = beta * dz;
    grad_key_norm -= dcos[i] * cos[i];
    grad_norms[i] -= dcos[i] * cos[i] / norms[i];
  }
  grad_key_norm /= key_norm;
  for (int64_t i = 0; i < n; ++i) {
    const T ddot = dcos[i] / (key_norm * norms[i]);
    axpy(ddot, memory + i * width, grad_key, width);
    axpy(ddot, key, grad_memory + i * width, width);
  }
  for (int64_t k = 0; k < width; ++k) grad_key[k] += grad_key_norm * key[k] / key_norm;
  return grad_beta;
}

// grad_memory[n, :] += grad_norms[n] M[n, :] / |M[n]|
template <typename T>
void norms_backward(const T* __restrict__ memory, const T* __restrict__ norms,
                    const T* __restrict__ grad_norms, int64_t n, int64_t width,
                    T* __restrict__ grad_memory) {
  for (int64_t i = 0; i < n; ++i) {
    axpy(grad_norms[i] / norms[i], memory + i * width, grad_memory + i * width, width);
  }
}

// Inputs and outputs of one batch element (pointers into the batched tensors).
template <typename T>
struct DncElement {
  // inputs
  const T* interface;      // (I) raw
  const T* prev_memory;    // (N, W)
  const T* prev_usage;     // (N)
  const T* prev_link;      // (N, N)
  const T* prev_precedence;
  const T* prev_write;     // (N)
  const T* prev_read;      // (R, N)
  // outputs
  T* memory;
  T* usage;
  T* link;
  T* precedence;
  T* write;
  T* read;
  T* read_vectors;  // (R, W)
  T* aux;           // saved intermediates, DncLayout.aux elements
  int64_t* order;   // (N) slots sorted by usage
};

// One batch element forward. `params` holds I elements of scratch.
template <typename T>
void dnc_forward_one(const DncLayout& l, const DncElement<T>& e, T* __restrict__ params,
                     ForwardKernel<T> link_kernel) {
  const int64_t n = l.n, width = l.width, heads = l.heads;
  squash_interface(l, e.interface, params);
  T* aux = e.aux;

  // Usage, with the retention psi folded in.
  for (int64_t i = 0; i < n; ++i) {
    T psi = T(1);
    for (int64_t h = 0; h < heads; ++h) psi *= T(1) - params[l.free_gates + h] * e.prev_read[h * n + i];
    const T u = e.prev_usage[i], w = e.prev_write[i];
    e.usage[i] = (u + w - u * w) * psi;
  }

  // Allocation: a[order[k]] = (1 - s_k) prod_{j<k} s_j with s the usage sorted ascending.
  T* sorted = aux + l.sorted;
  T* free_before = aux + l.free_before;
  T* allocation = aux + l.allocation;
  // Stable, as torch.sort(stable=True): ties keep slot order.
  for (int64_t i = 0; i < n; ++i) sorted[i] = T(kUsageEps) + T(1 - kUsageEps) * e.usage[i];
  std::iota(e.order, e.order + n, int64_t(0));
  std::stable_sort(e.order, e.order + n,
                   [sorted](int64_t a, int64_t b) { return sorted[a] < sorted[b]; });
  std::copy(sorted, sorted + n, allocation);  // unsorted values, reused as a temporary
  T product = T(1);
  for (int64_t k = 0; k < n; ++k) {
    sorted[k] = allocation[e.order[k]];
    free_before[k] = product;
    product *= sorted[k];
  }
  for (int64_t k = 0; k < n; ++k) allocation[e.order[k]] = (T(1) - sorted[k]) * free_before[k];

  // Write weights from the previous memory's content.
  T* prev_norms = aux + l.prev_norms;
  T* write_content = aux + l.write_content;
  slot_norms(e.prev_memory, n, width, prev_norms);
  content_forward(e.prev_memory, prev_norms, params + l.write_key, params[l.write_strength], n,
                  width, aux + l.write_cos, write_content);
  const T ga = params[l.allocation_gate], gw = params[l.write_gate];
  for (int64_t i = 0; i < n; ++i) {
    e.write[i] = gw * (ga * allocation[i] + (T(1) - ga) * write_content[i]);
  }
  std::copy(e.write, e.write + n, aux + l.write_weights);

  // Erase and add.
  const T* erase = params + l.erase;
  const T* add = params + l.write_vector;
  for (int64_t i = 0; i < n; ++i) {
    erase_and_add_row(e.prev_memory + i * width, erase, add, e.write[i], e.memory + i * width,
                      width);
  }

  // Link, forward and backward weightings (b must arrive zeroed).
  T* forward = aux + l.forward;
  T* backward = aux + l.backward;
  std::fill(backward, backward + heads * n, T(0));
  if (link_kernel != nullptr) {
    link_kernel(e.prev_link, e.write, e.prev_precedence, e.prev_read, e.link, forward, backward, n);
  } else {
    forward_one_any_heads<T>(e.prev_link, e.write, e.prev_precedence, e.prev_read, e.link, forward,
                             backward, n, heads);
  }

  // Precedence.
  T written = T(0);
  for (int64_t i = 0; i < n; ++i) written += e.write[i];
  for (int64_t i = 0; i < n; ++i) {
    e.precedence[i] = (T(1) - written) * e.prev_precedence[i] + e.write[i];
  }

  // Reads from the new memory.
  T* norms = aux + l.norms;
  slot_norms(e.memory, n, width, norms);
  std::fill(e.read_vectors, e.read_vectors + heads * width, T(0));
  for (int64_t h = 0; h < heads; ++h) {
    T* content = aux + l.read_content + h * n;
    content_forward(e.memory, norms, params + l.read_keys + h * width,
                    params[l.read_strengths + h], n, width, aux + l.read_cos + h * n, content);
    const T* modes = params + l.read_modes + 3 * h;
    T* read = e.read + h * n;
    T* vector = e.read_vectors + h * width;
    for (int64_t i = 0; i < n; ++i) {
      read[i] =
          modes[0] * backward[h * n + i] + modes[1] * content[i] + modes[2] * forward[h * n + i];
      axpy(read[i], e.memory + i * width, vector, width);
    }
  }
  std::copy(e.read, e.read + heads * n, aux + l.read_weights);
}

// Gradients of one batch element: incoming ones (d of the outputs) may be null and are then
// read as zero; outgoing ones (d of the inputs) are written, not accumulated.
template <typename T>
struct DncGrads {
  // incoming: d of the outputs
  const T* memory;
  const T* usage;
  const T* link;
  const T* precedence;
  const T* write;
  const T* read;
  const T* read_vectors;
  // outgoing: d of the inputs
  T* interface;
  T* prev_memory;
  T* prev_usage;
  T* prev_link;
  T* prev_precedence;
  T* prev_write;
  T* prev_read;
};

// Elements of scratch that dnc_backward_one needs (its layout is at its top).
inline int64_t dnc_backward_scratch(const DncLayout& l) {
  return l.interface + l.n * l.width + 5 * l.n + 4 * l.heads * l.n + 2 * l.n;
}

// One batch element backward, the forward's steps in reverse. `scratch` holds
// dnc_backward_scratch(l) elements; `zeros` is n zeros, read in place of a missing dL_t.
template <typename T>
void dnc_backward_one(const DncLayout& l, const DncElement<T>& e, const DncGrads<T>& g,
                      T* __restrict__ scratch, BackwardKernel<T> link_kernel,
                      const T* __restrict__ zeros) {
  const int64_t n = l.n, width = l.width, heads = l.heads;
  const T* aux = e.aux;
  // Scratch layout.
  T* params = scratch;                          // squashed interface (I)
  T* grad_memory = params + l.interface;       // dLoss/dM_t in total (N, W)
  T* grad_norms = grad_memory + n * width;     // (N)
  T* grad_write = grad_norms + n;              // dLoss/dw^w_t in total (N)
  T* grad_usage = grad_write + n;              // dLoss/du_t in total (N)
  T* grad_allocation = grad_usage + n;         // (N)
  T* dcos = grad_allocation + n;               // (N)
  T* grad_read = dcos + n;                     // dLoss/dw^r_t in total (R, N)
  T* grad_forward = grad_read + heads * n;     // (R, N)
  T* grad_backward = grad_forward + heads * n; // (R, N)
  T* grad_content = grad_backward + heads * n; // (R, N)
  T* spare = grad_content + heads * n;         // 2 N, for the any-heads link kernel
  T* grad_params = g.interface;                // d of the squashed parameters, then raw
  squash_interface(l, e.interface, params);
  std::fill(grad_params, grad_params + l.interface, T(0));

  // Read vectors r[h] = sum_n w^r[h, n] M[n]: into dw^r and dM.
  const T* read = aux + l.read_weights;
  copy_or_zero(g.memory, n * width, grad_memory);
  copy_or_zero(g.read, heads * n, grad_read);
  if (g.read_vectors != nullptr) {
    for (int64_t h = 0; h < heads; ++h) {
      const T* dr = g.read_vectors + h * width;
      for (int64_t i = 0; i < n; ++i) {
        grad_read[h * n + i] += dot(dr, e.memory + i * width, width);
        axpy(read[h * n + i], dr, grad_memory + i * width, width);
      }
    }
  }

  // Read modes and read content.
  std::fill(grad_norms, grad_norms + n, T(0));
  for (int64_t h = 0; h < heads; ++h) {
    const T* modes = params + l.read_modes + 3 * h;
    const T* dread = grad_read + h * n;
    const T* content = aux + l.read_content + h * n;
    T dmode[3] = {T(0), T(0), T(0)};
    for (int64_t i = 0; i < n; ++i) {
      dmode[0] += dread[i] * aux[l.backward + h * n + i];
      dmode[1] += dread[i] * content[i];
      dmode[2] += dread[i] * aux[l.forward + h * n + i];
      grad_backward[h * n + i] = modes[0] * dread[i];
      grad_content[h * n + i] = modes[1] * dread[i];
      grad_forward[h * n + i] = modes[2] * dread[i];
    }
    for (int k = 0; k < 3; ++k) grad_params[l.read_modes + 3 * h + k] = dmode[k];
    grad_params[l.read_strengths + h] = content_backward(
        e.memory, aux + l.norms, params + l.read_keys + h * width, params[l.read_strengths + h],
        aux + l.read_cos + h * n, content, grad_content + h * n, n, width,
        grad_params + l.read_keys + h * width, grad_memory, grad_norms, dcos);
  }
  norms_backward(e.memory, aux + l.norms, grad_norms, n, width, grad_memory);

  // Precedence p = (1 - sum w) p_{t-1} + w.
  const T* write = aux + l.write_weights;
  T written = T(0), pushed = T(0);
  for (int64_t i = 0; i < n; ++i) {
    written += write[i];
    if (g.precedence != nullptr) pushed += g.precedence[i] * e.prev_precedence[i];
  }
  for (int64_t i = 0; i < n; ++i) {
    const T dp = g.precedence ? g.precedence[i] : T(0);
    g.prev_precedence[i] = (T(1) - written) * dp;
    grad_write[i] = (g.write ? g.write[i] : T(0)) + dp - pushed;
  }

  // Link: adds to dw^w, dp_{t-1} and dw^r_{t-1}, writes dL_{t-1}.
  std::fill(g.prev_read, g.prev_read + heads * n, T(0));
  if (link_kernel != nullptr) {
    link_kernel(e.prev_link, write, e.prev_precedence, e.prev_read, g.link, grad_forward,
                grad_backward, g.prev_link, grad_write, g.prev_precedence, g.prev_read, zeros, n);
  } else {
    backward_one_any_heads<T>(e.prev_link, write, e.prev_precedence, e.prev_read, g.link,
                              grad_forward, grad_backward, g.prev_link, grad_write,
                              g.prev_precedence, g.prev_read, zeros, spare, n, heads);
  }

  // Erase and add: M = M_{t-1} + w (v - M_{t-1} o e).
  const T* erase = params + l.erase;
  const T* add = params + l.write_vector;
  T* grad_erase = grad_params + l.erase;
  T* grad_add = grad_params + l.write_vector;
  for (int64_t i = 0; i < n; ++i) {
    grad_write[i] += erase_and_add_row_backward(
        e.prev_memory + i * width, erase, add, write[i], grad_memory + i * width,
        g.prev_memory + i * width, grad_add, grad_erase, width);
  }

  // Write weights w = g^w (g^a a + (1 - g^a) c^w).
  const T ga = params[l.allocation_gate], gw = params[l.write_gate];
  const T* allocation = aux + l.allocation;
  const T* write_content = aux + l.write_content;
  T dga = T(0), dgw = T(0);
  T* grad_write_content = grad_content;  // the read heads' buffer is free again
  for (int64_t i = 0; i < n; ++i) {
    dgw += grad_write[i] * (ga * allocation[i] + (T(1) - ga) * write_content[i]);
    dga += grad_write[i] * (allocation[i] - write_content[i]);
    grad_allocation[i] = gw * ga * grad_write[i];
    grad_write_content[i] = gw * (T(1) - ga) * grad_write[i];
  }
  grad_params[l.allocation_gate] = gw * dga;
  grad_params[l.write_gate] = dgw;
  std::fill(grad_norms, grad_norms + n, T(0));
  grad_params[l.write_strength] = content_backward(
      e.prev_memory, aux + l.prev_norms, params + l.write_key, params[l.write_strength],
      aux + l.write_cos, write_content, grad_write_content, n, width, grad_params + l.write_key,
      g.prev_memory, grad_norms, dcos);
  norms_backward(e.prev_memory, aux + l.prev_norms, grad_norms, n, width, g.prev_memory);

  // Allocation: ds_k = -da_k prod_{j<k} s_j + (sum_{m>k} da_m a_m) / s_k, in sorted order.
  const T* sorted = aux + l.sorted;
  const T* free_before = aux + l.free_before;
  for (int64_t i = 0; i < n; ++i) grad_usage[i] = g.usage ? g.usage[i] : T(0);
  T later = T(0);
  for (int64_t k = n - 1; k >= 0; --k) {
    const int64_t slot = e.order[k];
    const T ds = -grad_allocation[slot] * free_before[k] + later / sorted[k];
    later += grad_allocation[slot] * allocation[slot];
    grad_usage[slot] += T(1 - kUsageEps) * ds;
  }

  // Usage u = q psi with q = u_{t-1} + w_{t-1} - u_{t-1} w_{t-1}, psi = prod_h (1 - f_h r_h).
  const T* free = params + l.free_gates;
  for (int64_t i = 0; i < n; ++i) {
    const T u = e.prev_usage[i], w = e.prev_write[i];
    T psi = T(1);
    for (int64_t h = 0; h < heads; ++h) psi *= T(1) - free[h] * e.prev_read[h * n + i];
    const T dq = grad_usage[i] * psi;
    const T dpsi = grad_usage[i] * (u + w - u * w);
    g.prev_usage[i] = dq * (T(1) - w);
    g.prev_write[i] = dq * (T(1) - u);
    for (int64_t h = 0; h < heads; ++h) {
      T others = T(1);
      for (int64_t o = 0; o < heads; ++o) {
        if (o != h) others *= T(1) - free[o] * e.prev_read[o * n + i];
      }
      const T dkept = dpsi * others;
      grad_params[l.free_gates + h] -= dkept * e.prev_read[h * n + i];
      g.prev_read[h * n + i] -= dkept * free[h];
    }
  }

  // The squashing functions, from d(squashed) to d(raw).
  const T* raw = e.interface;
  for (int64_t h = 0; h < heads; ++h) {
    grad_params[l.read_strengths + h] *= oneplus_slope(raw[l.read_strengths + h]);
    const T f = params[l.free_gates + h];
    grad_params[l.free_gates + h] *= f * (T(1) - f);
    T* dmodes = grad_params + l.read_modes + 3 * h;
    const T* modes = params + l.read_modes + 3 * h;
    const T mean = modes[0] * dmodes[0] + modes[1] * dmodes[1] + modes[2] * dmodes[2];
    for (int k = 0; k < 3; ++k) dmodes[k] = modes[k] * (dmodes[k] - mean);
  }
  grad_params[l.write_strength] *= oneplus_slope(raw[l.write_strength]);
  for (int64_t k = 0; k < width; ++k) grad_erase[k] *= erase[k] * (T(1) - erase[k]);
  grad_params[l.allocation_gate] *= ga * (T(1) - ga);
  grad_params[l.write_gate] *= gw * (T(1) - gw);
}

// ------------------------------------------------------------------------------------------
// The operator and its autograd Function.

struct DncShapes {
  int64_t batch, n, width, heads;
};

DncShapes check_dnc_inputs(const at::Tensor& interface, const at::Tensor& memory,
                           const at::Tensor& usage, const at::Tensor& link,
                           const at::Tensor& precedence, const at::Tensor& write,
                           const at::Tensor& read) {
  TORCH_CHECK(memory.dim() == 3, "memory must have shape (B, N, W), got ", memory.sizes());
  const int64_t batch = memory.size(0), n = memory.size(1), width = memory.size(2);
  TORCH_CHECK(read.dim() == 3 && read.size(0) == batch && read.size(2) == n,
              "read_weights must have shape (B, R, N) = (", batch, ", R, ", n, "), got ",
              read.sizes());
  const int64_t heads = read.size(1);
  const DncLayout layout(n, width, heads);
  TORCH_CHECK(interface.dim() == 2 && interface.size(0) == batch &&
                  interface.size(1) == layout.interface,
              "interface must have shape (B, R W + 3 W + 5 R + 3) = (", batch, ", ",
              layout.interface, "), got ", interface.sizes());
  TORCH_CHECK(link.dim() == 3 && link.size(0) == batch && link.size(1) == n && link.size(2) == n,
              "link must have shape (B, N, N) = (", batch, ", ", n, ", ", n, "), got ",
              link.sizes());
  for (const at::Tensor* t : {&usage, &precedence, &write}) {
    TORCH_CHECK(t->dim() == 2 && t->size(0) == batch && t->size(1) == n,
                "usage, precedence and write_weights must have shape (B, N) = (", batch, ", ",
                n, "), got ", t->sizes());
  }
  for (const at::Tensor* t : {&interface, &memory, &usage, &link, &precedence, &write, &read}) {
    TORCH_CHECK(t->device().is_cpu() && t->layout() == at::kStrided,
                "the fused DNC step runs on dense CPU tensors only");
    TORCH_CHECK(t->scalar_type() == memory.scalar_type(), "all inputs must share one dtype, got ",
                memory.scalar_type(), " and ", t->scalar_type());
    TORCH_CHECK(t->is_contiguous() && !t->is_neg(), "the fused DNC step needs contiguous inputs");
  }
  return {batch, n, width, heads};
}

// Outputs (memory, usage, link, precedence, write_weights, read_weights, read_vectors) and the
// saved intermediates (aux, order).
std::vector<at::Tensor> dnc_forward(const at::Tensor& interface, const at::Tensor& memory,
                                    const at::Tensor& usage, const at::Tensor& link,
                                    const at::Tensor& precedence, const at::Tensor& write,
                                    const at::Tensor& read) {
  const auto [batch, n, width, heads] =
      check_dnc_inputs(interface, memory, usage, link, precedence, write, read);
  const DncLayout layout(n, width, heads);
  at::Tensor out_memory = at::empty_like(memory);
  at::Tensor out_usage = at::empty_like(usage);
  at::Tensor out_link = pooled_empty(link.sizes(), link.options());
  at::Tensor out_precedence = at::empty_like(precedence);
  at::Tensor out_write = at::empty_like(write);
  at::Tensor out_read = at::empty_like(read);
  at::Tensor read_vectors = at::empty({batch, heads, width}, memory.options());
  at::Tensor aux = at::empty({batch, layout.aux}, memory.options());
  at::Tensor order = at::empty({batch, n}, memory.options().dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES(memory.scalar_type(), "torchmem_dnc_forward", [&] {
    using T = scalar_t;
    const ForwardKernel<T> kernel = forward_kernel_for<T>(heads);
    at::parallel_for(0, batch, grain_for(n), [&](int64_t first, int64_t last) {
      std::vector<T> params(layout.interface);
      for (int64_t b = first; b < last; ++b) {
        const DncElement<T> e{
            interface.const_data_ptr<T>() + b * layout.interface,
            memory.const_data_ptr<T>() + b * n * width,
            usage.const_data_ptr<T>() + b * n,
            link.const_data_ptr<T>() + b * n * n,
            precedence.const_data_ptr<T>() + b * n,
            write.const_data_ptr<T>() + b * n,
            read.const_data_ptr<T>() + b * heads * n,
            out_memory.mutable_data_ptr<T>() + b * n * width,
            out_usage.mutable_data_ptr<T>() + b * n,
            out_link.mutable_data_ptr<T>() + b * n * n,
            out_precedence.mutable_data_ptr<T>() + b * n,
            out_write.mutable_data_ptr<T>() + b * n,
            out_read.mutable_data_ptr<T>() + b * heads * n,
            read_vectors.mutable_data_ptr<T>() + b * heads * width,
            aux.mutable_data_ptr<T>() + b * layout.aux,
            order.mutable_data_ptr<int64_t>() + b * n,
        };
        dnc_forward_one<T>(layout, e, params.data(), kernel);
      }
    });
  });
  return {out_memory, out_usage,     out_link, out_precedence, out_write,
          out_read,   read_vectors, aux,      order};
}

struct DncStep : public torch::autograd::Function<DncStep> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& interface,
                               const at::Tensor& memory, const at::Tensor& usage,
                               const at::Tensor& link, const at::Tensor& precedence,
                               const at::Tensor& write, const at::Tensor& read) {
    ctx->set_materialize_grads(false);
    variable_list inputs;
    for (const at::Tensor* t : {&interface, &memory, &usage, &link, &precedence, &write, &read}) {
      inputs.push_back(t->contiguous().resolve_neg());
    }
    std::vector<at::Tensor> out =
        dnc_forward(inputs[0], inputs[1], inputs[2], inputs[3], inputs[4], inputs[5], inputs[6]);
    // Inputs, then aux, order and the new memory (an output; the reads' backward needs it).
    variable_list saved = inputs;
    saved.push_back(out[7]);
    saved.push_back(out[8]);
    saved.push_back(out[0]);
    ctx->save_for_backward(saved);
    return {out[0], out[1], out[2], out[3], out[4], out[5], out[6]};
  }

  static variable_list backward(AutogradContext* ctx, variable_list& grads) {
    if (std::none_of(grads.begin(), grads.end(), [](const at::Tensor& g) { return g.defined(); })) {
      return variable_list(7);
    }
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor& link = saved[3];
    // create_graph=True: the gradient may be differentiated again, also where no incoming
    // gradient requires grad (it can meet others that do), so it must raise, not act constant.
    const bool differentiable = at::GradMode::is_enabled();
    // Decided before anything else takes a reference to the link's gradient.
    const bool overwrite = !differentiable && may_overwrite(grads[2], link);
    const int64_t batch = link.size(0), n = link.size(1);
    const int64_t width = saved[1].size(2), heads = saved[6].size(1);
    const DncLayout layout(n, width, heads);
    variable_list result(7);
    {
      at::AutoGradMode no_grad(false);
      variable_list incoming(7);
      for (size_t k = 0; k < 7; ++k) {
        if (grads[k].defined()) {
          incoming[k] = (k == 2 && overwrite) ? grads[k] : grads[k].contiguous().resolve_neg();
        }
      }
      result[0] = at::empty_like(saved[0]);
      result[1] = at::empty_like(saved[1]);
      result[2] = at::empty_like(saved[2]);
      result[3] = overwrite ? incoming[2] : pooled_empty(link.sizes(), link.options());
      result[4] = at::empty_like(saved[4]);
      result[5] = at::empty_like(saved[5]);
      result[6] = at::empty_like(saved[6]);
      AT_DISPATCH_FLOATING_TYPES(link.scalar_type(), "torchmem_dnc_backward", [&] {
        using T = scalar_t;
        const BackwardKernel<T> kernel = backward_kernel_for<T>(heads);
        auto in = [&](size_t k, int64_t offset) -> const T* {
          return incoming[k].defined() ? incoming[k].const_data_ptr<T>() + offset : nullptr;
        };
        at::parallel_for(0, batch, grain_for(n), [&](int64_t first, int64_t last) {
          std::vector<T> zeros(n, T(0));
          std::vector<T> scratch(dnc_backward_scratch(layout));
          for (int64_t b = first; b < last; ++b) {
            const DncElement<T> e{
                saved[0].const_data_ptr<T>() + b * layout.interface,
                saved[1].const_data_ptr<T>() + b * n * width,
                saved[2].const_data_ptr<T>() + b * n,
                saved[3].const_data_ptr<T>() + b * n * n,
                saved[4].const_data_ptr<T>() + b * n,
                saved[5].const_data_ptr<T>() + b * n,
                saved[6].const_data_ptr<T>() + b * heads * n,
                // Of the outputs only the new memory is read; aux holds the rest.
                const_cast<T*>(saved[9].const_data_ptr<T>()) + b * n * width,
                nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                const_cast<T*>(saved[7].const_data_ptr<T>()) + b * layout.aux,
                const_cast<int64_t*>(saved[8].const_data_ptr<int64_t>()) + b * n,
            };
            const DncGrads<T> g{
                in(0, b * n * width),
                in(1, b * n),
                in(2, b * n * n),
                in(3, b * n),
                in(4, b * n),
                in(5, b * heads * n),
                in(6, b * heads * width),
                result[0].mutable_data_ptr<T>() + b * layout.interface,
                result[1].mutable_data_ptr<T>() + b * n * width,
                result[2].mutable_data_ptr<T>() + b * n,
                result[3].mutable_data_ptr<T>() + b * n * n,
                result[4].mutable_data_ptr<T>() + b * n,
                result[5].mutable_data_ptr<T>() + b * n,
                result[6].mutable_data_ptr<T>() + b * heads * n,
            };
            dnc_backward_one<T>(layout, e, g, scratch.data(), kernel, zeros.data());
          }
        });
      });
    }
    for (size_t k = 0; k < 7; ++k) {
      if (!ctx->needs_input_grad(k)) result[k] = at::Tensor();
    }
    if (!differentiable) return result;
    return differentiable_once(std::move(result), "the fused DNC step");
  }
};

std::vector<at::Tensor> dnc_step(const at::Tensor& interface, const at::Tensor& memory,
                                 const at::Tensor& usage, const at::Tensor& link,
                                 const at::Tensor& precedence, const at::Tensor& write,
                                 const at::Tensor& read) {
  return DncStep::apply(interface, memory, usage, link, precedence, write, read);
}
