"""Operator tools: benchmark, evaluation, demo, embedded broker, prompt view, classify."""
