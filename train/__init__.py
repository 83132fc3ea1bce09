"""CryWatch training and evaluation: data sets, embedding cache, grouped splits, heads, reports.

Audio loading, the gate and the embedders are imported from `monitor`, so a head is trained and
measured on exactly the windows the live monitor feeds it.
"""
