"""Storage: the tables, the engine factory and the migrations."""
