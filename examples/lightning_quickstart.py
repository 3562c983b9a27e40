"""A Lightning module logged to Curvewatch: one logger argument (the lines marked  # +cw)."""
import lightning.pytorch as L
import torch
from sklearn.datasets import load_breast_cancer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, random_split

from curvewatch.lightning import CurvewatchLogger, DiagnosisEarlyStopping  # +cw


class Classifier(L.LightningModule):
    def __init__(self, lr: float = 1e-3, hidden: int = 32):
        super().__init__()
        self.save_hyperparameters()  # the run's config
        self.net = nn.Sequential(nn.Linear(30, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.binary_cross_entropy_with_logits(self.net(x).squeeze(1), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x).squeeze(1)
        self.log("val_loss", nn.functional.binary_cross_entropy_with_logits(logits, y))
        self.log("val_acc", ((logits > 0) == (y > 0.5)).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


x, y = load_breast_cancer(return_X_y=True)
x = (x - x.mean(0)) / x.std(0)
data = TensorDataset(torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32))
train, val = random_split(data, [0.8, 0.2], generator=torch.Generator().manual_seed(0))
trainer = L.Trainer(max_epochs=10, enable_progress_bar=False,
                    logger=CurvewatchLogger(name="lightning-quickstart"),  # +cw
                    callbacks=[DiagnosisEarlyStopping()])  # +cw: optional, stops on findings
trainer.fit(Classifier(), DataLoader(train, batch_size=32, shuffle=True),
            DataLoader(val, batch_size=128))
