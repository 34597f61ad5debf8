"""The study's four stages, in the order their sections appear.

Each stage's ``run(ctx)`` measures, records its numbers in the run's context and returns
its section of the report. The batch and architecture stages also split it in two,
``submit(ctx)`` (start the units of work) and ``finish(ctx, pending)`` (collect them and
write the section), so that the driver can start both before either is collected.
"""

from probecore_study.stages import architecture, batch, connectivity, spectrum

# stage name (as --stages spells it) → the function that runs it
RUNNERS = {
    "spectrum": spectrum.run,
    "batch": batch.run,
    "architecture": architecture.run,
    "connectivity": connectivity.run,
}

# the stage modules, by name
STAGES_BY_NAME = {
    "spectrum": spectrum,
    "batch": batch,
    "architecture": architecture,
    "connectivity": connectivity,
}
