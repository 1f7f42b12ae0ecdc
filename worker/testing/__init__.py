"""Test support: the trigger-word test model the tests and the demo build."""
