"""The type heads: embeddings of the windows the detector passes → a head that types cries, with its report
(train/cli.py's fit, evaluate, card, evaluate-site and fit-evidence).

- `cache`: embeddings per file, cached by content, embedder and detector;
- `models`, `calibrate`: the logistic and MLP heads and their calibration;
- `evaluate`, `pipeline`, `probes`: scores and metrics, grouped fitting and cross-validation, embedding probes;
- `report`, `card`: report.json/report.md with its plots, and the model card;
- `site`: the running model on a unit's reviewed episodes;
- `evidence`: a head's evidence model for an alert class and the spell rule chosen for it (fit-evidence);
- `commands`: the command bodies.

Built on the data floor (train/datasets.py, labels.py, splits.py) and on the detector's (train/detector/: its
split and its mixtures); nothing below imports from here.
"""
