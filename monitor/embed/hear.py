"""Google HeAR embedder: google/hear (TensorFlow SavedModel) or google/hear-pytorch (our torch port).

Weights come from [hear] model_dir or the Hugging Face cache; the hub is only contacted when a
named backend's copy is absent. TensorFlow and torch are imported only by the backend that needs them.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from monitor.config import HEAR_DEFAULT_REVISION, HearSettings
from monitor.embed.base import Embedder, EmbedderError, check_windows
from monitor.messages import WINDOW_SAMPLES

REPOS = {"torch": "google/hear-pytorch", "tf": "google/hear"}
MARKERS = {"torch": "model.safetensors", "tf": "saved_model.pb"}  # the file that says "these are the weights"
DIM = 512
CHUNK = 64  # windows per forward pass on the CPU: bounds memory when a backlog is embedded at once
GPU_CHUNK = 512  # on a GPU, where batches of 64 leave throughput unused (docs/serving.md)
_SHA_LENGTH = 40


@dataclass(frozen=True)
class HearWeights:
    """A local copy of one backend's weights and the commit it holds."""

    backend: str
    path: Path
    commit: str

    @property
    def embedder_id(self) -> str:
        # The backends' front ends differ (google/hear's TF graph vs our torch port), so a head keeps to one.
        return f"hear-{self.backend}@{self.commit[:12]}"

    def repair_hint(self) -> str:
        """How to replace a damaged copy: a cache snapshot's blobs would be reused, so the whole repo folder goes."""
        if self.path.parent.name == "snapshots" and self.path.parent.parent.name.startswith("models--"):
            return f"delete {self.path.parent.parent} and run {pull_command(self.backend, self.commit)} again"
        return f"delete {self.path} and run {pull_command(self.backend, self.commit, self.path)} again"


def pull_command(backend: str, revision: str, folder: Path | None = None) -> str:
    into = f" --dir {folder}" if folder else ""
    return f"`crywatch model pull hear --backend {backend} --revision {revision}{into}`"


def revision_for(backend: str, settings: HearSettings) -> str:
    """The default pin names a google/hear commit; google/hear-pytorch has no public pin, so it means main there."""
    if backend == "torch" and settings.revision == HEAR_DEFAULT_REVISION:
        return "main"
    return settings.revision


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it, also when set after huggingface_hub was imported."""
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return constants.HF_HUB_OFFLINE or flag.strip().upper() in {"1", "ON", "YES", "TRUE"}


def cache_root(cache_dir: str) -> Path:
    from huggingface_hub import constants

    return Path(cache_dir or constants.HF_HUB_CACHE).expanduser()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _hub_error(exc: Exception, backend: str, revision: str, cache_dir: str) -> EmbedderError:
    """Map a huggingface_hub failure to one line naming the cause and the fix."""
    from huggingface_hub import errors, get_token

    repo = REPOS[backend]
    where = f"{repo}@{revision}"
    pull = pull_command(backend, revision)
    if isinstance(exc, errors.GatedRepoError):
        if get_token() is None:
            return EmbedderError(f"{repo} is gated and no Hugging Face token is set: accept the terms at "
                                 f"https://huggingface.co/{repo}, then set HF_TOKEN or run `hf auth login`")
        return EmbedderError(f"this Hugging Face account has not been granted {repo} (gated): accept the Health AI "
                             f"Developer Foundations terms at https://huggingface.co/{repo} and wait for approval")
    if isinstance(exc, errors.RevisionNotFoundError):
        return EmbedderError(f"revision {revision} does not exist in {repo}: set [hear] revision (or --revision) to "
                             f"a commit of {repo}")
    if isinstance(exc, errors.RepositoryNotFoundError):
        return EmbedderError(f"{repo} is not visible to this Hugging Face account (no or wrong token): set HF_TOKEN "
                             f"or run `hf auth login` with an account that accepted the terms")
    if isinstance(exc, getattr(errors, "IncompleteSnapshotError", ())):
        return EmbedderError(f"the cached copy of {where} is incomplete (interrupted download): run {pull} again "
                             "with network access")
    if isinstance(exc, errors.LocalEntryNotFoundError):
        cache = cache_root(cache_dir)
        if hub_offline():
            return EmbedderError(f"HF_HUB_OFFLINE is set and {where} is not in {cache}: run {pull} on a connected "
                                 "machine and copy the folder here ([hear] model_dir), or unset HF_HUB_OFFLINE")
        return EmbedderError(f"cannot reach the Hugging Face hub and {where} is not in {cache}: connect and run "
                             f"{pull}, or copy a downloaded folder here and set [hear] model_dir")
    if isinstance(exc, errors.HfHubHTTPError):
        return EmbedderError(f"the Hugging Face hub refused {where} ({_one_line(exc)}): retry later, or check HF_TOKEN")
    return EmbedderError(f"download of {where} failed ({_one_line(exc)}): check the network and disk space, then "
                         f"run {pull} again")


def _snapshot(backend: str, revision: str, cache_dir: str, local_dir: str, local_only: bool) -> Path:
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(
        repo_id=REPOS[backend], revision=revision, cache_dir=cache_dir or None, local_dir=local_dir or None,
        local_files_only=local_only or hub_offline(),
    ))


def download(backend: str, revision: str, cache_dir: str = "", local_dir: str = "") -> Path:
    """snapshot_download one backend's repo (a cached copy needs no network); every failure is an EmbedderError."""
    from huggingface_hub import errors

    try:
        return _snapshot(backend, revision, cache_dir, local_dir, local_only=False)
    except (errors.HTTPError, OSError, ValueError) as exc:  # HfHubHTTPError and LocalEntryNotFoundError are OSErrors
        raise _hub_error(exc, backend, revision, cache_dir) from exc


def _cached(backend: str, settings: HearSettings) -> HearWeights | None:
    """The cached snapshot of this backend's pinned revision; None when absent, an error when incomplete."""
    from huggingface_hub import errors

    revision = revision_for(backend, settings)
    try:
        path = _snapshot(backend, revision, settings.cache_dir, "", local_only=True)
    except errors.LocalEntryNotFoundError as exc:
        if isinstance(exc, getattr(errors, "IncompleteSnapshotError", ())):
            raise _hub_error(exc, backend, revision, settings.cache_dir) from exc
        return None
    except (OSError, ValueError) as exc:
        raise _hub_error(exc, backend, revision, settings.cache_dir) from exc
    return HearWeights(backend, path, path.name)


def dir_commit(folder: Path, marker: str, revision: str) -> str:
    """The commit a model_dir holds: from `pull --dir` metadata when present, else the configured revision."""
    metadata = folder / ".cache" / "huggingface" / "download" / f"{marker}.metadata"
    if not metadata.is_file():
        return revision
    commit = metadata.read_text(encoding="utf-8").split("\n", 1)[0].strip()
    if len(revision) == _SHA_LENGTH and commit != revision:
        raise EmbedderError(f"[hear] model_dir {folder} holds commit {commit} but [hear] revision is {revision}: "
                            f"set revision = \"{commit}\" or pull {revision} into that folder")
    return commit


def _from_dir(settings: HearSettings) -> HearWeights:
    folder = Path(settings.model_dir).expanduser()
    if not folder.is_dir():
        raise EmbedderError(f"[hear] model_dir {folder} is not a folder: set it to the folder written by "
                            "`crywatch model pull hear --dir DIR`, or to \"\" to use the Hugging Face cache")
    backends = ("torch", "tf") if settings.backend == "auto" else (settings.backend,)
    for backend in backends:
        if (folder / MARKERS[backend]).is_file():
            return HearWeights(backend, folder, dir_commit(folder, MARKERS[backend], revision_for(backend, settings)))
    wanted = " or ".join(f"{MARKERS[b]} ({b})" for b in backends)
    raise EmbedderError(f"[hear] model_dir {folder} has no {wanted}: the copy is incomplete or for another backend; "
                        f"re-run {pull_command(backends[0], revision_for(backends[0], settings), folder)}")


def locate_weights(settings: HearSettings) -> HearWeights:
    """model_dir, else the cache (torch first under auto), else, for a named backend, a download."""
    if settings.model_dir:
        return _from_dir(settings)
    backends = ("torch", "tf") if settings.backend == "auto" else (settings.backend,)
    for backend in backends:
        found = _cached(backend, settings)
        if found is not None:
            return found
    if settings.backend == "auto":
        raise EmbedderError(
            f"no HeAR weights in {cache_root(settings.cache_dir)} for [hear] revision {settings.revision}: run "
            f"{pull_command('torch', revision_for('torch', settings))} (or --backend tf), or set [hear] model_dir")
    revision = revision_for(settings.backend, settings)
    path = download(settings.backend, revision, settings.cache_dir)
    return HearWeights(settings.backend, path, path.name if len(path.name) == _SHA_LENGTH else revision)


def check_weights(weights: HearWeights) -> None:
    """Cheap completeness check (no model load): the marker file exists and a safetensors file is whole."""
    marker = weights.path / MARKERS[weights.backend]
    fix = weights.repair_hint()
    if not marker.is_file():
        raise EmbedderError(f"{marker} is missing (partial download): {fix}")
    if weights.backend == "torch":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(marker, framework="pt") as handle:
                handle.keys()
        except (SafetensorError, OSError) as exc:
            raise EmbedderError(f"{marker} is truncated or corrupt ({_one_line(exc)}): {fix}") from exc


def load_hear(settings: HearSettings) -> Embedder:
    """Find HeAR weights as configured and build the matching backend."""
    weights = locate_weights(settings)
    check_weights(weights)
    if weights.backend == "tf":
        return TfHear.load(weights)
    return TorchHear.load(weights, settings.precision, settings.device)


class TfHear:
    """google/hear SavedModel; its graph holds the front end, fed clips already scaled one by one."""

    def __init__(self, model: Any, weights: HearWeights) -> None:
        self._model = model  # holds the variables the signature reads
        self._signature = model.signatures["serving_default"]
        self.weights = weights
        self.id = weights.embedder_id
        self.dim = DIM

    @classmethod
    def load(cls, weights: HearWeights) -> "TfHear":
        try:
            import tensorflow as tf
        except ImportError as exc:
            raise EmbedderError("[hear] backend tf needs TensorFlow, which is not installed: "
                                "pip install 'crywatch[hear]', or set [hear] backend = \"torch\"") from exc
        fix = f"it is not an intact google/hear SavedModel; {weights.repair_hint()}"
        try:
            model = tf.saved_model.load(str(weights.path))
        except (OSError, ValueError, tf.errors.OpError) as exc:
            raise EmbedderError(f"cannot load the SavedModel at {weights.path} ({_one_line(exc)}): {fix}") from exc
        signature = model.signatures.get("serving_default")
        if signature is None:
            names = ", ".join(model.signatures.keys()) or "none"
            raise EmbedderError(f"SavedModel at {weights.path} has no serving_default signature (has: {names}): {fix}")
        _check_signature(signature, weights.path, fix)
        embedder = cls(model, weights)
        embedder.embed(np.zeros((1, WINDOW_SAMPLES), np.float32))  # catches a wrong output shape at start-up
        return embedder

    def embed(self, windows: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        batch = scale_per_clip(check_windows(windows))
        outputs = [self._signature(x=tf.constant(batch[i:i + CHUNK]))["output_0"].numpy()
                   for i in range(0, len(batch), CHUNK)]
        vectors = np.concatenate(outputs) if outputs else np.zeros((0, DIM), np.float32)
        if vectors.shape != (len(batch), DIM):
            raise EmbedderError(f"SavedModel at {self.weights.path} returned {vectors.shape} for {len(batch)} windows, "
                                f"expected (N, {DIM}): it is not google/hear; {self.weights.repair_hint()}")
        return vectors.astype(np.float32, copy=False)


def scale_per_clip(batch: np.ndarray) -> np.ndarray:
    """Min-max each clip to [-1, 1] (a constant clip to 0), as the front end does for a batch of one.

    google/hear's graph scales the whole batch at once; after this, that is a no-op (every clip already
    spans [-1, 1]), so a vector never depends on its batch-mates.
    """
    low = batch.min(axis=1, keepdims=True)
    span = batch.max(axis=1, keepdims=True) - low
    scaled = 2 * (batch - low) / np.where(span > 0, span, 1) - 1
    return np.where(span > 0, scaled, 0).astype(np.float32)


def _check_signature(signature: Any, path: Path, fix: str) -> None:
    """serving_default must take x: float32 (N, 32000)-compatible and return output_0: (N, 512)-compatible."""
    import tensorflow as tf

    _, inputs = signature.structured_input_signature
    spec = inputs.get("x")
    if set(inputs) != {"x"} or spec.dtype != tf.float32 or not spec.shape.is_compatible_with([None, WINDOW_SAMPLES]):
        found = ", ".join(f"{k}: {v.dtype.name} {v.shape}" for k, v in inputs.items())
        raise EmbedderError(f"serving_default of {path} takes ({found}), not x: float32 (N, {WINDOW_SAMPLES}): {fix}")
    outputs = signature.structured_outputs
    out = outputs.get("output_0") if isinstance(outputs, dict) else None
    if out is None or not out.shape.is_compatible_with([None, DIM]):
        found = ", ".join(f"{k}: {v.shape}" for k, v in outputs.items()) if isinstance(outputs, dict) else outputs
        raise EmbedderError(f"serving_default of {path} returns ({found}), not output_0: (N, {DIM}): {fix}")


class TorchHear:
    """google/hear-pytorch weights in our own ViT; per-clip normalisation, so a vector never depends on batch-mates."""

    def __init__(self, frontend: Any, vit: Any, device: Any, precision: str, weights: HearWeights) -> None:
        self._frontend = frontend
        self._vit = vit
        self._device = device
        self._precision = precision
        self._stored_bf16 = False
        self.weights = weights
        self.id = weights.embedder_id
        self.dim = self._vit.config.pooler_output_size

    @classmethod
    def load(cls, weights: HearWeights, precision: str = "fp32", device: str = "auto") -> "TorchHear":
        return cls.from_vit(_read_vit(weights), weights, precision, device)

    @classmethod
    def from_vit(cls, vit: Any, weights: HearWeights, precision: str = "fp32", device: str = "auto",
                 bf16_weights: bool | None = None) -> "TorchHear":
        """Wrap an fp32 HearViT (also used by bench/bench_hear.py with random weights).

        bf16 on CUDA stores the weights in bf16: autocast would cast every weight again on every
        call (docs/serving.md). `bf16_weights` chooses either way elsewhere (the tests, on the CPU).
        """
        import torch

        from monitor.embed.hear_network import HearFrontend, quantize_int8

        target = _torch_device(device, precision)
        if precision == "int8":
            vit = quantize_int8(vit)
        stored_bf16 = precision == "bf16" and (target.type == "cuda" if bf16_weights is None else bf16_weights)
        vit = vit.to(target, torch.bfloat16) if stored_bf16 else vit.to(target)
        embedder = cls(HearFrontend().to(target), vit, target, precision, weights)
        embedder._stored_bf16 = stored_bf16
        return embedder

    def embed(self, windows: np.ndarray) -> np.ndarray:
        import torch

        batch = check_windows(windows)
        cuda = self._device.type == "cuda"
        chunk = GPU_CHUNK if cuda else CHUNK
        outputs = [np.zeros((0, self.dim), np.float32)]
        with torch.inference_mode():
            for start in range(0, len(batch), chunk):
                audio = torch.from_numpy(batch[start:start + chunk])
                # Page-locked host memory lets the copy to the GPU run without a staging copy.
                audio = audio.pin_memory().to(self._device, non_blocking=True) if cuda else audio
                spec = self._frontend(audio)  # fp32 always: PCEN's dynamic range does not survive bf16
                if self._stored_bf16:
                    vectors = self._vit(spec.to(torch.bfloat16))
                else:
                    with torch.autocast(self._device.type, dtype=torch.bfloat16, enabled=self._precision == "bf16"):
                        vectors = self._vit(spec)
                outputs.append(vectors.float().cpu().numpy())
        return np.concatenate(outputs)


def _torch_device(device: str, precision: str) -> Any:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise EmbedderError("[hear] device = \"cuda\" but torch sees no CUDA GPU: install a CUDA build of torch, "
                            "or set device = \"auto\" or \"cpu\"")
    if precision == "int8":
        if device == "cuda":
            raise EmbedderError("[hear] precision int8 is CPU-only (dynamic quantisation): use precision = \"bf16\" "
                                "on cuda, or device = \"cpu\"")
        return torch.device("cpu")  # auto + int8: int8 exists only on the CPU
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _read_vit(weights: HearWeights) -> Any:
    """config.json (if any) and model.safetensors → HearViT in fp32 on the CPU."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from monitor.embed.hear_network import HearConfig, load_vit

    fix = weights.repair_hint()
    config_path = weights.path / "config.json"
    try:
        config = HearConfig.from_hf(json.loads(config_path.read_text(encoding="utf-8"))) \
            if config_path.is_file() else HearConfig()
    except (ValueError, OSError) as exc:  # JSONDecodeError is a ValueError
        raise EmbedderError(f"{config_path} does not describe the HeAR ViT ({_one_line(exc)}): {fix}") from exc
    marker = weights.path / MARKERS["torch"]
    try:
        tensors = load_file(marker)
    except (SafetensorError, OSError) as exc:
        raise EmbedderError(f"{marker} is truncated or corrupt ({_one_line(exc)}): {fix}") from exc
    try:
        return load_vit(tensors, config)
    except ValueError as exc:
        raise EmbedderError(f"{marker} does not hold HeAR ViT weights ({exc}): {fix}") from exc
