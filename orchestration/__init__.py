"""Dagster wiring: Definitions, resources, jobs, schedules and sensors. It wires; it never computes."""
