"""Model tooling: the manifest, fetching and verification, evaluation, benchmarking, training, export."""
