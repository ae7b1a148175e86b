"""`make bench`: end-to-end throughput and latency of the pipeline, next to the raw
limits of the same NATS and database servers measured in the same run."""
