"""descent's weights files and PyTorch, both ways.

  python tools/torch_checkpoint.py check WEIGHTS DATA_DIR
      Loads a safetensors file written by `descent train --save` into the seed's `Net`
      (safetensors.torch.load_file + load_state_dict(strict=True)) and prints the test accuracy
      PyTorch measures on MNIST (normalized 0.1307 / 0.3081).
  python tools/torch_checkpoint.py export OUT [SEED]
      Saves a freshly initialized seed `Net` (torch.manual_seed(SEED), default 0) as a
      safetensors file, for `descent train --init-from OUT`.

Needs: pip install torch safetensors numpy. CI does not run this.
"""
import gzip, os, sys
import numpy as np
import torch, torch.nn as nn
from safetensors.torch import load_file, save_file


class Net(nn.Module):
    # The seed's model, as ../shared/bench/torch_seed.py writes it.
    def __init__(self):
        super(Net, self).__init__()
        self.fc1 = nn.Linear(784, 512)
        self.fc2 = nn.Linear(512, 10)

    def forward(self, x):
        x = x.view(-1, 784)
        x = torch.relu(self.fc1(x))
        return self.fc2(x)


def idx(d, name, offset):
    p = os.path.join(d, name)
    raw = open(p, "rb").read() if os.path.exists(p) else gzip.open(p + ".gz").read()
    return np.frombuffer(raw, dtype=np.uint8, offset=offset)


def test_accuracy(net, d):
    x = torch.tensor(idx(d, "t10k-images-idx3-ubyte", 16).reshape(-1, 784)).float() / 255
    x = (x - 0.1307) / 0.3081
    y = torch.tensor(idx(d, "t10k-labels-idx1-ubyte", 8).astype(np.int64))
    with torch.no_grad():
        logits = net(x)
        loss = nn.functional.cross_entropy(logits, y).item()
        acc = (logits.argmax(1) == y).float().mean().item() * 100
    return loss, acc


if sys.argv[1] == "check":
    net = Net()
    net.load_state_dict(load_file(sys.argv[2]), strict=True)
    loss, acc = test_accuracy(net, sys.argv[3])
    print("torch %s: %s test_loss %.4f test_acc %.2f%%" % (torch.__version__, sys.argv[2], loss, acc))
elif sys.argv[1] == "export":
    torch.manual_seed(int(sys.argv[3]) if len(sys.argv) > 3 else 0)
    net = Net()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, sys.argv[2])
    print("torch %s: saved %s (fc1.weight[0,:3] = %s)" % (torch.__version__, sys.argv[2], net.fc1.weight[0, :3].tolist()))
else:
    sys.exit(__doc__)
