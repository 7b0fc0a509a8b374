"""The lifecycle simulator: a seeded subscription business whose truth is known.

It owns the generative model (latent risk, disengagement and expansion appetite; the
events they cause; a logged, randomised action policy) and the closed-form ground truth
derived from that same model. It writes raw tables through `clm.workspace` and must not
import `features`, `training`, `serving` or `pipelines`: it is the yardstick they are
measured against, so nothing it computes may depend on them.
"""
