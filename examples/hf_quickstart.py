"""A transformers Trainer logged to Curvewatch: one callback (the lines marked  # +cw).

A tiny randomly initialised BERT learns whether token 7 occurs in random sequences, so it runs
in seconds on a CPU and downloads nothing."""
import numpy as np
import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from curvewatch.transformers import CurvewatchCallback  # +cw


class Tokens(torch.utils.data.Dataset):
    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randint(1, 50, (n, 16), generator=g)
        self.y = (self.x == 7).any(1).long()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"input_ids": self.x[i], "labels": self.y[i]}


def accuracy(pred):
    return {"accuracy": float((np.argmax(pred.predictions, -1) == pred.label_ids).mean())}


model = BertForSequenceClassification(BertConfig(
    vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
    intermediate_size=32, max_position_embeddings=16, num_labels=2))
args = TrainingArguments(output_dir="hf-out", eval_strategy="epoch", logging_steps=2,
                         num_train_epochs=3, per_device_train_batch_size=16,
                         learning_rate=1e-3, save_strategy="no", report_to=[],
                         use_cpu=True, disable_tqdm=True)
trainer = Trainer(model=model, args=args, train_dataset=Tokens(128, 0),
                  eval_dataset=Tokens(128, 1), compute_metrics=accuracy,
                  callbacks=[CurvewatchCallback(name="hf-quickstart",  # +cw
                                                early_stop=("overfitting",))])  # +cw
trainer.train()
