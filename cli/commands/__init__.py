"""cli.commands — one module per verb."""
