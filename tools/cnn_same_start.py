"""descent's CNN against PyTorch's from the same start: is a gap in accuracy the code or the
rounding?

  python tools/cnn_same_start.py DESCENT_BINARY DATA_DIR [STEPS] [SEED]

Builds the examples/mnist Net of ../shared/bench/torch_cnn.py with torch.manual_seed(SEED)
(default 1), saves its weights as safetensors, and trains it for STEPS steps (default 938,
one epoch) with Adadelta lr 1, batch 64, in file order and with both dropouts at p = 0, so
that nothing random is left: in descent on 2 threads and on 1 (`--init-from`, `--no-shuffle`, `--model-set
5.p=0 --model-set 9.p=0`) and in PyTorch, on 2 threads and on 1. Prints the loss of
every 20th step from descent's 2-thread run and both PyTorch runs, how far descent is from PyTorch and how far PyTorch on
1 thread is from PyTorch on 2, then each run's test accuracy. When descent's distance grows
like PyTorch's distance from itself, the two compute the same training and what is left is
how a different order of float additions grows over the steps.

DATA_DIR holds the four IDX files (raw) of a 28x28 10-class set (MNIST or Fashion-MNIST),
normalized with (0.1307, 0.3081) as torch_cnn.py does. Needs: pip install torch safetensors
numpy. CI does not run this.
"""
import os, re, subprocess, sys, tempfile
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F
from safetensors.torch import save_file


class Net(nn.Module):
    # torch_cnn.py's Net without its dropouts (p = 0 is the identity in both programs).
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1); self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.fc1 = nn.Linear(9216, 128); self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


def idx(d, name, off):
    return np.frombuffer(open(os.path.join(d, name), 'rb').read(), dtype=np.uint8, offset=off)


def images(d, name):
    a = idx(d, name, 16).reshape(-1, 1, 28, 28)
    return (torch.tensor(a).float() / 255 - 0.1307) / 0.3081


def torch_run(init, X, Y, Xt, Yt, steps, threads):
    torch.set_num_threads(threads)
    m = Net(); m.load_state_dict(init)
    opt = torch.optim.Adadelta(m.parameters(), lr=1.0)
    losses = []
    for i in range(0, steps * 64, 64):
        b = slice(i % X.shape[0], i % X.shape[0] + 64)
        opt.zero_grad(); loss = F.cross_entropy(m(X[b]), Y[b]); loss.backward(); opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        right = sum((m(Xt[i:i + 1000]).argmax(1) == Yt[i:i + 1000]).sum().item()
                    for i in range(0, len(Yt), 1000))
    return losses, right / len(Yt) * 100


def descent_run(binary, data, init_file, steps, threads):
    cmd = [binary, 'train', '--data', 'idx:' + data, '--model', 'cnn', '--init-from', init_file,
           '--model-set', '5.p=0', '--model-set', '9.p=0', '--no-shuffle',
           '--optimizer', 'adadelta', '--lr', '1', '--max-steps', str(steps), '--epochs', '100',
           '--log-every', '1', '--normalize', '0.1307,0.3081', '--threads', str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    losses = [float(m.group(1)) for m in re.finditer(r'^\[\s*\d+,\s*\d+\] loss: ([0-9.]+)', out, re.M)]
    acc = re.findall(r'test_acc ([0-9.]+)%', out)[-1]
    return losses, float(acc)


def main():
    binary, data = sys.argv[1], sys.argv[2]
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 938
    seed = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    torch.manual_seed(seed)
    init = {k: v.contiguous() for k, v in Net().state_dict().items()}
    X, Y = images(data, 'train-images-idx3-ubyte'), torch.tensor(idx(data, 'train-labels-idx1-ubyte', 8).astype(np.int64))
    Xt, Yt = images(data, 't10k-images-idx3-ubyte'), torch.tensor(idx(data, 't10k-labels-idx1-ubyte', 8).astype(np.int64))
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.join(tmp, 'init.safetensors')
        save_file(init, init_file)
        d, d_acc = descent_run(binary, data, init_file, steps, 2)
        _, d1_acc = descent_run(binary, data, init_file, steps, 1)
    t2, t2_acc = torch_run(init, X, Y, Xt, Yt, steps, 2)
    t1, t1_acc = torch_run(init, X, Y, Xt, Yt, steps, 1)
    print('step  descent  torch-2t  torch-1t  |descent-torch2t|  |torch1t-torch2t|')
    for s in [1, 5, 10] + list(range(20, steps + 1, 20)):
        if s <= len(d):
            print('%4d  %7.3f  %8.4f  %8.4f  %17.4f  %17.4f' % (
                s, d[s - 1], t2[s - 1], t1[s - 1], abs(d[s - 1] - t2[s - 1]), abs(t1[s - 1] - t2[s - 1])))
    # descent prints losses to 3 decimals: 0.0005 of every distance is that rounding.
    print('mean |descent-torch2t| %.4f, mean |torch1t-torch2t| %.4f over %d steps' % (
        np.mean(np.abs(np.array(d) - np.array(t2))), np.mean(np.abs(np.array(t1) - np.array(t2))), steps))
    print('test accuracy: descent %.2f%% (2 threads), %.2f%% (1 thread); torch %.2f%% (2 threads), %.2f%% (1 thread)' % (
        d_acc, d1_acc, t2_acc, t1_acc))


if __name__ == '__main__':
    main()
