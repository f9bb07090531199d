"""Capacity: load-test reports and the campaign planner."""
