"""monoceros's own benchmark harness: real nginx in front of monoceros and its peers (README.md)."""
