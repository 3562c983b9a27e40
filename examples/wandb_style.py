"""A PyTorch loop written for Weights & Biases (the lines marked  # +wandb), run with
Curvewatch instead: only the import differs. `import wandb` would send it to wandb.ai."""
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from torch import nn

import curvewatch as wandb  # +wandb (was: import wandb)

x, y = load_breast_cancer(return_X_y=True)
x = (x - x.mean(0)) / x.std(0)
xt, xv, yt, yv = (torch.tensor(a, dtype=torch.float32)
                  for a in train_test_split(x, y, random_state=0))
wandb.init(project="curvewatch-examples", name="wandb-style",  # +wandb
           config={"lr": 1e-3, "hidden": 32, "epochs": 20, "batch_size": 32})  # +wandb
cfg = wandb.config  # +wandb
model = nn.Sequential(nn.Linear(30, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, 1))
opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
loss_fn = nn.BCEWithLogitsLoss()
wandb.watch(model)  # +wandb: gradient norms per epoch (global and per layer)

for epoch in range(cfg.epochs):
    model.train()
    total = 0.0
    for i in range(0, len(xt), cfg.batch_size):
        opt.zero_grad()
        loss = loss_fn(model(xt[i:i + cfg.batch_size]).squeeze(1), yt[i:i + cfg.batch_size])
        loss.backward()
        opt.step()
        total += loss.item() * len(yt[i:i + cfg.batch_size])
        wandb.log({"batch_loss": loss.item()})  # +wandb: per step, to steps.jsonl
    model.eval()
    with torch.no_grad():
        logits = model(xv).squeeze(1)
        val_loss = loss_fn(logits, yv).item()
        val_acc = ((logits > 0) == (yv > 0.5)).float().mean().item()
    wandb.log({"epoch": epoch, "train/loss": total / len(yt), "val/loss": val_loss,  # +wandb
               "val/accuracy": val_acc})  # +wandb: one line per epoch
wandb.finish()  # +wandb
