"""Task heads that transformers has no Auto class for.

``EntityPairClassifier`` classifies the relation between two marked entities from the encoder's
hidden states at the [CLS] token and at each entity's opening marker (the "entity start" pooling of
Baldini Soares et al. 2019 and Zhou & Chen 2021), not from [CLS] alone::

    model = EntityPairClassifier.from_pretrained("klue/roberta-small", num_labels=30)
    logits = model(input_ids=ids, attention_mask=mask, entity_positions=positions).logits  # positions: (batch, 2)
    model.save_pretrained("run")  # the encoder as transformers saves it + entity_head.safetensors

The saved directory is a normal encoder checkpoint (``AutoModel.from_pretrained`` loads the encoder;
its config carries id2label/label2id) plus the head's weights in ``entity_head.safetensors``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import AutoModel
from transformers.modeling_outputs import SequenceClassifierOutput

from .errors import KluekitError

HEAD_FILE = "entity_head.safetensors"


class EntityPairClassifier(nn.Module):
    """Encoder + MLP over the concatenated [CLS], subject-start and object-start hidden states."""

    def __init__(self, encoder, num_labels: int):
        super().__init__()
        self.encoder = encoder
        config = encoder.config
        hidden = config.hidden_size
        dropout = getattr(config, "classifier_dropout", None) or getattr(config, "hidden_dropout_prob", 0.1)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(3 * hidden, hidden), nn.Tanh(),
                                  nn.Dropout(dropout), nn.Linear(hidden, num_labels))
        for layer in self.head:
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, std=getattr(config, "initializer_range", 0.02))
                nn.init.zeros_(layer.bias)

    @property
    def config(self):
        return self.encoder.config

    @classmethod
    def from_pretrained(cls, name, **config_kwargs) -> "EntityPairClassifier":
        """The encoder of ``name`` (config overrides such as num_labels, id2label) and, when ``name`` is a
        directory this class saved, its trained head."""
        from safetensors.torch import load_file

        encoder = AutoModel.from_pretrained(name, **config_kwargs)
        model = cls(encoder, encoder.config.num_labels)
        head_file = Path(name) / HEAD_FILE
        if head_file.is_file():
            model.head.load_state_dict(load_file(str(head_file)))
        elif not config_kwargs and (Path(name) / "kluekit.json").is_file():  # a run must not get a random head
            raise KluekitError(f"--model: {name} has no {HEAD_FILE}: it was not trained with --pooling entity")
        return model

    def save_pretrained(self, directory, **kwargs) -> None:
        from safetensors.torch import save_file

        self.config.kluekit_head = type(self).__name__
        self.encoder.save_pretrained(directory, **kwargs)
        save_file({k: v.contiguous() for k, v in self.head.state_dict().items()}, str(Path(directory) / HEAD_FILE))

    def resize_token_embeddings(self, *args, **kwargs):
        return self.encoder.resize_token_embeddings(*args, **kwargs)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, entity_positions=None, **kwargs):
        if entity_positions is None:
            raise ValueError("EntityPairClassifier needs entity_positions: (batch, 2) token indices")
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**inputs).last_hidden_state
        rows = torch.arange(hidden.size(0), device=hidden.device)
        pooled = torch.cat([hidden[:, 0], hidden[rows, entity_positions[:, 0]], hidden[rows, entity_positions[:, 1]]], -1)
        return SequenceClassifierOutput(logits=self.head(pooled))
