"""PyTorch side of the CSV comparison in docs/data.md: the model, optimizer and data handling
that `descent train --data csv:TRAIN --test-data TEST --hidden H --optimizer adam --lr LR
--schedule cosine --batch-size 64 --epochs E` uses: each feature standardized with the training rows' mean and
population std, Linear(F, H) ReLU Linear(H, K), Adam with the rate annealed to 0 along a
cosine over every step of the run, shuffled batches of 64 (the last one
kept), cross-entropy on classes (sorted label names) or MSE on a numeric target.

Usage: python tools/table_vs_torch.py TRAIN.csv TEST.csv classify|regress EPOCHS [SEED] [H] [LR]
Prints the final test accuracy (classify) or test MSE (regress).
"""
import csv, sys
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F

train_path, test_path, task, epochs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
seed = int(sys.argv[5]) if len(sys.argv) > 5 else 0
hidden = int(sys.argv[6]) if len(sys.argv) > 6 else 64
lr = float(sys.argv[7]) if len(sys.argv) > 7 else 1e-3
torch.manual_seed(seed)
torch.set_num_threads(1)


def read(path):
    with open(path) as f:
        rows = list(csv.reader(f))
    return np.array([[float(v) for v in r[:-1]] for r in rows[1:]], np.float32), [r[-1] for r in rows[1:]]


x, t = read(train_path)
xt, tt = read(test_path)
mean, std = x.mean(0), x.std(0)
x, xt = (x - mean) / std, (xt - mean) / std
if task == 'classify':
    labels = sorted(set(t))
    y = torch.tensor([labels.index(v) for v in t])
    yt = torch.tensor([labels.index(v) for v in tt])
    k = len(labels)
else:
    y = torch.tensor(np.array(t, np.float32)).unsqueeze(1)
    yt = torch.tensor(np.array(tt, np.float32)).unsqueeze(1)
    k = 1
x, xt = torch.tensor(x), torch.tensor(xt)
model = nn.Sequential(nn.Linear(x.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, k))
opt = torch.optim.Adam(model.parameters(), lr=lr)
steps = epochs * ((len(x) + 63) // 64)
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
loss_fn = F.cross_entropy if task == 'classify' else F.mse_loss
for ep in range(epochs):
    perm = torch.randperm(len(x))
    for i in range(0, len(x), 64):
        b = perm[i:i + 64]
        opt.zero_grad()
        loss_fn(model(x[b]), y[b]).backward()
        opt.step()
        sched.step()
with torch.no_grad():
    out = model(xt)
    if task == 'classify':
        print('test_acc %.2f' % (100.0 * (out.argmax(1) == yt).float().mean().item()))
    else:
        print('test_mse %.6f' % F.mse_loss(out, yt).item())
