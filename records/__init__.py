"""What every layer shares: the store, the typed result documents, the spec settings the lower layers read,
atomic files and provenance. It imports nothing else of this project, so any folder may import it."""
