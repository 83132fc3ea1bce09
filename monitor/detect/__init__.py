"""Cry detection: audio → a cry probability every 20 ms → runs of crying and the 2 s windows the embedder types.

- `frames`: what a frame is (FeatureSettings, frame_time) and the run decision over frames (Decision);
- `yamnet`: Google's YAMNet in numpy, the v2 detector's backbone;
- `fusion`: detector v2, the CRNN's probability fused with YAMNet's cry score;
- `crnn`: the learned CRNN detector, its model folders (DetectorModel, with or without a fusion) and streams;
- `gate`: frame probabilities → cry runs and type windows, live or over a whole recording.

Each module imports only those listed above it.
"""
from monitor.detect.crnn import DetectorError, DetectorModel
from monitor.detect.frames import Decision, FeatureSettings
from monitor.detect.gate import Gate, gate_recording

__all__ = ["Decision", "DetectorError", "DetectorModel", "FeatureSettings", "Gate", "gate_recording"]
