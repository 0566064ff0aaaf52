"""certfleet's command line: parse arguments, call fleet/, render results. Thin by design."""
