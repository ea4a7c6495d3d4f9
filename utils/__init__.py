"""The ground floor: image I/O and operators (XDoG), metrics, errors and CPU settings; imports neither data/ nor
models/."""
