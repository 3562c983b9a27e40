"""A plain PyTorch training loop, instrumented for Curvewatch (the lines marked  # +cw)."""
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from torch import nn

from curvewatch import Run, gradient_norms  # +cw

x, y = load_breast_cancer(return_X_y=True)
x = (x - x.mean(0)) / x.std(0)
xt, xv, yt, yv = (torch.tensor(a, dtype=torch.float32)
                  for a in train_test_split(x, y, random_state=0))
model = nn.Sequential(nn.Linear(30, 32), nn.ReLU(), nn.Linear(32, 1))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
loss_fn = nn.BCEWithLogitsLoss()

with Run.create("runs", name="own-loop", config={"lr": 1e-3, "hidden": 32},  # +cw
                epochs=20) as run:  # +cw
    for epoch in range(1, 21):
        model.train()
        for i in range(0, len(xt), 32):
            opt.zero_grad()
            loss = loss_fn(model(xt[i:i + 32]).squeeze(1), yt[i:i + 32])
            loss.backward()
            norms = gradient_norms(model)  # +cw: global and per-layer, after backward
            opt.step()
        model.eval()
        with torch.no_grad():
            val_loss = loss_fn(model(xv).squeeze(1), yv).item()
            val_acc = ((model(xv).squeeze(1) > 0) == (yv > 0.5)).float().mean().item()
        run.log_epoch(epoch, train_loss=loss.item(), val_loss=val_loss, val_acc=val_acc,  # +cw
                      grad_norm=norms.total, layers=norms.layers)  # +cw
