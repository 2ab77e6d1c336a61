"""Running: studies and their pipeline, updates as levels arrive, cohorts, validation, the command line,
and the work done ahead in the background."""
