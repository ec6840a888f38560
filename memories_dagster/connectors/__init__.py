"""One module per family of sources and sinks."""
