"""The train job: train, evaluate and register the models asked for; the gate promotes."""
from __future__ import annotations

from dataclasses import dataclass

from clm.errors import ClmError
from clm.workspace import Workspace
from pipelines.jobs.reporting import Quiet, Reporter
from training.config import ModelReport, TrainConfig
from training.train import train


@dataclass
class Trained:
    reports: list[ModelReport]

    @property
    def untrained(self) -> list[str]:
        """Models that apply to this business but were not trained (reasons in their notes)."""
        return [r.model for r in self.reports if not r.trained and r.applies and not r.up_to_date]

    def require_some(self) -> None:
        """A ClmError, naming each model's reason, when no model was trained (nor kept as
        up to date): nothing to score with."""
        if not any(r.trained or r.up_to_date for r in self.reports):
            raise ClmError("No model was trained: " + " ".join(f"{r.model}: {r.note}" for r in self.reports))

    @property
    def held_back(self) -> list[str]:
        """Versions registered but kept back by the gate: challengers only."""
        return [f"{r.model} v{r.version}" for r in self.reports if r.trained and not r.promoted]


def train_models(workspace: Workspace, config: TrainConfig, reporter: Reporter | None = None) -> Trained:
    """Train every model of `config`; each one's report says what became of it (see
    `Trained.require_some` for a run that needs at least one)."""
    reporter = reporter or Quiet()
    with reporter.counting("Training", len(config.models)) as count:
        done: list[str] = []

        def starting(model: str) -> None:
            count(len(done), len(config.models), f"Training {model}")
            done.append(model)

        reports = train(workspace, config, progress=starting)
        count(len(config.models), len(config.models), "Trained")
    return Trained(reports)
