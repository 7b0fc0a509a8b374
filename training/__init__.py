"""Training: labels, models, evaluation and the MLflow registry.

It owns outcome labels (strictly from data after each cutoff), time-based splits, the
churn/upsell/stage/CLV models and their baselines, evaluation against the simulator's
oracle, and promotion by registry aliases. It must not compute features (it reads them
from `features`) nor serve requests.
"""
