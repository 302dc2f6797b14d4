"""Test support that is more than a helper function: stand-ins for what a test cannot reach."""
