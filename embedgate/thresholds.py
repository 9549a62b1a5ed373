"""Every threshold and tolerance in one declarative TOML file, validated before any test runs.

Layers, later wins: [defaults] < [runtime.NAME] < [backend.NAME] < the selected [profile.NAME]'s own layers
< --threshold overrides. A numeric threshold set to "off" is not gated (its value is still measured and
reported). Unknown keys and bad values are usage errors that name the key, and so are scopes that match nothing:
a [backend.NAME] that is not a registered backend, a [runtime.NAME] no backend runs on, a quality.floors.TASK that is
not a task of the run (a misspelled one would otherwise be accepted and gate nothing).
"""

from __future__ import annotations

import copy
import difflib
import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedgate import UsageError
from embedgate.fidelity import METRICS
from embedgate.registry import DEFAULT_BASELINE

OFF = "off"


@dataclass(frozen=True)
class Key:
    help: str
    low: float = -math.inf
    high: float = math.inf
    allow_off: bool = False


# section -> key -> Key. "floors" under quality is a table of task name -> floor.
SCHEMA: dict[str, dict[str, Key]] = {
    "contract": {
        "repeat_max_abs_diff": Key("largest element difference between two encodes of the same texts", 0, 1),
        "batch_min_cosine": Key("cosine between a text encoded alone and inside a mixed batch", -1, 1),
        "order_min_cosine": Key("cosine between a text's vectors before and after reordering the batch", -1, 1),
    },
    "fidelity": {metric.threshold_key: Key(metric.what, metric.low, metric.high, True) for metric in METRICS.values()},
    "quality": {
        "max_loss": Key("largest loss of the overall retention (mean over task types, as MTEB averages) against "
                        "torch-fp32 (0.05 = 5%)", 0, 1, True),
        "max_type_loss": Key("largest loss of one task type's mean retention against torch-fp32", 0, 1, True),
        "max_task_loss": Key("largest loss of one task's main score against torch-fp32", 0, 1, True),
    },
    "latency": {
        "min_speedup": Key("median speedup over the baseline, measured interleaved in the same run", 0, math.inf, True),
        "implausible_speedup": Key("a speedup above this is flagged as not a real measurement", 1, math.inf, True),
    },
    "release": {
        "max_task_drop": Key("largest relative drop of a task's main score, candidate against production", 0, 1, True),
        "max_fidelity_drop": Key("largest drop of a fidelity metric to torch-fp32, candidate against production", 0, 2, True),
        "min_speedup": Key("median speedup of the candidate over production, timed in the same test", 0, math.inf, True),
        "index_cosine_mean_min": Key("mean cosine of candidate's and production's vectors of the same text", -1, 1, True),
        "index_cosine_p5_min": Key("5th percentile of that cosine", -1, 1, True),
        "index_cosine_min_min": Key("smallest of that cosine", -1, 1, True),
        "cross_retrieval_min": Key("retrieval score with candidate queries over production documents, as a share of "
                                   "production's own", 0, 2, True),
    },
    "coldstart": {
        "max_load_seconds": Key("load time in a fresh process", 0, math.inf, True),
        "max_peak_rss_mb": Key("peak resident memory of that process after one encode", 0, math.inf, True),
    },
}
TOP_LEVEL = {"baseline", "defaults", "runtime", "backend", "profile"}
# keys of an older thresholds file, refused with the line that names the new one
RENAMED_SCOPES = {"family": "runtime"}


@dataclass(frozen=True)
class Scopes:
    """The names a thresholds layer may refer to: registered backends, their runtimes, the run's tasks."""

    backends: Sequence[str]
    runtimes: Sequence[str]
    tasks: Sequence[str]


def default_thresholds_file() -> Path:
    return Path(__file__).resolve().parent.parent / "fixtures" / "thresholds.toml"


class Thresholds:
    def __init__(self, data: dict[str, Any], source: str, profile: str | None = None):
        self.source = source
        self.profile = profile
        self._data = data

    @property
    def baseline(self) -> str:
        return str(self._layered_top("baseline") or DEFAULT_BASELINE)

    def _layered_top(self, key: str) -> Any:
        value = self._data.get(key)
        if self.profile:
            value = self._data["profile"][self.profile].get(key, value)
        return value

    def _layers(self, backend: str, runtime: str) -> list[dict]:
        roots = [self._data]
        if self.profile:
            roots.append(self._data["profile"][self.profile])
        layers = []
        for root in roots:
            layers.append(root.get("defaults", {}))
            layers.append(root.get("runtime", {}).get(runtime, {}))
            layers.append(root.get("backend", {}).get(backend, {}))
        return layers

    def for_backend(self, backend: str, runtime: str) -> dict[str, dict[str, Any]]:
        """The resolved section -> key -> value for one backend ("off" values become None)."""
        resolved: dict[str, dict[str, Any]] = {section: {} for section in SCHEMA}
        resolved["quality"]["floors"] = {}
        for layer in self._layers(backend, runtime):
            for section, values in layer.items():
                for key, value in values.items():
                    if key == "floors":
                        resolved[section]["floors"].update(value)
                    else:
                        resolved[section][key] = None if value == OFF else value
        return resolved

    def as_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self._data)


def load_thresholds(path: Path, overrides: Sequence[str] = (), profile: str | None = None,
                    scopes: Scopes | None = None) -> Thresholds:
    """Read, validate and layer the file and its overrides; with `scopes`, every backend, runtime and task name in
    them must be one of those (call it after the backend registry is complete)."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--thresholds {path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML ({exc})") from None
    _validate_root(data, str(path))
    if scopes is not None:
        _validate_scopes(data, str(path), scopes)
    for override in overrides:  # the file was valid, so a new error names the override that caused it
        _apply_override(data, override)
        _validate_root(data, f"--threshold {override}")
        if scopes is not None:
            _validate_scopes(data, f"--threshold {override}", scopes)
    if profile is not None and profile not in data.get("profile", {}):
        known = ", ".join(data.get("profile", {})) or "none"
        raise UsageError(f"--threshold-profile {profile}: no [profile.{profile}] in {path}; profiles: {known}")
    return Thresholds(data, str(path), profile)


def _validate_root(data: dict, where: str, *, in_profile: bool = False, prefix: str = "") -> None:
    for key, value in data.items():
        if key in RENAMED_SCOPES:
            name = next(iter(value), "NAME") if isinstance(value, dict) else "NAME"
            raise UsageError(f"thresholds: [{prefix}{key}.{name}] is now [{prefix}{RENAMED_SCOPES[key]}.{name}] ({where})")
        if key not in TOP_LEVEL or (in_profile and key == "profile"):
            raise UsageError(f"{where}: unknown key '{key}'; expected {', '.join(sorted(TOP_LEVEL))}")
        if key == "baseline":
            if not isinstance(value, str):
                raise UsageError(f"{where}: 'baseline' must be a backend name")
        elif key == "defaults":
            _validate_layer(value, f"{where} [defaults]")
        elif key in ("runtime", "backend"):
            _require_table(value, f"{where} [{key}]")
            for name, layer in value.items():
                _validate_layer(layer, f"{where} [{key}.{name}]")
        elif key == "profile":
            _require_table(value, f"{where} [profile]")
            for name, profile in value.items():
                _require_table(profile, f"{where} [profile.{name}]")
                _validate_root(profile, f"{where} [profile.{name}]", in_profile=True, prefix=f"profile.{name}.")


def _validate_scopes(data: dict, where: str, scopes: Scopes, prefix: str = "") -> None:
    """Every [backend.NAME], [runtime.NAME] and quality.floors.TASK must name something this run has."""
    kinds = {"backend": ("backend", scopes.backends), "runtime": ("runtime", scopes.runtimes)}
    for key, (what, known) in kinds.items():
        for name, layer in data.get(key, {}).items():
            if name not in known:
                raise UsageError(f"{where}: unknown {what} '{name}' in [{prefix}{key}.{name}]"
                                 f"{_did_you_mean(name, known)}; known: {', '.join(known)}")
            _validate_floors(layer, f"{where}", f"{prefix}{key}.{name}", scopes)
    _validate_floors(data.get("defaults", {}), where, f"{prefix}defaults", scopes)
    for name, profile in data.get("profile", {}).items():
        _validate_scopes(profile, where, scopes, f"{prefix}profile.{name}.")


def _validate_floors(layer: dict, where: str, scope: str, scopes: Scopes) -> None:
    for task in layer.get("quality", {}).get("floors", {}):
        if task not in scopes.tasks:
            raise UsageError(f"{where}: unknown task '{task}' in {scope}.quality.floors"
                             f"{_did_you_mean(task, scopes.tasks)}; known tasks: {', '.join(scopes.tasks)}")


def _did_you_mean(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name.replace("_", "-"), list(known), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _require_table(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise UsageError(f"{where}: expected a table, got {type(value).__name__}")


def _validate_layer(layer: Any, where: str) -> None:
    _require_table(layer, where)
    for section, values in layer.items():
        if section not in SCHEMA:
            raise UsageError(f"{where}: unknown section '{section}'; expected {', '.join(SCHEMA)}")
        _require_table(values, f"{where} {section}")
        for key, value in values.items():
            name = f"{section}.{key}"
            if section == "quality" and key == "floors":
                _require_table(value, f"{where} {name}")
                for task, floor in value.items():
                    _check_number(floor, Key("floor", -1, 1), f"{where} {name}.{task}")
                continue
            if key not in SCHEMA[section]:
                known = ", ".join(f"{section}.{k}" for k in SCHEMA[section])
                raise UsageError(f"{where}: unknown key '{name}'; known keys: {known}")
            _check_number(value, SCHEMA[section][key], f"{where} {name}")


def _check_number(value: Any, spec: Key, where: str) -> None:
    if value == OFF and spec.allow_off:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        extra = ' or "off"' if spec.allow_off else ""
        raise UsageError(f"{where}: expected a number{extra}, got {value!r}")
    if not spec.low <= value <= spec.high:
        raise UsageError(f"{where}: {value} is outside [{spec.low}, {spec.high}]")


def _apply_override(data: dict, override: str) -> None:
    """--threshold [defaults.|runtime.R.|backend.B.]SECTION.KEY=VALUE (VALUE in TOML syntax; "off" allowed)."""
    path, sep, raw = override.partition("=")
    if not sep or not path.strip():
        raise UsageError(f"--threshold {override}: expected KEY=VALUE, e.g. backend.onnx-int8.latency.min_speedup=1.5")
    parts = path.strip().split(".")
    if parts[0] == "baseline" and len(parts) == 1:
        data["baseline"] = raw.strip()
        return
    if parts[0] in ("runtime", "backend", *RENAMED_SCOPES) and len(parts) >= 4:
        target = data.setdefault(parts[0], {}).setdefault(parts[1], {})
        parts = parts[2:]
    else:
        if parts[0] == "defaults":
            parts = parts[1:]
        target = data.setdefault("defaults", {})
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[1] != "floors"):
        raise UsageError(f"--threshold {override}: expected SECTION.KEY or quality.floors.TASK after the scope")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word such as off
    section = target.setdefault(parts[0], {})
    if len(parts) == 3:
        section.setdefault("floors", {})[parts[2]] = value
    else:
        section[parts[1]] = value
