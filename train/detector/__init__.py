"""The cry detector's training and benchmarks (train/cli.py's detector, fuse-detector, mixtures, evaluate-events,
night, evaluate-night and yamnet-export).

- `mixing`: the detector's split of groups, and cries mixed into everyday and synthesised NICU sounds;
- `benchmark`: the fixed DCASE-style mixtures and the sed_eval event benchmark, and clean cries played alone;
- `training`: the CRNN trained in torch on mixtures made on the fly, its run decisions tuned on validation groups;
- `fusion`: detector v2, the CRNN fused with YAMNet, fitted and tuned under a recall floor;
- `night`: the 10-minute bedside streams with crying spells, and their scoring;
- `yamnet_export`: Coral's YAMNet .tflite to the numpy model folder;
- `commands`: the command bodies.

Built on the data floor (train/datasets.py, labels.py, splits.py); the type heads (train/heads/) build on it.
"""
