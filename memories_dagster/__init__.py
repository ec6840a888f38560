"""memories-dagster: declarative data integration on Dagster."""
