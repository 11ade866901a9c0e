"""Evaluation datasets from JSONL, CSV and YAML files, every record validated up front.

- **JSONL**: one sample per line, ``{"id", "input", "target", "metadata", "checks"}``
  (only ``input`` is required; ``input`` may be a list of ``{"role", "content"}``).
- **CSV**: a header row; the columns ``id``, ``input`` and ``target``, every other column
  a metadata field.
- **YAML**: a list of samples as in JSONL, or promptfoo-style test cases: a ``prompt``
  with ``{{var}}`` placeholders and ``tests``, each with ``vars`` and ``assert``.

A bad record fails the whole load, before any model is called, with the file, the line
and the field. A sample without an ``id`` gets one from its content, so reordering or
inserting lines keeps the results of the others (a run resumes by id).

Example:
    ```python
    from aiorch.tasks.evaluation.datasets import load_dataset

    dataset = load_dataset("tests/data/eval/capitals.jsonl")
    print(len(dataset.samples), dataset.fingerprint[:12])
    ```
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import ConfigDict, Field, ValidationError

from aiorch.core.errors import ConfigurationError, validation_problems
from aiorch.core.models import AiorchModel
from aiorch.tasks.evaluation.checks import ScorerSet
from aiorch.tasks.evaluation.samples import Sample

SUFFIXES = {".jsonl": "jsonl", ".csv": "csv", ".yaml": "yaml", ".yml": "yaml"}
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class DatasetError(ConfigurationError):
    """A dataset file cannot be used; the message names the file, line and field."""


class Dataset(AiorchModel):
    """The validated samples of one file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="The file's name without its suffix.")
    source: str = Field(description="Where it was read from.")
    samples: list[Sample]
    fingerprint: str = Field(description="sha256 of the samples: changes with any of them.")


def load_dataset(path: str | Path, scorers: ScorerSet | None = None) -> Dataset:
    """Read and validate the dataset at ``path`` (``.jsonl``, ``.csv``, ``.yaml``).

    Every check must name a scorer of ``scorers`` (the built-in ones and those of the
    ``aiorch.scorers`` entry point by default) with options it accepts.

    Raises:
        DatasetError: the file is missing, of another kind, or a record is invalid.
    """
    source = Path(path)
    kind = SUFFIXES.get(source.suffix.lower())
    if kind is None:
        raise DatasetError(
            f"{source}: a dataset is a .jsonl, .csv or .yaml file; convert it or rename it"
        )
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"{source}: no such file") from None
    except UnicodeDecodeError:
        raise DatasetError(f"{source}: not UTF-8 text; save it as UTF-8") from None
    records = {"jsonl": _jsonl, "csv": _csv, "yaml": _yaml}[kind](source, text)
    known = scorers if scorers is not None else ScorerSet.installed()
    samples: list[Sample] = []
    lines: dict[str, int] = {}
    for line, record in records:
        sample = _sample(source, line, record)
        if sample.id in lines:
            raise DatasetError(
                f"{source}:{line}: id: {sample.id!r} is already the id of line "
                f"{lines[sample.id]}; give each sample its own id"
            )
        for index, check in enumerate(sample.checks):
            known.validate(check, f"{source}:{line}: checks.{index}")
        lines[sample.id] = line
        samples.append(sample)
    if not samples:
        raise DatasetError(f"{source}: no samples; add at least one")
    canonical = json.dumps([s.model_dump(mode="json") for s in samples], sort_keys=True)
    return Dataset(
        name=source.stem,
        source=str(source),
        samples=samples,
        fingerprint=hashlib.sha256(canonical.encode()).hexdigest(),
    )


def _sample(source: Path, line: int, record: Any) -> Sample:
    if not isinstance(record, dict):
        raise DatasetError(f"{source}:{line}: a sample is an object with at least an input")
    if "id" not in record or record["id"] in (None, ""):
        content = json.dumps({k: record.get(k) for k in ("input", "target")}, sort_keys=True)
        record = {**record, "id": "s-" + hashlib.sha256(content.encode()).hexdigest()[:12]}
    try:
        return Sample.model_validate(record)
    except ValidationError as error:
        raise DatasetError(f"{source}:{line}: {validation_problems(error, 'sample')}") from None


def _jsonl(source: Path, text: str) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as error:
            raise DatasetError(
                f"{source}:{number}: not JSON ({error.msg} at column {error.colno}); "
                "write one JSON object per line"
            ) from None


def _csv(source: Path, text: str) -> Iterator[tuple[int, Any]]:
    reader = csv.DictReader(text.splitlines())
    columns = reader.fieldnames or []
    if "input" not in columns:
        raise DatasetError(
            f"{source}:1: the header has no 'input' column; name the columns id, input, "
            "target and any metadata"
        )
    for row in reader:
        if None in row:
            raise DatasetError(
                f"{source}:{reader.line_num}: more fields than the header has columns; "
                "quote fields that hold commas"
            )
        yield (
            reader.line_num,
            {
                "id": row.get("id") or None,
                "input": row["input"],
                "target": row.get("target") or None,
                "metadata": {k: v for k, v in row.items() if k not in {"id", "input", "target"}},
            },
        )


def _yaml(source: Path, text: str) -> Iterator[tuple[int, Any]]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise DatasetError(
            f"{source}:{line}: not YAML ({getattr(error, 'problem', error)})"
        ) from None
    if isinstance(data, list) and isinstance(root, yaml.SequenceNode):
        for node, record in zip(root.value, data, strict=True):
            yield node.start_mark.line + 1, record
        return
    if isinstance(data, dict) and isinstance(root, yaml.MappingNode) and "tests" in data:
        yield from _promptfoo(source, root, data)
        return
    raise DatasetError(
        f"{source}:1: a YAML dataset is a list of samples, or promptfoo-style "
        "{prompt: ..., tests: [...]}"
    )


def _promptfoo(
    source: Path, root: yaml.MappingNode, data: dict[str, Any]
) -> Iterator[tuple[int, Any]]:
    prompts = data.get("prompts", [data["prompt"]] if "prompt" in data else [])
    if isinstance(prompts, str):
        prompts = [prompts]
    if len(prompts) != 1 or not isinstance(prompts[0], str):
        raise DatasetError(
            f"{source}:1: prompt: write one prompt with {{{{var}}}} placeholders (one "
            "dataset per prompt; compare prompts as agents)"
        )
    tests_node = next(value for key, value in root.value if key.value == "tests")
    tests = data["tests"]
    if not isinstance(tests, list) or not isinstance(tests_node, yaml.SequenceNode):
        raise DatasetError(f"{source}:{tests_node.start_mark.line + 1}: tests: write a list")
    for node, test in zip(tests_node.value, tests, strict=True):
        line = node.start_mark.line + 1
        if not isinstance(test, dict):
            raise DatasetError(f"{source}:{line}: a test is an object with vars and assert")
        yield line, _from_test_case(source, line, prompts[0], test)


def _from_test_case(source: Path, line: int, prompt: str, test: dict[str, Any]) -> dict[str, Any]:
    unknown = set(test) - {"id", "description", "vars", "assert", "target", "metadata"}
    if unknown:
        raise DatasetError(
            f"{source}:{line}: {sorted(unknown)[0]}: not a test-case field; a test has "
            "description, vars, assert (and id, target, metadata)"
        )
    variables = test.get("vars") or {}
    if not isinstance(variables, dict):
        raise DatasetError(f"{source}:{line}: vars: write a mapping of names to values")
    missing = [name for name in PLACEHOLDER.findall(prompt) if name not in variables]
    if missing:
        raise DatasetError(
            f"{source}:{line}: vars.{missing[0]}: the prompt uses {{{{{missing[0]}}}}} "
            "and this test does not set it"
        )
    text = PLACEHOLDER.sub(lambda match: str(variables[match.group(1)]), prompt)
    checks = test.get("assert") or []
    if not isinstance(checks, list):
        raise DatasetError(f"{source}:{line}: assert: write a list of checks")
    return {
        "id": test.get("id") or _slug(test.get("description")),
        "input": text,
        "target": test.get("target"),
        "metadata": {
            **(test.get("metadata") or {}),
            "vars": variables,
            **({"description": test["description"]} if "description" in test else {}),
        },
        "checks": [_from_assertion(check) for check in checks],
    }


def _from_assertion(check: Any) -> Any:
    """Promptfoo's assertion names and units as aiorch's checks."""
    if not isinstance(check, dict):
        return check
    kind, rest = check.get("type"), {k: v for k, v in check.items() if k != "type"}
    if kind == "equals":
        return {"type": "exact", **rest}
    if kind in ("contains", "icontains"):
        return {"type": "includes", "ignore_case": kind == "icontains", **rest}
    if kind == "is-json":
        return {"type": "json_schema", **rest}
    if kind == "latency" and "threshold" in rest:  # milliseconds in promptfoo
        return {"type": "max_latency", "seconds": rest.pop("threshold") / 1000, **rest}
    if kind == "cost" and "threshold" in rest:  # dollars
        return {"type": "max_cost", "dollars": rest.pop("threshold"), **rest}
    return check


def _slug(description: Any) -> str | None:
    if not isinstance(description, str):
        return None
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", description.strip()).strip("-")[:100]
    return slug or None
