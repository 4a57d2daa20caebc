"""The example document pipeline's stage functions: extract -> analyze -> summarize -> embed."""
