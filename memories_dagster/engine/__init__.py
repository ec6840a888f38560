"""Pure data work: read, integrate, check, write. Nothing here imports Dagster."""
