"""The model card: the README.md that ``MultiTaskSentenceTransformer.save`` writes beside the model.

It follows the Hugging Face Hub's model-card conventions: YAML metadata between ``---`` lines (the library,
tags, the base model, the pipeline, the language and, when test scores are known, a ``model-index`` the Hub
shows as evaluation results), then Markdown: the tasks and their labels, the training data and recipe, the
test scores, and how to load the model and predict. Strings in the metadata are written as JSON strings,
which YAML reads as they are, so no label or file name can break the header.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from pathlib import Path

HUB_NAME = re.compile(r"[\w.-]+(/[\w.-]+)?")  # "bert-base-uncased", "sentence-transformers/all-MiniLM-L6-v2"


def base_model(backbone: str) -> str | None:
    """The Hub name the model was fine-tuned from; None for a local folder (its path stays off the card)."""
    return backbone if HUB_NAME.fullmatch(backbone) and not Path(backbone).exists() else None


def model_card(name: str, config: Mapping, test_scores: Mapping[str, Mapping] | None = None,
               training: Mapping[str, object] | None = None, language: str = "en") -> str:
    """The card of a model saved in a folder called ``name``, with its ``config()``.

    ``test_scores``: per task, ``accuracy``, ``macro_f1`` and ``n`` (as in the ``test`` part of the
    command's metrics.json); ``training``: the data and the recipe, one value per setting (``data`` also
    names the data set of the test scores).
    """
    scored = {task: s for task, s in (test_scores or {}).items() if s.get("n") and s.get("accuracy") is not None}
    return "\n".join(["---", *_metadata(name, config, scored, training, language), "---", "",
                      *_body(name, config, scored, training), ""])


def _metadata(name: str, config: Mapping, scored: Mapping[str, Mapping], training: Mapping[str, object] | None,
              language: str) -> list[str]:
    base = base_model(config["backbone"])
    lines = ["library_name: helpers", "language:", f"- {json.dumps(language)}", "tags:", "- text-classification",
             "- multi-task", "- sentence-embeddings", *(["base_model: " + json.dumps(base)] if base else []),
             "pipeline_tag: text-classification"]
    if scored:
        dataset = json.dumps(str((training or {}).get("data", "test split")))
        lines += ["model-index:", f"- name: {json.dumps(name)}", "  results:"]
        for task, score in scored.items():
            lines += ["  - task:", "      type: text-classification", f"      name: {json.dumps(task)}",
                      "    dataset:", f"      name: {dataset}", f"      type: {dataset}", "      split: test",
                      "    metrics:", "    - type: accuracy", f"      value: {score['accuracy']:.4f}",
                      "      name: accuracy", "    - type: f1", f"      value: {score['macro_f1']:.4f}",
                      "      name: macro-F1", "      args:", "        average: macro"]
    return lines


def _body(name: str, config: Mapping, scored: Mapping[str, Mapping], training: Mapping[str, object] | None
          ) -> list[str]:
    base = base_model(config["backbone"])
    source = f"`{base}`" if base else f"a local model folder, `{Path(config['backbone']).name}`"
    head = ("a linear layer" if config["hidden_dim"] is None
            else f"an MLP with one hidden layer of {config['hidden_dim']} units")
    lines = [f"# {name}", "",
             f"A multi-task sentence classifier: one shared sentence encoder, fine-tuned from {source} "
             f"({config['pooling']} pooling, input truncated at {config['max_seq_length']} tokens), and one "
             f"classification head per task ({head}). Saved by `helpers.MultiTaskSentenceTransformer.save`.", "",
             "## Tasks", "", "| task | labels |", "|---|---|",
             *(f"| {task} | {_cell(', '.join(labels))} |" for task, labels in config["tasks"].items()), ""]
    if training:
        lines += ["## Training", "", "| setting | value |", "|---|---|",
                  *(f"| {_cell(setting)} | {_cell(value)} |" for setting, value in training.items()), ""]
    if scored:
        lines += ["## Test scores", "", "| task | accuracy | macro-F1 | sentences |", "|---|---|---|---|",
                  *(f"| {task} | {s['accuracy']:.3f} | {s['macro_f1']:.3f} | {s['n']} |" for task, s in scored.items()),
                  ""]
    lines += ["## Use", "", "```python", "from helpers import MultiTaskSentenceTransformer", "",
              f"model = MultiTaskSentenceTransformer.load({json.dumps(name)})",
              'model.predict(["A sentence to label."])  # text, then each task\'s label and <task>_prob', "```", "",
              "From the command line, labels for each row of a CSV with a `text` column:", "", "```bash",
              f"python -m helpers predict --model {shlex.quote(name)} --data new.csv --out predictions.csv", "```", "",
              "The fine-tuned encoder alone, in the sentence-transformers format (for search or clustering):", "",
              "```python", f"model.encoder.save({json.dumps(name + '-encoder')})", "```"]
    return lines


def _cell(value: object) -> str:
    """``value`` as one Markdown table cell: a ``|`` would end the cell, a line break the row."""
    return " ".join(str(value).split()).replace("|", "\\|")
