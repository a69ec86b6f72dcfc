"""The lake: Parquet archive of the event log, partitioned by event date, encrypted at rest."""
