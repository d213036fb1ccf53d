"""End-to-end scenarios and run directories."""
