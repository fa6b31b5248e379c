"""Ray Tune search spaces: each module defines ``space() -> dict`` of Tune samplers."""
