"""The shipped protocol files: every open stage names its next step (queues and the case page show it),
and the next step is the protocol's work, never a way out such as a withdrawal."""

from __future__ import annotations

import pytest

from reprisals.protocol import bundled_specs
from workflow.spec import WorkflowSpec

WAYS_OUT = {"withdraw", "left_custody", "reopen", "decline", "record_only", "further_detriment", "send_back"}


@pytest.mark.parametrize("spec", bundled_specs(), ids=lambda s: f"v{s.version}")
def test_every_open_stage_of_a_shipped_version_names_its_next_step(spec: WorkflowSpec) -> None:
    for name in spec.open_stages:
        steps = spec.stages[name].next
        assert steps, f"v{spec.version} stage {name} has no next step"
        assert not set(steps) & WAYS_OUT, (name, steps)
        assert all(name in spec.triggers[t].sources for t in steps), (name, steps)
    assert spec.stages["closed"].next == ()
