"""Reading, validating, rendering and ordering scored conversations."""
