"""Getting events in: validation, dedup, the event log, and the consumers that read it."""
