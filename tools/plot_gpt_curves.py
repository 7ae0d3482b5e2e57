"""Validation loss of descent's GPT run against torch_gpt.py's, step by step, in one chart.

Usage: python tools/plot_gpt_curves.py RUN_DIR TORCH_LOG OUT.png
RUN_DIR: a `descent train --model gpt --run-dir` directory (its metrics.jsonl step_eval lines);
TORCH_LOG: the output of ../shared/bench/torch_gpt.py ('step N train_loss X val_loss Y' lines).
Prints both curves as a table, then the difference at every shared step. Needs matplotlib.
"""
import json, re, sys

run, log, out = sys.argv[1:4]
ours = {}
for line in open(f'{run}/metrics.jsonl'):
    r = json.loads(line)
    if r.get('type') == 'step_eval':
        ours[r['step']] = r['eval_loss']
theirs = {int(m[1]): float(m[2]) for m in re.finditer(r'^step (\d+) train_loss \S+ val_loss (\S+)', open(log).read(), re.M)}
print('step  descent  pytorch  difference')
for s in sorted(set(ours) & set(theirs)):
    print(f'{s:5d}  {ours[s]:.4f}   {theirs[s]:.4f}   {ours[s] - theirs[s]:+.4f}')
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
for name, d in (('descent', ours), ('PyTorch (torch_gpt.py)', theirs)):
    xs = sorted(d)
    ax.plot(xs, [d[x] for x in xs], marker='o', markersize=3, label=name)
ax.set_xlabel('step'); ax.set_ylabel('validation loss (nats per character)')
ax.set_title('GPT preset on fortunes: the same recipe, 2000 steps')
ax.set_ylim(1.9, 3.4); ax.grid(alpha=0.3); ax.legend()
fig.tight_layout(); fig.savefig(out)
