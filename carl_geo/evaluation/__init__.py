"""Evaluation of CARL backbones on public benchmarks.

* :mod:`carl_geo.evaluation.geobench`: GEO-Bench (reader of its on-disk format, linear probe /
  fine-tuning / k-NN runner, result tables); ``carl-geo geobench ...`` on the command line.
"""
