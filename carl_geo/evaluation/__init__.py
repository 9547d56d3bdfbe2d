"""Evaluation of CARL backbones on public benchmarks.

* :mod:`carl_geo.evaluation.geobench`: GEO-Bench (linear probe / fine-tuning / k-NN runner, result
  tables; the reader of its on-disk format lives in :mod:`carl_geo.datasets.geobench`); ``carl-geo
  geobench ...`` on the command line.
"""
