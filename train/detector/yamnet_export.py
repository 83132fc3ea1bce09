"""`python -m train yamnet-export`: Coral's YAMNet TFLite file → a numpy-ready model folder (models/yamnet).

TensorFlow's interpreter reads every tensor once: the int8 weights with their per-channel scales and
zero points, the int32 biases, the int8 activations' scales and zero points (the model is
full-integer). They are written unchanged to weights.safetensors (about 4 MB; monitor/detect/yamnet.py
dequantises or requantises at load), with yamnet.json (architecture, provenance, sha256), the class
map, the Apache-2.0 licence and a model card. The export then runs the written folder through
monitor.detect.yamnet beside the interpreter and refuses to finish if they disagree.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from monitor.detect.yamnet import (
    CLASS_MAP_FILE,
    CRY_CLASS,
    GOLDEN,
    LICENSE_FILE,
    META_FILE,
    PATCH_FRAMES,
    WEIGHTS_FILE,
    YAMNET_FORMAT,
    YamnetError,
    YamnetModel,
)

KNOWN_SHA256 = "0a266465c46718f3fcc4137366be82882a8c93bfcc4f0278581a11d11dddcdf9"
ORIGIN = "github.com/google-coral/coralmicro, models/ at commit c9f665b0a8b9"
EXPECTED_OPS = ["QUANTIZE", "RESHAPE", "SPLIT", "CONV_2D"] + ["DEPTHWISE_CONV_2D", "CONV_2D"] * 13 + \
    ["MEAN", "FULLY_CONNECTED", "LOGISTIC", "DEQUANTIZE"]
# Scores are multiples of 1/256 (the int8 sigmoid's output); the port may round a requantisation the
# other way on rare ties, which moves a score by a step or two at most.
EXPORT_TOLERANCE = 3 / 256


def run_command(args: argparse.Namespace) -> int:
    try:
        check = export(args.tflite, args.out)
    except YamnetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"YAMNet written to {args.out}: numpy port vs TFLite interpreter, max |score difference| "
          f"{check['max_abs_score_diff']:.4f} over {check['patches']} patches")
    return 0


def _tensorflow() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up banner is noise here
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise YamnetError(f"yamnet-export needs TensorFlow to read the .tflite file ({exc}): "
                          "pip install tensorflow-cpu (or pip install -e '.[hear]')") from exc
    return tf


def interpreter(tflite: Path, delegates: bool = True) -> Any:
    """tf.lite's interpreter on one thread; delegates=False keeps every tensor readable (no XNNPACK repacking)."""
    tf = _tensorflow()
    kind = tf.lite.experimental.OpResolverType
    try:
        with warnings.catch_warnings():  # tf.lite.Interpreter is deprecated for ai-edge-litert, which needs numpy < 2
            warnings.simplefilter("ignore", UserWarning)
            it = tf.lite.Interpreter(model_path=str(tflite), num_threads=1, experimental_op_resolver_type=kind.AUTO
                                     if delegates else kind.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        it.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise YamnetError(f"{tflite} is not a readable TFLite model ({exc}): give --tflite the "
                          "yamnet_spectra_in.tflite file") from exc
    return it


def interpreter_scores(it: Any, patches: np.ndarray) -> np.ndarray:
    """The interpreter's (n, 521) scores, one patch per invoke (its input is [1, 96, 64])."""
    inp, out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    rows = []
    for patch in np.asarray(patches, np.float32):
        it.set_tensor(inp, patch[None])
        it.invoke()
        rows.append(it.get_tensor(out)[0].copy())
    return np.array(rows, np.float32).reshape(-1, 521)


def read_tensors(tflite: Path) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """Every weight and quantisation parameter, by monitor.detect.yamnet's names, and the conv layers in order."""
    it = interpreter(tflite, delegates=False)
    details = {d["index"]: d for d in it.get_tensor_details()}
    ops = [op for op in it._get_ops_details() if op["op_name"] != "DELEGATE"]  # no public API lists the graph
    names = [op["op_name"] for op in ops]
    if names != EXPECTED_OPS:
        raise YamnetError(f"{tflite} is not Coral's YAMNet spectra-in model (ops {names[:6]}...): give --tflite "
                          "yamnet_spectra_in.tflite")

    def quant(index: int) -> tuple[np.ndarray, np.ndarray]:
        q = details[index]["quantization_parameters"]
        return np.asarray(q["scales"], np.float32), np.asarray(q["zero_points"], np.int32)

    def layer_name(index: int) -> str:
        found = re.search(r"layer(\d+)", details[index]["name"])
        if not found:
            raise YamnetError(f"{tflite}: tensor {details[index]['name']!r} names no layer; not Coral's YAMNet")
        return f"layer{found.group(1)}"

    tensors: dict[str, np.ndarray] = {}
    scale, zero = quant(ops[0]["outputs"][0])
    tensors["input.scale"], tensors["input.zero_point"] = scale, zero
    layers = []
    for op in ops:
        kind = op["op_name"]
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MEAN"):
            x, out = op["inputs"][0], op["outputs"][0]
            name = layer_name(out)
            scale, zero = quant(out)
            tensors[f"{name}.output_scale"], tensors[f"{name}.output_zero_point"] = scale, zero
            if zero.size != 1 or details[out]["dtype"] != np.int8:
                raise YamnetError(f"{tflite}: {name}'s output is not per-tensor int8; not Coral's full-integer YAMNet")
        if kind == "MEAN":
            axes = it.get_tensor(op["inputs"][1])
            if sorted(axes.tolist()) != [1, 2]:
                raise YamnetError(f"{tflite}: the mean is over axes {axes}, not the feature map's (1, 2)")
            continue
        if kind not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        w, b = op["inputs"][1], op["inputs"][2]
        tensors[f"{name}.weight"] = it.get_tensor(w).astype(np.int8)
        tensors[f"{name}.weight_scale"], tensors[f"{name}.weight_zero_point"] = quant(w)
        tensors[f"{name}.bias"] = it.get_tensor(b).astype(np.int32)
        tensors[f"{name}.bias_scale"] = quant(b)[0]
        if kind == "FULLY_CONNECTED":
            continue
        weight, x_shape, y_shape = tensors[f"{name}.weight"], details[x]["shape"], details[out]["shape"]
        stride = int(round(x_shape[1] / y_shape[1]))
        if any(-(-int(x_shape[i]) // stride) != int(y_shape[i]) for i in (1, 2)) or weight.shape[1:3] != (3, 3) \
                and weight.shape[1:3] != (1, 1):
            raise YamnetError(f"{tflite}: {name} maps {x_shape} to {y_shape} with kernel {weight.shape}; "
                              "not the 3x3 SAME-padded MobileNet the port implements")
        layers.append({"name": name, "kind": "depthwise" if kind == "DEPTHWISE_CONV_2D" else
                       "pointwise" if weight.shape[1:3] == (1, 1) else "conv", "stride": stride,
                       "shape": list(map(int, weight.shape))})
    scale, zero = quant(ops[-2]["outputs"][0])  # the LOGISTIC's int8 output
    tensors["output.scale"], tensors["output.zero_point"] = scale, zero
    return tensors, layers


def export(tflite: Path, out: Path) -> dict[str, Any]:
    """Write the model folder; returns the agreement check against the interpreter."""
    from safetensors.numpy import save_file

    tflite = Path(tflite)
    if not tflite.is_file():
        raise YamnetError(f"no TFLite model at {tflite}: give --tflite the yamnet_spectra_in.tflite file")
    source = tflite.parent
    for name in (LICENSE_FILE, CLASS_MAP_FILE):
        if not (source / name).is_file():
            raise YamnetError(f"{source / name} is missing: the model ships with its licence and class map, "
                              "keep them beside the .tflite file")
    tf = _tensorflow()
    tflite_sha = hashlib.sha256(tflite.read_bytes()).hexdigest()
    tensors, layers = read_tensors(tflite)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in sorted(tensors.items())}, out / WEIGHTS_FILE)
    (out / WEIGHTS_FILE).chmod(0o644)  # safetensors writes owner-only; a model folder is for everyone to read
    weights_sha = hashlib.sha256((out / WEIGHTS_FILE).read_bytes()).hexdigest()
    shutil.copyfile(source / LICENSE_FILE, out / LICENSE_FILE)
    shutil.copyfile(source / CLASS_MAP_FILE, out / CLASS_MAP_FILE)
    meta: dict[str, Any] = {
        "format": YAMNET_FORMAT, "name": "yamnet",
        "source": {"file": tflite.name, "sha256": tflite_sha, "origin": ORIGIN, "licence": "Apache-2.0",
                   "known": tflite_sha == KNOWN_SHA256},
        "weights_sha256": weights_sha,
        "quantisation": "full-integer: int8 weights (symmetric, per output channel; the classifier per tensor), "
                        "int32 biases, int8 activations (per tensor); float32 input and output",
        "layers": layers, "front_end": asdict(GOLDEN), "cry_class": CRY_CLASS,
        "exported_with": f"tensorflow {tf.__version__}",
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
    check = agreement(tflite, out)
    meta["check"] = check
    (out / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
    (out / "MODEL_CARD.md").write_text(model_card(meta))
    return check


def agreement(tflite: Path, folder: Path) -> dict[str, Any]:
    """The written folder through monitor.detect.yamnet vs the interpreter, on the golden patch when it lies
    beside the model, and on seeded log-mel-like noise patches."""
    model = YamnetModel.load(folder)
    rng = np.random.default_rng(0)
    patches = [rng.normal(-1.0, 1.5, (4, PATCH_FRAMES, GOLDEN.n_mels)).astype(np.float32)]
    golden = tflite.parent / "yamnet_test_spectra.bin"
    if golden.is_file():
        patches.insert(0, np.fromfile(golden, "<f4").reshape(1, PATCH_FRAMES, GOLDEN.n_mels))
    batch = np.concatenate(patches)
    ours, theirs = model.scores(batch), interpreter_scores(interpreter(tflite), batch)
    diff = float(np.abs(ours - theirs).max())
    if diff > EXPORT_TOLERANCE:
        raise YamnetError(f"the numpy port of {folder} differs from the TFLite interpreter by {diff:.4f} "
                          f"(more than {EXPORT_TOLERANCE:.4f}): the export is wrong, do not ship it")
    return {"patches": len(batch), "golden_patch": golden.is_file(), "max_abs_score_diff": round(diff, 6),
            "tolerance": round(EXPORT_TOLERANCE, 6)}


def model_card(meta: dict[str, Any]) -> str:
    front, check, source = meta["front_end"], meta.get("check", {}), meta["source"]
    diff = check.get("max_abs_score_diff")
    agreement = "not checked" if diff is None else \
        "bit-identical scores" if diff == 0 else f"a max absolute score difference of {diff}"
    return f"""# YAMNet (AudioSet, 521 classes), int8, run in numpy

**What**: Google's YAMNet general-audio event classifier: MobileNetV1 (one 3x3 conv, 13
depthwise-separable blocks), global mean → 1024-d embedding → dense 521 → sigmoid, over 0.96 s log-mel
patches (96 frames x 64 bands). Class {meta['cry_class']} is "Baby cry, infant cry" (AudioSet
/t/dd00002). CryWatch runs it with `monitor.detect.yamnet.YamnetModel` in numpy, reproducing the TFLite file's
integer arithmetic.

**Training data**: AudioSet (about 2 million 10 s YouTube clips, weak labels), by Google. Its scores
on AudioSet clips would be optimistic; it was never trained on NICU audio.

**Provenance**: `{source['file']}` from {source['origin']} (the Coral Dev Board Micro's on-device
audio classifier), sha256

    {source['sha256']}

converted by `python -m train yamnet-export` ({meta['exported_with']}): the tensors are copied
unchanged, nothing is retrained.

**Files**: `{WEIGHTS_FILE}`, sha256

    {meta['weights_sha256']}

(the int8 weights with their per-channel scales and zero points, the int32 biases, every activation's
scale and zero point); `{META_FILE}` (architecture, quantisation, provenance, that sha256, checked at
load); `{CLASS_MAP_FILE}` (index, AudioSet mid, display name); `LICENSE`.

**Quantisation**: {meta['quantisation']}. Scores are multiples of 1/256. At export the numpy port
gave {agreement} against tf.lite's interpreter ({check.get('patches', 'n/a')} patches, the golden one
among them).

**Front end** (pinned to Coral's golden vectors yamnet_test_audio.bin → yamnet_test_spectra.bin):
16 kHz mono; each 15,600-sample patch (0.975 s) scaled to peak 1; {front['frame_length']}-sample
periodic Hann frames every {front['frame_hop']} samples; |{front['n_fft']}-point FFT|; {front['n_mels']}
HTK mel bands {front['fmin']:g}-{front['fmax']:g} Hz (peak-1 triangles, DC bin excluded);
log(mel + {front['log_offset']:g}). YAMNet's published recipe (`monitor.detect.yamnet.PUBLISHED`) uses
log(mel + 0.001) on unnormalised samples; the int8 input range of this file ([-6.93, 5.26]) starts at
log(0.001), so its calibration likely saw that recipe.

**Licence**: Apache-2.0 (`LICENSE`, keep it with any copy). Model and test vectors © Google.

**Limits**: a general-audio classifier, not a medical device; cats and some adult vocalisations
score as crying now and then.
"""
