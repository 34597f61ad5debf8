"""The study's four stages, in the order they run.

Each stage's ``run(ctx)`` measures, records its numbers in the run's context and returns
its section of the report.
"""

from probecore_study.stages import architecture, batch, connectivity, spectrum

# stage name (as --stages spells it) → the function that runs it
RUNNERS = {
    "spectrum": spectrum.run,
    "batch": batch.run,
    "architecture": architecture.run,
    "connectivity": connectivity.run,
}
