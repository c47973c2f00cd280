"""Floor 1, the core: errors, the config base class, the registries, file I/O, the environment,
seeding and the predict helper. It imports no other part of nnopt."""
