"""Decisions: the rules that training, serving and the pipelines all follow when they
decide for a customer, in one package below them all.

- `catalogue`: the business's action catalogue (YAML, validated), its model and defaults;
- `value`: the value rule that prices an outcome (one function for every policy);
- `log`: the decision log (schema, reader, writer) and exploration with its propensities;
- `population`: who a model is trained on and scores at an instant, and who is decided for;
- `budget`: what a decision run over a base may spend.

It reads the workspace's raw data (`clm`) and nothing above: training learns from these
rules, serving applies them, the pipelines run both.
"""
