"""The peer a text user would otherwise run: Hugging Face `Trainer` (with PEFT for LoRA) on all-MiniLM-L6-v2.

Written the way the Hugging Face course writes it, with nothing taken from tunelab but the path of the
packaged weights: tokenise the training set up front, pad per batch with `DataCollatorWithPadding`,
`Trainer` with evaluation every epoch. The model is `BertModel` with the head all-MiniLM-L6-v2 was trained
for (mean pooling over real tokens, dropout, linear), the same head shape tunelab puts on it, so the two
sides train the same network. Per strategy:

- full: everything trains at one learning rate, 1e-4 (tunelab trains the backbone at 1e-4 and its new head
  at 1e-3; `Trainer` has one learning rate, and 1e-4 is the usual choice for a BERT);
- none: `requires_grad=False` on the encoder, the classifier trains at 1e-3 (`Trainer` still runs the
  whole encoder forward on every batch of every epoch);
- lora: PEFT `LoraConfig(r=8, lora_alpha=16)` on every Linear of the encoder layers (query, key, value and
  the three dense layers), classifier in `modules_to_save`, lr 1e-3 (tunelab's lora defaults);
- adapter: PEFT has no bottleneck adapter, and AdapterHub's `adapters` (latest release 1.3.0) is built for
  transformers 4.57 while we run 5.x, so a hand-made Houlsby adapter (down 384->24, GELU, up 24->384
  zero-initialised, residual) after each layer's attention-output and FFN-output dense, encoder frozen, lr 1e-3.

Warmup 10% + cosine, weight decay 0.01, gradient clipping at 1.0, the optimizer `Trainer` picks by default.
The model keeps its checkpoint's dropout everywhere, 0.1 on attention weights too, as `Trainer` users run it;
tunelab's default there is 0 (`--attention-dropout`, measured in attention_dropout.py).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

LR = {"full": 1e-4, "none": 1e-3, "lora": 1e-3, "adapter": 1e-3}


class MeanPoolClassifier(nn.Module):
    """BertModel, mean pooling over real tokens, dropout, linear; returns what `Trainer` expects."""

    def __init__(self, folder: Path, num_labels: int):
        super().__init__()
        from transformers import BertModel

        self.bert = BertModel.from_pretrained(folder, add_pooling_layer=False)
        self.dropout = nn.Dropout(self.bert.config.hidden_dropout_prob)
        self.classifier = nn.Linear(self.bert.config.hidden_size, num_labels)

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        hidden = self.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        logits = self.classifier(self.dropout((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)))
        return {"loss": None if labels is None else F.cross_entropy(logits, labels), "logits": logits}


def mean_pool_sequence_classifier() -> type:
    """`MeanPoolClassifier` as a `transformers` model (a `BertPreTrainedModel`), so `pipeline` can serve it.

    transformers has no sequence classifier that mean-pools a BERT (`BertForSequenceClassification` classifies
    the [CLS] pooler output), so a model fine-tuned with all-MiniLM-L6-v2's own pooling needs this small class
    to load with `from_pretrained` and run in `pipeline("text-classification", model=...)`. The class is made
    on first use, so importing this file does not import transformers (the Trainer side times from after its
    imports, and predict_peers.py times a cold start that includes them).
    """
    from transformers import BertModel, BertPreTrainedModel
    from transformers.modeling_outputs import SequenceClassifierOutput

    class MeanPoolBertForSequenceClassification(BertPreTrainedModel):
        def __init__(self, config):
            super().__init__(config)
            self.bert = BertModel(config, add_pooling_layer=False)
            self.dropout = nn.Dropout(config.hidden_dropout_prob)
            self.classifier = nn.Linear(config.hidden_size, config.num_labels)
            self.post_init()

        def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
            hidden = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            logits = self.classifier(self.dropout((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)))
            loss = None if labels is None else F.cross_entropy(logits, labels)
            return SequenceClassifierOutput(loss=loss, logits=logits)

    return MeanPoolBertForSequenceClassification


class Houlsby(nn.Module):
    """x + up(gelu(down(x))), up zero-initialised: the adapter of Houlsby et al. (2019)."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.down, self.up = nn.Linear(width, hidden), nn.Linear(hidden, width)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x):
        return x + self.up(F.gelu(self.down(x)))


def with_strategy(model: MeanPoolClassifier, strategy: str) -> nn.Module:
    if strategy == "full":
        return model
    model.bert.requires_grad_(False)
    if strategy == "lora":
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            r=8,
            lora_alpha=16,
            lora_dropout=0.0,
            target_modules=["query", "key", "value", "dense"],
            modules_to_save=["classifier"],
        )
        return get_peft_model(model, config)
    if strategy == "adapter":
        width = model.bert.config.hidden_size
        for layer in model.bert.encoder.layer:
            layer.attention.output.dense = nn.Sequential(layer.attention.output.dense, Houlsby(width, width // 16))
            layer.output.dense = nn.Sequential(layer.output.dense, Houlsby(width, width // 16))
    return model


def training_arguments(output_dir: str, epochs: int, batch_size: int, lr: float, seed: int):
    """The `TrainingArguments` of every `Trainer` side here: the course's choices plus what tunelab also does.

    Warmup 10% + cosine, weight decay 0.01 and clipping at 1.0 (tunelab's defaults), evaluation every epoch,
    no checkpoints, no logging or progress bars (their cost is not the loop's), the CPU, no loader workers.
    """
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=output_dir,
        num_train_epochs=epochs,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size,
        learning_rate=lr,
        weight_decay=0.01,
        warmup_steps=0.1,
        lr_scheduler_type="cosine",
        max_grad_norm=1.0,
        eval_strategy="epoch",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=seed,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


def read_tsv(path: Path) -> tuple[list[str], list[str]]:
    """Texts and label names of a `text<TAB>label` file with a header (split on the tab, as tunelab reads TSV)."""
    rows = [line.rstrip("\n").split("\t") for line in path.read_text().splitlines()[1:]]
    return [text for text, _ in rows], [label for _, label in rows]


def hf_trainer_run(
    strategy: str, train: Path, dev: Path, epochs: int, batch_size: int, seed: int, max_length: int = 128
) -> dict:
    """Train with `Trainer`; the same result fields as plain_loop.tunelab_run.

    Labels are class names, numbered in sorted order ("0" and "1" for SST-2 stay 0 and 1); texts are cut at
    `max_length` tokens, specials included, as tunelab's `max_length` cuts them."""
    from transformers import AutoTokenizer, DataCollatorWithPadding, Trainer, set_seed

    from tunelab.models.packaged import MINILM
    from tunelab.runs.memory import PeakMemory

    with PeakMemory() as memory, tempfile.TemporaryDirectory(prefix="bench-hf-") as tmp:
        started = time.perf_counter()
        set_seed(seed)
        folder = MINILM.verified_path().parent
        tokenizer = AutoTokenizer.from_pretrained(folder)

        classes = sorted(set(read_tsv(train)[1]))

        def tokenised(path: Path) -> list[dict]:
            texts, labels = read_tsv(path)
            encoded = tokenizer(texts, truncation=True, max_length=max_length)
            return [
                {**{k: v[i] for k, v in encoded.items()}, "labels": classes.index(labels[i])} for i in range(len(texts))
            ]

        train_set, dev_set = tokenised(train), tokenised(dev)
        model = with_strategy(MeanPoolClassifier(folder, len(classes)), strategy)
        args = training_arguments(tmp, epochs, batch_size, LR[strategy], seed)

        def accuracy(prediction) -> dict:
            return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}

        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=train_set,
            eval_dataset=dev_set,
            data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=accuracy,
        )
        loop_started = time.perf_counter()
        trainer.train()
        epoch_s = (time.perf_counter() - loop_started) / epochs
        total = time.perf_counter() - started
        best = max(entry["eval_accuracy"] for entry in trainer.state.log_history if "eval_accuracy" in entry)
    return {"epoch_s": epoch_s, "total_s": total, "accuracy": best, "peak_mb": memory.mb, "optimizer": str(args.optim)}


if __name__ == "__main__":  # a quick look: python hf_peer.py STRATEGY TRAIN.tsv DEV.tsv
    import sys

    torch.set_num_threads(2)
    print(hf_trainer_run(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), 1, 32, 0))
