"""PyTorch references for descent's layers and models.

Builds a PyTorch module from a descent model description (the JSON that `ModelSpec::to_json`
writes and weights files record, or a TOML model file), so that the same model exists on both
sides with the same parameter names, and records fixtures for descent's tests:

    python tools/nn_reference.py layers    # crates/descent-nn/tests/fixtures/torch_layers.json
    python tools/nn_reference.py cnn       # crates/descent-train/tests/fixtures/torch_cnn_adadelta.json
    python tools/nn_reference.py gpt       # crates/descent-train/tests/fixtures/torch_gpt_adamw.json
    python tools/nn_reference.py load WEIGHTS.safetensors [MNIST_DIR [OUT.safetensors]]

`load`: builds the model a descent weights file records, loads the file with strict=True, and
with MNIST_DIR prints the test accuracy PyTorch computes with it (descent eval prints the same);
with OUT, saves PyTorch's state_dict as a plain safetensors file, as a PyTorch user would (no
model recorded: `descent eval OUT --model NAME` reads it).

`layers`: for each case (a small model around one layer kind, odd shapes: stride 2, padding,
dilation 2, groups 2, non-square images, batch 1 and 3), PyTorch's initial parameters, an input,
labels, the training-mode cross-entropy loss, every parameter's gradient, the buffers after the
step (BatchNorm's running statistics) and the evaluation-mode output.

`cnn`: the `cnn` preset (PyTorch's examples/mnist Net) without dropout, trained 50 steps of
Adadelta (lr 1) on 64-image batches in order, from initial weights and inputs that a formula
gives on both sides (value k of the t-th parameter tensor: sin(1.3k + 0.7t + 0.1) / sqrt(fan_in);
input value i: 2 sin(0.1i + 0.3) cos(0.013i); label i: (7i + 3) mod 10), and
the final weights sampled every 61st value of the flat state (a 4.8 MB model stays a small
fixture).

Needs `pip install torch numpy safetensors`; descent's tests do not.
"""
import json
import math
import os
import sys
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def pair(v):
    return tuple(v) if isinstance(v, list) else (v, v)


class Chain(nn.Module):
    """Modules run in order under descent's names; a dotted name (`layer1.0`) nests
    containers, so that state_dict keys are the names descent gives (`layer1.0.conv1.weight`).
    A residual block's layers are registered under the block's name directly, so that two
    blocks of one name (a transformer block's attention and MLP halves, `blocks.0`) share it.
    With plain names it has the state_dict of an nn.Sequential of the same modules."""

    def __init__(self, mods):
        super().__init__()
        self.steps = []
        for name, m in mods:
            if isinstance(m, Residual):
                for child, cm in m.named_children():
                    self.register(name + "." + child, cm)
            else:
                self.register(name, m)
            self.steps.append(m)

    def register(self, name, m):
        parent = self
        parts = name.split(".")
        for p in parts[:-1]:
            if not hasattr(parent, p):
                parent.add_module(p, nn.Module())
            parent = getattr(parent, p)
        parent.add_module(parts[-1], m)

    def forward(self, x):
        for m in self.steps:
            x = m(x)
        return x


class Residual(Chain):
    """body(x) + shortcut(x); body layers are children of the block, the shortcut a chain
    named `shortcut` (the identity when empty), as descent names them."""

    def __init__(self, body, shortcut):
        super().__init__(body)
        self.shortcut = Chain(shortcut) if shortcut else None

    def forward(self, x):
        y = super().forward(x)
        return y + (self.shortcut(x) if self.shortcut is not None else x)


class Embedding(nn.Embedding):
    """nn.Embedding on ids that arrive as floats (descent holds model inputs as f32)."""

    def forward(self, x):
        return super().forward(x.long())


class PositionEmbedding(nn.Embedding):
    """x + wpe(arange(L)) on (N, L, D): GPT-2's learned positions, as descent's
    `position_embedding` (its state_dict key is `name.weight`)."""

    def forward(self, x):
        return x + self.weight[: x.shape[1]]


class CausalSelfAttention(nn.Module):
    """scaled_dot_product_attention(is_causal=True) over heads on (N, L, 3D) queries, keys and
    values concatenated (the output of one Linear(D, 3D), split as nanoGPT splits it)."""

    def __init__(self, heads):
        super().__init__()
        self.heads = heads

    def forward(self, x):
        b, t, d3 = x.shape
        d = d3 // 3
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2)
                   for z in x.split(d, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return y.transpose(1, 2).reshape(b, t, d)


class TiedLinear(nn.Module):
    """x @ src.weight.T (+ bias): a head that reads an embedding's table (not registered as a
    child, so that the state_dict holds the table once, under the embedding's name)."""

    def __init__(self, src, bias):
        super().__init__()
        object.__setattr__(self, "src", src)
        self.bias = nn.Parameter(torch.zeros(src.weight.shape[0])) if bias else None

    def forward(self, x):
        y = x @ self.src.weight.T
        return y + self.bias if self.bias is not None else y


def layer(spec, shape, built=None):
    """The PyTorch module for one descent layer entry on inputs of `shape` (per example);
    `built` maps the names of earlier layers to their modules (for `tie`)."""
    t = spec["type"]
    if t == "linear" and spec.get("tie"):
        return TiedLinear(built[spec["tie"]], spec.get("bias", True))
    if t == "linear":
        return nn.Linear(shape[-1], spec["out_features"], bias=spec.get("bias", True))
    if t == "embedding":
        return Embedding(spec["num_embeddings"], spec["embedding_dim"])
    if t == "position_embedding":
        return PositionEmbedding(spec["num_embeddings"], shape[-1])
    if t == "causal_self_attention":
        return CausalSelfAttention(spec["heads"])
    if t == "conv2d":
        return nn.Conv2d(shape[0], spec["out_channels"], pair(spec["kernel"]),
                         stride=pair(spec.get("stride", 1)), padding=pair(spec.get("padding", 0)),
                         dilation=pair(spec.get("dilation", 1)), groups=spec.get("groups", 1),
                         bias=spec.get("bias", True))
    if t in ("max_pool2d", "avg_pool2d"):
        k = pair(spec["kernel"])
        s = pair(spec["stride"]) if "stride" in spec else k
        p = pair(spec.get("padding", 0))
        return nn.MaxPool2d(k, s, p) if t == "max_pool2d" else nn.AvgPool2d(k, s, p)
    if t == "adaptive_avg_pool2d":
        return nn.AdaptiveAvgPool2d(pair(spec.get("output", 1)))
    if t in ("batch_norm1d", "batch_norm2d"):
        cls = nn.BatchNorm1d if t == "batch_norm1d" else nn.BatchNorm2d
        return cls(shape[0], eps=spec.get("eps", 1e-5), momentum=spec.get("momentum", 0.1),
                   affine=spec.get("affine", True))
    if t == "layer_norm":
        return nn.LayerNorm(spec.get("normalized_shape", [shape[-1]]), eps=spec.get("eps", 1e-5),
                            elementwise_affine=spec.get("affine", True))
    if t == "dropout":
        return nn.Dropout(spec.get("p", 0.5))
    if t == "dropout2d":
        return nn.Dropout2d(spec.get("p", 0.5))
    if t == "flatten":
        return nn.Flatten()
    if t == "relu":
        return nn.ReLU()
    if t == "leaky_relu":
        return nn.LeakyReLU(spec.get("negative_slope", 0.01))
    if t == "gelu":
        return nn.GELU(approximate=spec.get("approximate", "none"))
    if t == "silu":
        return nn.SiLU()
    if t == "tanh":
        return nn.Tanh()
    if t == "sigmoid":
        return nn.Sigmoid()
    if t == "log_softmax":
        return nn.LogSoftmax(dim=-1)
    if t == "residual":
        body, shape_b = chain(spec["body"], shape)
        short, _ = chain(spec.get("shortcut", []), shape)
        return Residual(body, short)
    raise ValueError("unknown layer type %r" % t)


def chain(specs, shape):
    """(name, module) pairs for a list of layer entries, and the output shape."""
    out = []
    built = {}
    for i, s in enumerate(specs):
        m = layer(s, shape, built)
        out.append((s.get("name", str(i)), m))
        built[s.get("name", str(i))] = m
        with torch.no_grad():
            shape = list(m.eval()(torch.zeros(2, *shape)).shape[1:])
    return out, shape


def build(spec):
    """A module whose state_dict names match descent's."""
    mods, _ = chain(spec["layers"], spec["input"])
    return Chain(mods)


def tensor_list(t):
    """Values with f32's precision (9 significant digits), to keep fixtures small."""
    return [float("%.9g" % v) for v in t.detach().double().flatten().tolist()]


def gpt_spec(vocab, block, width, heads, layers):
    """A GPT in descent's description (as its `gpt` preset builds it): token and position
    embeddings, pre-LayerNorm blocks of causal self-attention and a GELU MLP, a final
    LayerNorm and a head tied to the token embedding; the names of ../shared/bench/torch_gpt.py."""
    out = [{"type": "embedding", "name": "wte", "num_embeddings": vocab, "embedding_dim": width},
           {"type": "position_embedding", "name": "wpe", "num_embeddings": block}]
    for i in range(layers):
        out.append({"type": "residual", "name": "blocks.%d" % i, "body": [
            {"type": "layer_norm", "name": "ln1"},
            {"type": "linear", "name": "qkv", "out_features": 3 * width},
            {"type": "causal_self_attention", "heads": heads},
            {"type": "linear", "name": "proj", "out_features": width}]})
        out.append({"type": "residual", "name": "blocks.%d" % i, "body": [
            {"type": "layer_norm", "name": "ln2"},
            {"type": "linear", "name": "fc", "out_features": 4 * width},
            {"type": "gelu"},
            {"type": "linear", "name": "fc_proj", "out_features": width}]})
    out += [{"type": "layer_norm", "name": "ln_f"},
            {"type": "linear", "name": "head", "out_features": vocab, "bias": False, "tie": "wte"}]
    return {"input": [block], "layers": out}


LAYER_CASES = [
    ("linear_relu", {"input": [5], "layers": [
        {"type": "linear", "name": "fc1", "out_features": 7}, {"type": "relu"},
        {"type": "linear", "name": "fc2", "out_features": 4, "bias": False}]}, 3),
    ("conv_stride_padding", {"input": [2, 7, 6], "layers": [
        {"type": "conv2d", "name": "c1", "out_channels": 4, "kernel": 3, "stride": 2, "padding": 1},
        {"type": "relu"}, {"type": "flatten"},
        {"type": "linear", "name": "fc", "out_features": 3}]}, 3),
    ("conv_dilation_groups", {"input": [4, 8, 7], "layers": [
        {"type": "conv2d", "name": "c1", "out_channels": 6, "kernel": [3, 2], "dilation": 2,
         "groups": 2, "padding": [1, 0]},
        {"type": "tanh"},
        {"type": "conv2d", "name": "c2", "out_channels": 2, "kernel": 1, "bias": False},
        {"type": "flatten"}, {"type": "linear", "name": "fc", "out_features": 3}]}, 1),
    ("pooling", {"input": [2, 9, 7], "layers": [
        {"type": "conv2d", "name": "c", "out_channels": 3, "kernel": 3, "padding": 1},
        {"type": "max_pool2d", "kernel": 3, "stride": 2, "padding": 1},
        {"type": "avg_pool2d", "kernel": 2, "stride": 1, "padding": 1},
        {"type": "adaptive_avg_pool2d", "output": [2, 3]},
        {"type": "flatten"}, {"type": "linear", "name": "fc", "out_features": 4}]}, 3),
    ("batchnorm2d", {"input": [3, 5, 4], "layers": [
        {"type": "conv2d", "name": "c", "out_channels": 4, "kernel": 3},
        {"type": "batch_norm2d", "name": "bn", "momentum": 0.2},
        {"type": "relu"}, {"type": "flatten"},
        {"type": "linear", "name": "fc", "out_features": 3}]}, 3),
    ("batchnorm1d_layernorm_activations", {"input": [6], "layers": [
        {"type": "linear", "name": "fc1", "out_features": 8},
        {"type": "batch_norm1d", "name": "bn"},
        {"type": "gelu"},
        {"type": "linear", "name": "fc2", "out_features": 8},
        {"type": "layer_norm", "name": "norm"},
        {"type": "silu"},
        {"type": "linear", "name": "fc3", "out_features": 8},
        {"type": "gelu", "approximate": "tanh"},
        {"type": "leaky_relu", "negative_slope": 0.1},
        {"type": "sigmoid"},
        {"type": "linear", "name": "fc4", "out_features": 3},
        {"type": "log_softmax"}]}, 3),
    ("residual", {"input": [2, 6, 5], "layers": [
        {"type": "conv2d", "name": "stem", "out_channels": 3, "kernel": 3, "padding": 1},
        {"type": "relu"},
        {"type": "residual", "name": "block1", "body": [
            {"type": "conv2d", "name": "conv1", "out_channels": 3, "kernel": 3, "padding": 1},
            {"type": "relu"},
            {"type": "conv2d", "name": "conv2", "out_channels": 3, "kernel": 3, "padding": 1}]},
        {"type": "residual", "name": "block2", "body": [
            {"type": "conv2d", "name": "conv1", "out_channels": 4, "kernel": 3, "padding": 1,
             "stride": 2, "bias": False},
            {"type": "batch_norm2d", "name": "bn1"}], "shortcut": [
            {"type": "conv2d", "out_channels": 4, "kernel": 1, "stride": 2, "bias": False},
            {"type": "batch_norm2d"}]},
        {"type": "relu"},
        {"type": "adaptive_avg_pool2d"}, {"type": "flatten"},
        {"type": "linear", "name": "fc", "out_features": 3}]}, 3),
    ("gpt", gpt_spec(vocab=11, block=7, width=12, heads=3, layers=2), 3),
]


def layers_fixture():
    cases = []
    for i, (name, spec, batch) in enumerate(LAYER_CASES):
        torch.manual_seed(100 + i)
        model = build(spec)
        state = OrderedDict((k, v.clone()) for k, v in model.state_dict().items())
        first = spec["layers"][0]
        if first["type"] == "embedding":
            x = torch.randint(0, first["num_embeddings"], (batch, *spec["input"])).float()
        else:
            x = torch.randn(batch, *spec["input"])
        model.train()
        out = model(x)
        classes = out.shape[-1]
        y = torch.randint(0, classes, out.shape[:-1])
        loss = F.cross_entropy(out.reshape(-1, classes), y.reshape(-1))
        loss.backward()
        after = model.state_dict()
        model.eval()
        with torch.no_grad():
            eval_out = model(x)
        cases.append({
            "name": name,
            "model": spec,
            "batch": batch,
            "x": tensor_list(x),
            "labels": [int(v) for v in y.flatten()],
            "params": {k: tensor_list(v) for k, v in state.items()},
            "loss": loss.item(),
            "output": tensor_list(out),
            "grads": {k: tensor_list(p.grad) for k, p in model.named_parameters()},
            "buffers_after": {k: tensor_list(v) for k, v in after.items()
                              if k not in dict(model.named_parameters())},
            "eval_output": tensor_list(eval_out),
        })
    path = os.path.join(ROOT, "crates/descent-nn/tests/fixtures/torch_layers.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"torch": torch.__version__, "cases": cases}, f)
    print("wrote", path)


def cnn_fixture(steps=50, batch=64):
    spec = {"input": [1, 28, 28], "layers": [
        {"type": "conv2d", "name": "conv1", "out_channels": 32, "kernel": 3}, {"type": "relu"},
        {"type": "conv2d", "name": "conv2", "out_channels": 64, "kernel": 3}, {"type": "relu"},
        {"type": "max_pool2d", "kernel": 2}, {"type": "dropout", "p": 0.0}, {"type": "flatten"},
        {"type": "linear", "name": "fc1", "out_features": 128}, {"type": "relu"},
        {"type": "dropout", "p": 0.0},
        {"type": "linear", "name": "fc2", "out_features": 10}]}
    torch.set_num_threads(2)
    model = build(spec)
    fan = {"conv1": 9, "conv2": 32 * 9, "fc1": 9216, "fc2": 128}
    with torch.no_grad():
        for t, (name, p) in enumerate(model.named_parameters()):
            f = fan[name.split(".")[0]]
            vals = np.array([math.sin(1.3 * k + 0.7 * t + 0.1) / math.sqrt(f)
                             for k in range(p.numel())], dtype=np.float64).astype(np.float32)
            p.copy_(torch.from_numpy(vals).view(p.shape))
    opt = torch.optim.Adadelta(model.parameters(), lr=1.0)
    n = steps * batch * 784
    xs = (np.sin(0.1 * np.arange(n) + 0.3) * np.cos(0.013 * np.arange(n)) * 2.0).astype(np.float32)
    xs = torch.from_numpy(xs).view(steps, batch, 1, 28, 28)
    ys = torch.tensor([(i * 7 + 3) % 10 for i in range(steps * batch)]).view(steps, batch)
    losses = []
    model.train()
    for s in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(model(xs[s]), ys[s])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    flat = torch.cat([p.detach().flatten() for _, p in model.named_parameters()])
    stride = 61
    path = os.path.join(ROOT, "crates/descent-train/tests/fixtures/torch_cnn_adadelta.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"torch": torch.__version__, "model": spec, "steps": steps, "batch": batch,
                   "losses": losses, "stride": stride, "len": flat.numel(),
                   "weights": tensor_list(flat[::stride])}, f)
    print("wrote", path, "final loss", losses[-1])


def gpt_fixture(steps=20, batch=8):
    """A small GPT (the `gpt` preset's layout: vocab 13, block 10, width 16, 2 heads, 2 blocks)
    trained 20 AdamW steps from PyTorch's own initialization (seed 0), as torch_gpt.py trains
    (betas 0.9/0.99, weight decay 0.1 on tensors of 2 or more dimensions, clipping at norm 1;
    a constant lr 3e-3), on windows of a token stream a formula gives (token i:
    (7i + 3 (i // 5)) mod 13; step s, window w starts at (37 s + 11 w) mod 400)."""
    vocab, block, width, heads, layers = 13, 10, 16, 2, 2
    spec = gpt_spec(vocab=vocab, block=block, width=width, heads=heads, layers=layers)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = build(spec)
    init = OrderedDict((k, v.clone()) for k, v in model.state_dict().items())
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": rest, "weight_decay": 0.0}], lr=3e-3, betas=(0.9, 0.99))
    tokens = torch.tensor([(7 * i + 3 * (i // 5)) % vocab for i in range(500)])
    losses = []
    model.train()
    for s in range(steps):
        starts = [(37 * s + 11 * w) % 400 for w in range(batch)]
        x = torch.stack([tokens[a:a + block] for a in starts]).float()
        y = torch.stack([tokens[a + 1:a + block + 1] for a in starts])
        opt.zero_grad()
        loss = F.cross_entropy(model(x).reshape(-1, vocab), y.reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    flat = torch.cat([p.detach().flatten() for _, p in model.named_parameters()])
    path = os.path.join(ROOT, "crates/descent-train/tests/fixtures/torch_gpt_adamw.json")
    with open(path, "w") as f:
        json.dump({"torch": torch.__version__, "model": spec, "steps": steps, "batch": batch,
                   "init": {k: tensor_list(v) for k, v in init.items()},
                   "losses": losses, "len": flat.numel(), "weights": tensor_list(flat)}, f)
    print("wrote", path, "final loss", losses[-1])


def load(path, data_dir=None, out=None):
    """Loads descent's weights file into the model it records, strict=True."""
    import gzip
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    with safe_open(path, "pt") as f:
        meta = f.metadata()
    spec = json.loads(meta["model"])
    model = build(spec)
    model.load_state_dict(load_file(path), strict=True)
    print("loaded %s into PyTorch (strict=True): %d tensors" % (path, len(model.state_dict())))
    if data_dir:
        def idx(name, off):
            p = os.path.join(data_dir, name)
            raw = open(p, "rb").read() if os.path.exists(p) else gzip.open(p + ".gz").read()
            return np.frombuffer(raw, dtype=np.uint8, offset=off)
        x = torch.tensor(idx("t10k-images-idx3-ubyte", 16).astype(np.float32) / 255)
        x = ((x - 0.1307) / 0.3081).view(-1, *spec["input"])
        y = torch.tensor(idx("t10k-labels-idx1-ubyte", 8).astype(np.int64))
        model.eval()
        with torch.no_grad():
            out_ = torch.cat([model(x[i:i + 1000]) for i in range(0, len(y), 1000)])
        loss = F.cross_entropy(out_, y).item()
        acc = (out_.argmax(1) == y).float().mean().item() * 100
        print("PyTorch on the test set: test_loss %.4f test_acc %.2f%%" % (loss, acc))
    if out:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out)
        print("saved PyTorch's state_dict to", out)
    return model


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "layers"
    if what == "layers":
        layers_fixture()
    elif what == "cnn":
        cnn_fixture()
    elif what == "gpt":
        gpt_fixture()
    elif what == "load":
        load(*sys.argv[2:5])
    else:
        sys.exit(__doc__)
