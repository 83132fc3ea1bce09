"""CryWatch training and evaluation: data sets, embedding cache, grouped splits, heads, reports.

Audio loading, the gate and the embedders are imported from `monitor`, so a head is trained and
measured on exactly the windows the live monitor feeds it.

Floors, each importing only those below it: `cli` (parsing and dispatch); `heads/` (the type heads);
`detector/` (the cry detector's training and benchmarks); the data both read: `datasets`, `labels`
(with labelmaps.toml) and `splits`.
"""
