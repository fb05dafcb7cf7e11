"""The bundled simulator of the Altmetric API, for the demo, tests and benchmarks."""
