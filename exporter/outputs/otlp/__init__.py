"""The OTLP output: the same families as `/metrics`, pushed to an OTLP receiver."""
