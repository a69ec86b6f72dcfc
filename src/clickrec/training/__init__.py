"""Training pipeline: readiness → dataset → fit → evaluate → gate → publish."""
