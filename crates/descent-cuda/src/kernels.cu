// descent's element-wise, reduction and optimizer kernels, compiled at run time by NVRTC with
// --fmad=false: each kernel does the reference backend's (descent_tensor::backend::HostBackend)
// IEEE operations in the same order, so the updates match the CPU's bit for bit; only expf
// and logf (softmax) differ by their last bits. Every kernel strides over its elements, so any
// grid size covers any length. Activation codes: 0 identity, 1 ReLU, 2 leaky ReLU (slope), 3
// tanh, 4 sigmoid.

typedef long long i64;

#define GRID_STRIDE(i, n) \
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (i64)blockDim.x * gridDim.x)

__device__ __forceinline__ float act_apply(int act, float slope, float x) {
    switch (act) {
    case 1: return fmaxf(x, 0.0f);
    case 2: return x > 0.0f ? x : slope * x;
    case 3: return tanhf(x);
    case 4: return 1.0f / (1.0f + expf(-x));
    default: return x;
    }
}

// f'(x) written with y = f(x).
__device__ __forceinline__ float act_derivative(int act, float slope, float y) {
    switch (act) {
    case 1: return y > 0.0f ? 1.0f : 0.0f;
    case 2: return y > 0.0f ? 1.0f : slope;
    case 3: return 1.0f - y * y;
    case 4: return y * (1.0f - y);
    default: return 1.0f;
    }
}

extern "C" __global__ void fill_f32(float *x, float v, i64 n) {
    GRID_STRIDE(i, n) { x[i] = v; }
}

// y[r][j] = act(y[r][j] + b[j]) over n = rows * cols values (b null: no bias).
extern "C" __global__ void bias_act(float *y, const float *b, i64 n, int cols, int act,
                                   float slope) {
    GRID_STRIDE(i, n) {
        float v = y[i];
        if (b) v = v + b[i % cols];
        y[i] = act_apply(act, slope, v);
    }
}

// dy *= act'(y)
extern "C" __global__ void act_grad(float *dy, const float *y, i64 n, int act, float slope) {
    GRID_STRIDE(i, n) { dy[i] = dy[i] * act_derivative(act, slope, y[i]); }
}

// out[j] = beta * out[j] + sum_r x[r][j], one thread per column, rows summed in order (the
// reference's order: deterministic, and the same bits on every run).
extern "C" __global__ void col_sum(float *out, const float *x, i64 rows, int cols, float beta) {
    GRID_STRIDE(j, (i64)cols) {
        float s = 0.0f;
        for (i64 r = 0; r < rows; r++) s = s + x[r * cols + j];
        out[j] = beta == 0.0f ? s : beta * out[j] + s;
    }
}

// Softmax cross-entropy, one warp per row: dz = (softmax(z) - onehot(label)) * scale; the
// row's loss and whether its first largest logit is the label go to row_stats[2 r], [2 r + 1].
extern "C" __global__ void softmax_xent(const float *z, const float *labels, float *dz,
                                        float *row_stats, i64 rows, int classes, float scale) {
    const int lane = threadIdx.x & 31;
    const i64 warps = ((i64)blockDim.x * gridDim.x) >> 5;
    for (i64 r = ((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5; r < rows; r += warps) {
        const float *row = z + r * classes;
        // The largest logit and its first index.
        float max = __int_as_float(0xff800000); // -inf
        int best = classes;
        for (int j = lane; j < classes; j += 32) {
            float v = row[j];
            if (v > max || (v == max && j < best)) { max = v; best = j; }
        }
        for (int o = 16; o > 0; o >>= 1) {
            float m2 = __shfl_xor_sync(0xffffffffu, max, o);
            int b2 = __shfl_xor_sync(0xffffffffu, best, o);
            if (m2 > max || (m2 == max && b2 < best)) { max = m2; best = b2; }
        }
        float sum = 0.0f;
        for (int j = lane; j < classes; j += 32) sum = sum + expf(row[j] - max);
        for (int o = 16; o > 0; o >>= 1) sum = sum + __shfl_xor_sync(0xffffffffu, sum, o);
        const int label = (int)labels[r];
        for (int j = lane; j < classes; j += 32) {
            float p = expf(row[j] - max) / sum;
            dz[r * classes + j] = (p - (j == label ? 1.0f : 0.0f)) * scale;
        }
        if (lane == 0) {
            row_stats[2 * r] = (max + logf(sum)) - row[label];
            row_stats[2 * r + 1] = best == label ? 1.0f : 0.0f;
        }
    }
}

// stats[0] += sum of the rows' losses, stats[1] += their correct count, in row order, by
// one thread (deterministic; rows are a batch, a few thousand at most).
extern "C" __global__ void add_row_stats(float *stats, const float *row_stats, i64 rows) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    double loss = 0.0;
    float correct = 0.0f;
    for (i64 r = 0; r < rows; r++) {
        loss += (double)row_stats[2 * r];
        correct = correct + row_stats[2 * r + 1];
    }
    stats[0] = stats[0] + (float)loss;
    stats[1] = stats[1] + correct;
}

// The step's scalars h: lr, first (1 on the first step), Adam's step size, 1/sqrt(1 - b2^t),
// the decoupled decay factor (descent_tensor::backend::Update::HYPER).

extern "C" __global__ void sgd_update(float *p, const float *g, float *buf, const float *h,
                                      i64 n, float momentum, float dampening, float wd,
                                      int nesterov, int maximize) {
    const float lr = h[0];
    const bool first = h[1] != 0.0f;
    GRID_STRIDE(i, n) {
        float gi = maximize ? -g[i] : g[i];
        float d = wd != 0.0f ? gi + wd * p[i] : gi;
        if (momentum == 0.0f) {
            p[i] = p[i] - lr * d;
            continue;
        }
        float b = first ? d : momentum * buf[i] + (1.0f - dampening) * d;
        buf[i] = b;
        float u = nesterov ? d + momentum * b : b;
        p[i] = p[i] - lr * u;
    }
}

__device__ __forceinline__ float lerp_torch(float a, float b, float w) {
    return fabsf(w) < 0.5f ? a + w * (b - a) : b - (b - a) * (1.0f - w);
}

extern "C" __global__ void adam_update(float *p, const float *g, float *m, float *v,
                                       float *vmax, const float *h, i64 n, float beta1,
                                       float beta2, float eps, float wd, int decoupled,
                                       int amsgrad, int maximize) {
    const float step_size = h[2], inv_bc2_sqrt = h[3], keep = h[4];
    const float l2 = decoupled ? 0.0f : wd;
    GRID_STRIDE(i, n) {
        float pi = p[i] * keep;
        float gi = (maximize ? -1.0f : 1.0f) * g[i] + l2 * pi;
        float mi = lerp_torch(m[i], gi, 1.0f - beta1);
        float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float second = vi;
        if (amsgrad) {
            second = fmaxf(vmax[i], vi);
            vmax[i] = second;
        }
        float den = sqrtf(second) * inv_bc2_sqrt + eps;
        p[i] = pi + -step_size * (mi / den);
    }
}

// The other rules, each as descent_tensor::backend::Update::apply writes it. `maximize` is
// +1 or -1 (the sign the gradient is multiplied by).

extern "C" __global__ void momentum_update(float *p, const float *g, float *v, const float *h,
                                           i64 n, float beta, float wd) {
    const float lr = h[0];
    GRID_STRIDE(i, n) {
        float gi = g[i] + wd * p[i];
        float vi = beta * v[i] + (1.0f - beta) * gi;
        v[i] = vi;
        p[i] = p[i] - lr * vi;
    }
}

extern "C" __global__ void adagrad_update(float *p, const float *g, float *s, const float *h,
                                          i64 n, float eps, float wd, float sign) {
    const float clr = h[2];
    GRID_STRIDE(i, n) {
        float gi = sign * g[i] + wd * p[i];
        float si = s[i] + gi * gi;
        p[i] = p[i] + -clr * (gi / (sqrtf(si) + eps));
        s[i] = si;
    }
}

// State: v, then the mean when centered, then the momentum buffer when momentum > 0 (null
// pointers for those not kept).
extern "C" __global__ void rmsprop_update(float *p, const float *g, float *v, float *mean,
                                          float *buf, const float *h, i64 n, float alpha,
                                          float eps, float wd, float momentum,
                                          int eps_inside_sqrt, float sign) {
    const float lr = h[0];
    const float w = 1.0f - alpha;
    GRID_STRIDE(i, n) {
        float gi = sign * g[i] + wd * p[i];
        float vi = alpha * v[i] + w * gi * gi;
        v[i] = vi;
        float var = vi;
        if (mean) {
            float mi = lerp_torch(mean[i], gi, w);
            mean[i] = mi;
            var = vi + (-mi) * mi;
        }
        float den = eps_inside_sqrt ? sqrtf(var + eps) : sqrtf(var) + eps;
        if (buf) {
            float b = momentum * buf[i] + gi / den;
            buf[i] = b;
            p[i] = p[i] + -lr * b;
        } else {
            p[i] = p[i] + -lr * (gi / den);
        }
    }
}

extern "C" __global__ void adadelta_update(float *p, const float *g, float *v, float *u,
                                           const float *h, i64 n, float rho, float eps,
                                           float wd, float sign) {
    const float lr = h[0];
    const float w = 1.0f - rho;
    GRID_STRIDE(i, n) {
        float gi = sign * g[i] + wd * p[i];
        float vi = rho * v[i] + w * gi * gi;
        float d = sqrtf(u[i] + eps) / sqrtf(vi + eps) * gi;
        u[i] = rho * u[i] + w * d * d;
        v[i] = vi;
        p[i] = p[i] + -lr * d;
    }
}

extern "C" __global__ void adamax_update(float *p, const float *g, float *m, float *u,
                                         const float *h, i64 n, float beta1, float beta2,
                                         float eps, float wd, float sign) {
    const float clr = h[2];
    GRID_STRIDE(i, n) {
        float gi = sign * g[i] + wd * p[i];
        float mi = lerp_torch(m[i], gi, 1.0f - beta1);
        float ui = fmaxf(u[i] * beta2, fabsf(gi) + eps);
        p[i] = p[i] + -clr * (mi / ui);
        m[i] = mi;
        u[i] = ui;
    }
}

extern "C" __global__ void lion_update(float *p, const float *g, float *m, const float *h,
                                       i64 n, float beta1, float beta2, float sign) {
    const float lr = h[0], keep = h[4];
    GRID_STRIDE(i, n) {
        float gi = sign * g[i];
        float d = m[i] * beta1 + gi * (1.0f - beta1);
        float s = (float)(d > 0.0f) - (float)(d < 0.0f);
        p[i] = p[i] * keep - lr * s;
        m[i] = m[i] * beta2 + gi * (1.0f - beta2);
    }
}
