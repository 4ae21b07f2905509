"""Weight files: safe reading, key layouts, loading, conversion, encoder files, the model-file catalog, demo weights."""
