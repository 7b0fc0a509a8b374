"""Serving: the real-time API and next-best-action decisions.

It owns the BentoML service, loading champion models from the registry, reading online
features, and choosing the next-best action by expected incremental value under contact
and budget rules. It must not train models or write features; batch jobs call the same
decision logic through `pipelines`.
"""
