"""Image, metric and command-line utilities shared by the entry scripts."""
