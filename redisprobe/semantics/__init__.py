"""What Redis commands do, declared once and read by the fold, the timeline, redaction and the scenario loader."""
