# Copyright: runbook.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prometheus metrics in a textfile (private), for metrics_textfile.

node_exporter's textfile collector reads every ``*.prom`` file of its directory at each scrape, in
the Prometheus text exposition format (0.0.4)::

    # HELP runbook_backup_last_run_success Whether the last backup run wrote the set (1) or not (0).
    # TYPE runbook_backup_last_run_success gauge
    runbook_backup_last_run_success{kind="postgresql",source="shop"} 1

- ``parse``: a file into families of samples, strictly enough that nothing is lost silently (a line
  that is not a comment, HELP, TYPE or sample, a duplicate sample, a client-side timestamp, which the
  collector refuses, are errors naming the line).
- ``metric_spec``: one metric as the module's options give it, checked (names against the Prometheus
  grammar, values numbers).
- ``merge``: the given samples replace the ones with the same name and labels; every other sample of
  the file stays (``replace`` drops the rest of a given metric, ``present: False`` one sample).
- ``render``: the file's text again; labels sorted, a label with an empty value left out (Prometheus
  reads both as no label), values of untouched samples exactly as they were written.
- ``locked``: one writer at a time in a directory (flock on the directory itself, no lock file).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.runbook.stack.plugins.module_utils._common.files import flock_within

METRIC_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_NAME_AT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_AT = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_META = re.compile(r"^#[ \t]*(HELP|TYPE)(?:[ \t]+([^ \t]*))?(?:[ \t]+(.*))?$")
_INTEGER = re.compile(r"^[+-]?[0-9]+$")

TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
WRITABLE_TYPES = ("gauge", "counter")
# the sample names a histogram or summary family adds to its own name
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}
_SPECIAL = {"nan": "NaN", "inf": "+Inf", "+inf": "+Inf", "-inf": "-Inf"}

Key = tuple[str, tuple[tuple[str, str], ...]]


class MetricsError(Exception):
    """A foreseeable fault with the file or the metrics given, phrased for the operator."""


@dataclass
class Sample:
    name: str
    labels: dict[str, str]
    value: float
    text: str  # the value as it is written in the file
    line: int | None = None

    @property
    def key(self) -> Key:
        return sample_key(self.name, self.labels)

    @property
    def series(self) -> str:
        return series(self.name, self.labels)


@dataclass
class Family:
    name: str
    help: str | None = None
    type: str | None = None
    samples: dict[Key, Sample] = field(default_factory=dict)
    comments: list[str] = field(default_factory=list)
    touched: bool = False  # a metric of this call: removed when it has no sample left


@dataclass
class Textfile:
    families: dict[str, Family] = field(default_factory=dict)
    trailing: list[str] = field(default_factory=list)  # comments after the last family

    def sample_count(self) -> int:
        return sum(len(f.samples) for f in self.families.values())


@dataclass
class MetricSpec:
    name: str
    type: str
    help: str | None
    replace: bool
    samples: list[tuple[dict[str, str], float | None, str, bool]]  # labels, value, its text, present


@dataclass
class Changes:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- names, values and escaping
def sample_key(name: str, labels: dict[str, str]) -> Key:
    return name, tuple(sorted(labels.items()))


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def unescape_help(text: str) -> str:
    """HELP text as written: ``\\\\`` and ``\\n`` are escapes, any other backslash stays as it is."""
    return re.sub(r"\\(\\|n)", lambda m: "\n" if m.group(1) == "n" else "\\", text)


def series(name: str, labels: dict[str, str]) -> str:
    """``name{a="1",b="2"}`` (labels sorted), the way Prometheus names one series."""
    if not labels:
        return name
    inner = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def format_float(number: float) -> str:
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    if number.is_integer() and abs(number) < 2**63:
        return str(int(number))
    return repr(number)


def to_number(value: Any, what: str) -> tuple[float, str]:
    """(value, its text in the file) of a sample value: a number, a bool (1/0), or a string holding a
    number, ``NaN``, ``+Inf`` or ``-Inf``."""
    if isinstance(value, bool):
        return (1.0, "1") if value else (0.0, "0")
    if isinstance(value, int):
        return float(value), str(value)
    if isinstance(value, float):
        return value, format_float(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in _SPECIAL:
            canonical = _SPECIAL[text.lower()]
            return float(canonical.replace("+", "")), canonical
        if _INTEGER.match(text):
            return float(int(text)), str(int(text))
        try:
            number = float(text)
        except ValueError:
            pass
        else:
            return number, format_float(number)
    if value is None:
        raise MetricsError(f"{what}: value is required (a number)")
    raise MetricsError(f"{what}: value must be a number, got {value!r}")


def same_value(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def check_metric_name(name: Any) -> str:
    if not isinstance(name, str) or not METRIC_NAME_RE.match(name):
        raise MetricsError(f"metric name {name!r} is not a valid Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)")
    return name


def check_labels(labels: Any, what: str) -> dict[str, str]:
    """The labels of a sample as strings; a label with an empty value is left out (Prometheus reads it
    as no label, and two samples that differ only by it would collide)."""
    if labels is None:
        return {}
    if not isinstance(labels, dict):
        raise MetricsError(f"{what}: labels must be a dict of label name to value, got {labels!r}")
    out: dict[str, str] = {}
    for label, value in labels.items():
        if not isinstance(label, str) or not LABEL_NAME_RE.match(label):
            raise MetricsError(
                f"{what}: label name {label!r} is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"
            )
        if label.startswith("__"):
            raise MetricsError(f"{what}: label name {label!r} is reserved (names starting with __ are Prometheus' own)")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise MetricsError(f"{what}: label {label!r} must have a string value, got {value!r}")
        text = str(value)
        if text:
            out[label] = text
    return out


# ---------------------------------------------------------------- the module's options
def metric_spec(metric: dict[str, Any]) -> MetricSpec:
    """One entry of the module's ``metrics``, checked; MetricsError names the metric and what is wrong."""
    name = check_metric_name(metric.get("name"))
    kind = metric.get("type") or "gauge"
    if kind not in WRITABLE_TYPES:
        raise MetricsError(f"metric {name}: type must be one of {', '.join(WRITABLE_TYPES)}, got {kind!r}")
    samples = []
    seen: dict[Key, int] = {}
    for index, sample in enumerate(metric.get("samples") or []):
        what = f"metric {name} sample {index + 1}"
        labels = check_labels(sample.get("labels"), what)
        what = f"metric {series(name, labels)}"
        key = sample_key(name, labels)
        if key in seen:
            raise MetricsError(f"{what} is given twice (samples {seen[key] + 1} and {index + 1})")
        seen[key] = index
        present = (sample.get("state") or "present") == "present"
        value: float | None = None
        text = ""
        if present:
            value, text = to_number(sample.get("value"), what)
            if kind == "counter" and value < 0:
                raise MetricsError(f"{what}: a counter cannot be negative, got {text}")
        samples.append((labels, value, text, present))
    return MetricSpec(
        name=name, type=kind, help=metric.get("help"), replace=bool(metric.get("replace")), samples=samples
    )


def specs(metrics: list[dict[str, Any]]) -> list[MetricSpec]:
    out = [metric_spec(m) for m in metrics]
    names = [m.name for m in out]
    for name in names:
        if names.count(name) > 1:
            raise MetricsError(f"metric {name} is given more than once: give all its samples in one entry")
    return out


# ---------------------------------------------------------------- parsing a file
def _labels_at(line: str, pos: int, where: str) -> tuple[dict[str, str], int]:
    """The label set that starts after ``{`` at ``pos``; (labels, position after ``}``)."""
    labels: dict[str, str] = {}
    n = len(line)
    while True:
        while pos < n and line[pos] in " \t":
            pos += 1
        if pos < n and line[pos] == "}":
            return labels, pos + 1
        m = _LABEL_AT.match(line, pos)
        if not m:
            raise MetricsError(f"{where}: expected a label name or '}}' at column {pos + 1}")
        label = m.group(0)
        pos = m.end()
        while pos < n and line[pos] in " \t":
            pos += 1
        if pos >= n or line[pos] != "=":
            raise MetricsError(f"{where}: expected '=' after label {label}")
        pos += 1
        while pos < n and line[pos] in " \t":
            pos += 1
        if pos >= n or line[pos] != '"':
            raise MetricsError(f"{where}: the value of label {label} must be in double quotes")
        pos += 1
        chars = []
        while True:
            if pos >= n:
                raise MetricsError(f"{where}: the value of label {label} has no closing quote")
            ch = line[pos]
            if ch == "\\":
                nxt = line[pos + 1] if pos + 1 < n else ""
                if nxt not in ("\\", '"', "n"):
                    raise MetricsError(f"{where}: invalid escape \\{nxt} in the value of label {label}")
                chars.append("\n" if nxt == "n" else nxt)
                pos += 2
                continue
            if ch == '"':
                pos += 1
                break
            chars.append(ch)
            pos += 1
        if label in labels:
            raise MetricsError(f"{where}: label {label} appears twice")
        labels[label] = "".join(chars)
        while pos < n and line[pos] in " \t":
            pos += 1
        if pos < n and line[pos] == ",":
            pos += 1
            continue
        if pos < n and line[pos] == "}":
            return labels, pos + 1
        raise MetricsError(f"{where}: expected ',' or '}}' after the value of label {label}")


def parse_sample(line: str, where: str) -> Sample:
    m = _NAME_AT.match(line)
    if not m:
        raise MetricsError(f"{where}: not a sample, HELP, TYPE or comment line: {line[:80]!r}")
    name, pos = m.group(0), m.end()
    while pos < len(line) and line[pos] in " \t":
        pos += 1
    labels: dict[str, str] = {}
    if pos < len(line) and line[pos] == "{":
        labels, pos = _labels_at(line, pos + 1, where)
    rest = line[pos:].split()
    if not rest:
        raise MetricsError(f"{where}: sample {name} has no value")
    try:
        value = float(rest[0])
    except ValueError:
        raise MetricsError(f"{where}: the value of {name} is not a number: {rest[0]!r}") from None
    if len(rest) == 2 and _INTEGER.match(rest[1]):
        raise MetricsError(
            f"{where}: sample {name} has a timestamp ({rest[1]}), which node_exporter's textfile collector refuses"
        )
    if len(rest) > 1:
        raise MetricsError(f"{where}: unexpected text after the value of {name}: {' '.join(rest[1:])[:40]!r}")
    return Sample(name=name, labels={k: v for k, v in labels.items() if v}, value=value, text=rest[0])


def _family_name(sample_name: str, families: dict[str, Family]) -> str:
    """The family a sample belongs to: ``foo_bucket`` to the histogram ``foo``, else its own name."""
    for suffix in ("_bucket", "_sum", "_count"):
        if sample_name.endswith(suffix):
            base = families.get(sample_name[: -len(suffix)])
            if base is not None and suffix in _SUFFIXES.get(base.type or "", ()):
                return base.name
    return sample_name


def parse(text: str, path: str) -> Textfile:
    """A textfile's families, in file order; MetricsError names the path and the line of a fault."""
    tf = Textfile()
    pending: list[str] = []  # comments not yet followed by a family
    seen_at: dict[Key, int] = {}

    def family(name: str) -> Family:
        fam = tf.families.get(name)
        if fam is None:
            fam = tf.families[name] = Family(name=name)
        if pending:
            fam.comments.extend(pending)
            del pending[:]
        return fam

    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r")
        where = f"{path} line {number}"
        if not line.strip():
            continue
        stripped = line.lstrip(" \t")
        if stripped.startswith("#"):
            meta = _META.match(stripped)
            if not meta:
                pending.append(stripped)
                continue
            keyword, name, rest = meta.group(1), meta.group(2) or "", meta.group(3)
            if not METRIC_NAME_RE.match(name):
                raise MetricsError(f"{where}: # {keyword} names no valid metric ({name!r})")
            fam = family(name)
            if fam.samples:
                raise MetricsError(f"{where}: # {keyword} {name} comes after samples of {name}")
            if keyword == "HELP":
                if fam.help is not None:
                    raise MetricsError(f"{where}: second # HELP line for {name}")
                fam.help = unescape_help(rest or "")
            else:
                kind = (rest or "").strip()
                if fam.type is not None:
                    raise MetricsError(f"{where}: second # TYPE line for {name}")
                if kind not in TYPES:
                    raise MetricsError(
                        f"{where}: # TYPE {name} has an unknown type {kind!r} (one of {', '.join(TYPES)})"
                    )
                fam.type = kind
            continue
        sample = parse_sample(stripped, where)
        sample.line = number
        key = sample.key
        if key in seen_at:
            raise MetricsError(f"{where}: sample {sample.series} appears twice (first on line {seen_at[key]})")
        seen_at[key] = number
        family(_family_name(sample.name, tf.families)).samples[key] = sample
    tf.trailing = pending
    return tf


# ---------------------------------------------------------------- merging and rendering
def merge(tf: Textfile, wanted: list[MetricSpec]) -> Changes:
    """Put the wanted samples into ``tf`` (in place); what was added, updated and removed, as series."""
    changes = Changes()
    owner = {s.name: f.name for f in tf.families.values() for s in f.samples.values()}
    for spec in wanted:
        other = owner.get(spec.name)
        if other is not None and other != spec.name:
            kind = tf.families[other].type
            raise MetricsError(f"metric {spec.name}: the file has it as part of the {kind} {other}")
        fam = tf.families.get(spec.name)
        if fam is None:
            fam = tf.families[spec.name] = Family(name=spec.name)
        elif fam.type in _SUFFIXES:
            raise MetricsError(
                f"metric {spec.name} is a {fam.type} in the file; only {' and '.join(WRITABLE_TYPES)} metrics are written"
            )
        fam.touched = True
        fam.type = spec.type
        if spec.help is not None:
            fam.help = spec.help
        keep = set()
        for labels, value, text, present in spec.samples:
            key = sample_key(spec.name, labels)
            old = fam.samples.get(key)
            if not present:
                if old is not None:
                    del fam.samples[key]
                    changes.removed.append(old.series)
                continue
            keep.add(key)
            if old is not None and same_value(old.value, value):
                continue
            fam.samples[key] = Sample(name=spec.name, labels=labels, value=value, text=text)
            (changes.updated if old is not None else changes.added).append(series(spec.name, labels))
        if spec.replace:
            for key in [k for k in fam.samples if k not in keep]:
                changes.removed.append(fam.samples.pop(key).series)
    return changes


def render(tf: Textfile) -> str:
    lines: list[str] = []
    for fam in tf.families.values():
        if fam.touched and not fam.samples:
            continue
        lines.extend(fam.comments)
        if fam.help is not None:
            lines.append(f"# HELP {fam.name} {escape_help(fam.help)}".rstrip(" "))
        if fam.type is not None:
            lines.append(f"# TYPE {fam.name} {fam.type}")
        lines.extend(f"{s.series} {s.text}" for s in fam.samples.values())
    lines.extend(tf.trailing)
    return "".join(f"{line}\n" for line in lines)


# ---------------------------------------------------------------- the file
def read_text(path: str) -> tuple[str | None, os.stat_result | None]:
    """(text, stat) of the file, (None, None) when it does not exist."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
            st = os.fstat(fh.fileno())
    except FileNotFoundError:
        return None, None
    except IsADirectoryError:
        raise MetricsError(f"{path} is a directory, not a .prom file") from None
    except OSError as exc:
        raise MetricsError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8"), st
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise MetricsError(f"{path} line {line}: not UTF-8 text ({exc.reason}); not touching it") from None


@contextlib.contextmanager
def locked(directory: str, timeout: float = 30.0) -> Iterator[None]:
    """Hold an exclusive flock on ``directory`` (read, merge and replace a file in it as one step)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError as exc:
        raise MetricsError(f"cannot lock {directory} to write in it: {exc.strerror or exc}") from None
    try:
        if not flock_within(fd, timeout):
            raise MetricsError(f"another writer held the lock on {directory} for more than {timeout:g} s")
        yield
    finally:
        os.close(fd)
