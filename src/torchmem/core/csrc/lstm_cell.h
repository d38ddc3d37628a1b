// One LSTM cell step (torch.nn.LSTMCell's maths and gate order) as a CPU operator with a
// hand-written backward.
//
// Included by fused_link.cpp inside its anonymous namespace, after differentiable_once; not a
// standalone header.
//
// Why: the memory models step their controller one time step at a time (the reads feed back),
// and nn.LSTMCell on CPU is a composite of about a dozen small operators forward and two
// dozen backward, each a few microseconds of dispatch and autograd for a (B, 4H) tensor. Here
// the two products are GEMMs and the gate arithmetic a few vectorised passes; the backward is
// one loop and the five products.
//
// Legend: B batch, I input width, H hidden size. With z = x W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh
// split as (i, f, g, o) along its last dimension (B, 4H):
//   i = sigmoid(z_i)  f = sigmoid(z_f)  g = tanh(z_g)  o = sigmoid(z_o)
//   c_t = f c_{t-1} + i g          h_t = o tanh(c_t)
// Backward, with dc = dc_t + dh_t o (1 - tanh(c_t)^2):
//   dz_i = dc g i (1 - i)   dz_f = dc c_{t-1} f (1 - f)   dz_g = dc i (1 - g^2)
//   dz_o = dh_t tanh(c_t) o (1 - o)   dc_{t-1} = dc f
//   dx = dz W_ih   dh_{t-1} = dz W_hh   dW_ih = dz^T x   dW_hh = dz^T h_{t-1}   db = sum_B dz

// The forward's gate arithmetic is two loops and three vectorised ATen calls (sigmoid, tanh,
// a product), because scalar exp and tanh calls would cost more than everything else here.
// tanh(z_g) is computed as 2 sigmoid(2 z_g) - 1 (exact doubling; the same value to a few units
// in the last place):
//   lstm_before_activation:  z += b_hh, z_g *= 2           (per row of gates (4H))
//   ATen:                    s = sigmoid(z)                 (all of gates, in place)
//   lstm_after_sigmoid:      g = 2 s_g - 1, c_t = f c_{t-1} + i g
//   ATen:                    h_t = o tanh(c_t)
template <typename T>
void lstm_before_activation(T* __restrict__ gates, const T* __restrict__ bias_hh, int64_t h) {
  for (int64_t k = 0; k < 4 * h; ++k) gates[k] += bias_hh[k];
  for (int64_t k = 2 * h; k < 3 * h; ++k) gates[k] *= T(2);
}

template <typename T>
void lstm_after_sigmoid(T* __restrict__ gates, const T* __restrict__ prev_cell,
                        T* __restrict__ cell, int64_t h) {
  const T* i = gates;
  const T* f = gates + h;
  T* g = gates + 2 * h;
  for (int64_t k = 0; k < h; ++k) {
    g[k] = T(2) * g[k] - T(1);
    cell[k] = f[k] * prev_cell[k] + i[k] * g[k];
  }
}

// d gates (pre-activation) and d c_{t-1} from d h_t and d c_t (either may be null: zero).
template <typename T>
void lstm_gates_backward(const T* __restrict__ gates, const T* __restrict__ prev_cell,
                         const T* __restrict__ tanh_cell, const T* __restrict__ grad_hidden,
                         const T* __restrict__ grad_cell, T* __restrict__ grad_gates,
                         T* __restrict__ grad_prev_cell, int64_t h) {
  for (int64_t k = 0; k < h; ++k) {
    const T i = gates[k], f = gates[h + k], g = gates[2 * h + k], o = gates[3 * h + k];
    const T tc = tanh_cell[k];
    const T dh = grad_hidden ? grad_hidden[k] : T(0);
    const T dc = (grad_cell ? grad_cell[k] : T(0)) + dh * o * (T(1) - tc * tc);
    grad_gates[k] = dc * g * i * (T(1) - i);
    grad_gates[h + k] = dc * prev_cell[k] * f * (T(1) - f);
    grad_gates[2 * h + k] = dc * i * (T(1) - g * g);
    grad_gates[3 * h + k] = dh * tc * o * (T(1) - o);
    grad_prev_cell[k] = dc * f;
  }
}

void check_lstm_inputs(const at::Tensor& input, const at::Tensor& hidden, const at::Tensor& cell,
                       const at::Tensor& w_ih, const at::Tensor& w_hh, const at::Tensor& b_ih,
                       const at::Tensor& b_hh) {
  TORCH_CHECK(w_ih.dim() == 2 && w_ih.size(0) % 4 == 0,
              "weight_ih must have shape (4H, I), got ", w_ih.sizes());
  const int64_t h = w_ih.size(0) / 4, width = w_ih.size(1);
  TORCH_CHECK(input.dim() == 2 && input.size(1) == width,
              "input must have shape (B, I) = (B, ", width, "), got ", input.sizes());
  const int64_t batch = input.size(0);
  TORCH_CHECK(w_hh.dim() == 2 && w_hh.size(0) == 4 * h && w_hh.size(1) == h,
              "weight_hh must have shape (4H, H) = (", 4 * h, ", ", h, "), got ", w_hh.sizes());
  for (const at::Tensor* t : {&b_ih, &b_hh}) {
    TORCH_CHECK(t->dim() == 1 && t->size(0) == 4 * h, "biases must have shape (4H,) = (", 4 * h,
                ",), got ", t->sizes());
  }
  for (const at::Tensor* t : {&hidden, &cell}) {
    TORCH_CHECK(t->dim() == 2 && t->size(0) == batch && t->size(1) == h,
                "hidden and cell must have shape (B, H) = (", batch, ", ", h, "), got ",
                t->sizes());
  }
  for (const at::Tensor* t : {&input, &hidden, &cell, &w_ih, &w_hh, &b_ih, &b_hh}) {
    TORCH_CHECK(t->device().is_cpu(), "the fused LSTM cell runs on CPU, got ", t->device());
    TORCH_CHECK(t->scalar_type() == input.scalar_type(),
                "the fused LSTM cell needs one dtype throughout, got ", input.scalar_type(),
                " and ", t->scalar_type());
  }
  TORCH_CHECK(input.scalar_type() == at::kFloat || input.scalar_type() == at::kDouble,
              "the fused LSTM cell needs float32 or float64, got ", input.scalar_type());
}

struct LstmCell : public torch::autograd::Function<LstmCell> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& input,
                               const at::Tensor& hidden, const at::Tensor& cell,
                               const at::Tensor& w_ih, const at::Tensor& w_hh,
                               const at::Tensor& b_ih, const at::Tensor& b_hh) {
    check_lstm_inputs(input, hidden, cell, w_ih, w_hh, b_ih, b_hh);
    ctx->set_materialize_grads(false);
    const int64_t batch = input.size(0), h = hidden.size(1);
    const at::Tensor prev_cell = cell.contiguous().resolve_neg();
    const at::Tensor bias_hh = b_hh.contiguous().resolve_neg();
    // z without b_hh, which the first loop adds; its buffer then holds the activated gates.
    at::Tensor gates = at::addmm(b_ih, input, w_ih.t());
    gates.addmm_(hidden, w_hh.t());
    at::Tensor new_cell = at::empty_like(prev_cell);
    AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "torchmem_lstm_forward", [&] {
      using T = scalar_t;
      T* z = gates.mutable_data_ptr<T>();
      for (int64_t b = 0; b < batch; ++b) {
        lstm_before_activation<T>(z + b * 4 * h, bias_hh.const_data_ptr<T>(), h);
      }
      gates.sigmoid_();  // i, f, sigmoid(2 z_g), o
      for (int64_t b = 0; b < batch; ++b) {
        lstm_after_sigmoid<T>(z + b * 4 * h, prev_cell.const_data_ptr<T>() + b * h,
                              new_cell.mutable_data_ptr<T>() + b * h, h);
      }
    });
    const at::Tensor tanh_cell = new_cell.tanh();
    const at::Tensor new_hidden = gates.narrow(1, 3 * h, h) * tanh_cell;
    ctx->save_for_backward({input, hidden, w_ih, w_hh, prev_cell, gates, tanh_cell});
    return {new_hidden, new_cell};
  }

  static variable_list backward(AutogradContext* ctx, variable_list& grads) {
    if (!grads[0].defined() && !grads[1].defined()) return variable_list(7);
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &input = saved[0], &hidden = saved[1], &w_ih = saved[2], &w_hh = saved[3];
    const at::Tensor &prev_cell = saved[4], &gates = saved[5], &tanh_cell = saved[6];
    // create_graph=True: the gradient may be differentiated again, also where no incoming
    // gradient requires grad (it can meet others that do), so it must raise, not act constant.
    const bool differentiable = at::GradMode::is_enabled();
    const int64_t batch = input.size(0), h = hidden.size(1);
    variable_list result(7);
    {
      at::AutoGradMode no_grad(false);
      const at::Tensor dh = grads[0].defined() ? grads[0].contiguous().resolve_neg() : at::Tensor();
      const at::Tensor dc = grads[1].defined() ? grads[1].contiguous().resolve_neg() : at::Tensor();
      at::Tensor grad_gates = at::empty_like(gates);
      at::Tensor grad_prev_cell = at::empty_like(prev_cell);
      AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "torchmem_lstm_backward", [&] {
        using T = scalar_t;
        for (int64_t b = 0; b < batch; ++b) {
          lstm_gates_backward<T>(gates.const_data_ptr<T>() + b * 4 * h,
                                 prev_cell.const_data_ptr<T>() + b * h,
                                 tanh_cell.const_data_ptr<T>() + b * h,
                                 dh.defined() ? dh.const_data_ptr<T>() + b * h : nullptr,
                                 dc.defined() ? dc.const_data_ptr<T>() + b * h : nullptr,
                                 grad_gates.mutable_data_ptr<T>() + b * 4 * h,
                                 grad_prev_cell.mutable_data_ptr<T>() + b * h, h);
        }
      });
      if (ctx->needs_input_grad(0)) result[0] = at::mm(grad_gates, w_ih);
      if (ctx->needs_input_grad(1)) result[1] = at::mm(grad_gates, w_hh);
      if (ctx->needs_input_grad(2)) result[2] = grad_prev_cell;
      if (ctx->needs_input_grad(3)) result[3] = at::mm(grad_gates.t(), input);
      if (ctx->needs_input_grad(4)) result[4] = at::mm(grad_gates.t(), hidden);
      if (ctx->needs_input_grad(5) || ctx->needs_input_grad(6)) {
        const at::Tensor grad_bias = grad_gates.sum(0);
        if (ctx->needs_input_grad(5)) result[5] = grad_bias;
        if (ctx->needs_input_grad(6)) result[6] = ctx->needs_input_grad(5) ? grad_bias.clone() : grad_bias;
      }
    }
    if (!differentiable) return result;
    return differentiable_once(std::move(result), "the fused LSTM cell");
  }
};

std::vector<at::Tensor> lstm_cell(const at::Tensor& input, const at::Tensor& hidden,
                                  const at::Tensor& cell, const at::Tensor& w_ih,
                                  const at::Tensor& w_hh, const at::Tensor& b_ih,
                                  const at::Tensor& b_hh) {
  return LstmCell::apply(input, hidden, cell, w_ih, w_hh, b_ih, b_hh);
}
